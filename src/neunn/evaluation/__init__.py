"""Measuring a run: the metric registry, evaluate, the HTML report, perturbations and selective prediction."""
