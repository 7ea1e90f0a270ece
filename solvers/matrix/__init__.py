"""Solvers for single-matrix RC pruning (:class:`rcprune.Instance`), one algorithm per module."""
