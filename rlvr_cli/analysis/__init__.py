"""Measurements of what a run changed and costs: update sparsity and analytic training memory."""
