"""Whole-network RC pruning: layers coupled by channel groups under one budget; kernels, files, generators, plots."""
