"""Single-matrix RC pruning: the instance, solution and objective, kernels, files, generators, scores."""
