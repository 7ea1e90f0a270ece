"""rcprune: row-and-column pruning of neural networks as combinatorial optimization.

Keep a dense submatrix (rows x columns) of every layer under a kept-entry budget so that the pruned
importance is minimal. See ``proofs/problem.md`` for the definitions.
"""
from .validation import InvalidInstanceError
from .problem import Instance, Solution, Evaluation, evaluate
from .scoring import scores, matrix_view
from .result import SolveResult
from .solve import solve, method_names
from .io import load_instance, save_instance, load_solution, save_solution
from .generate import generate
from . import library
from .network import NetworkInstance, NetworkSolution, evaluate_network
from .retention import (RetentionInstance, RetentionSolution, RetentionResult, evaluate_retention,
                        hessian_from_inputs, refit)

__all__ = [
    "InvalidInstanceError", "Instance", "Solution", "Evaluation", "evaluate", "scores", "matrix_view",
    "SolveResult", "solve", "method_names", "load_instance", "save_instance", "load_solution",
    "save_solution", "generate", "library",
    "RetentionInstance", "RetentionSolution", "RetentionResult", "evaluate_retention", "hessian_from_inputs",
    "refit", "NetworkInstance", "NetworkSolution", "evaluate_network",
]
__version__ = "0.1.0"
