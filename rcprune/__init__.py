"""rcprune: row-and-column pruning of neural networks as combinatorial optimization.

Keep a dense submatrix (rows x columns) of every layer under a kept-entry budget so that the pruned
importance is minimal. See ``proofs/problem.md`` for the definitions.
"""
from rcprune.validation import InvalidInstanceError
from rcprune.matrix.model import Instance, Solution, Evaluation
from rcprune.matrix.scoring import scores, matrix_view
from rcprune.result import SolveResult
from rcprune.solve import solve, evaluate, method_names
from rcprune.matrix.io import load_instance, save_instance, load_solution, save_solution
from rcprune.matrix.generate import generate
from rcprune import library
from rcprune.network.model import NetworkInstance, NetworkSolution, evaluate_network
from rcprune.retention.model import (RetentionInstance, RetentionSolution, evaluate_retention, hessian_from_inputs,
                                     refit)

__all__ = [
    "InvalidInstanceError", "Instance", "Solution", "Evaluation", "evaluate", "scores", "matrix_view",
    "SolveResult", "solve", "method_names", "load_instance", "save_instance", "load_solution",
    "save_solution", "generate", "library",
    "RetentionInstance", "RetentionSolution", "evaluate_retention", "hessian_from_inputs",
    "refit", "NetworkInstance", "NetworkSolution", "evaluate_network",
]
__version__ = "0.1.0"
