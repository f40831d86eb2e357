"""Datasets: scanning folder-per-class image trees, splitting, the phantom renderer and tensors for training."""
