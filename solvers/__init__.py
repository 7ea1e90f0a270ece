"""Solvers for RC pruning, one algorithm per module, all returning :class:`rcprune.SolveResult`.

Reach them through :func:`rcprune.solve` (``method=...``) or call a module's function directly.
"""
