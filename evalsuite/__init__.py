"""The evaluator: runtimes, tasks, strategies, metrics and the results store."""
