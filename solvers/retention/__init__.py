"""Solvers for small-weight retention (:class:`rcprune.RetentionInstance`), one algorithm per module."""
