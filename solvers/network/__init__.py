"""Solvers for whole-network RC pruning (:class:`rcprune.NetworkInstance`), one algorithm per module."""
