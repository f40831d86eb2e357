"""Workflows that train, evaluate and compare runs end to end: the demo and the rare-class experiment."""
