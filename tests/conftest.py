"""Shared fixtures: a tiny phantom dataset and a tiny trained run, made once per test session on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from neunn.training.config import resolve_config
from neunn.data.phantom import write_phantom_dataset
from neunn.training.setup import open_training_run
from neunn.training.train import train

PBC_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc-dev"
# A model and size small enough that a whole training run takes seconds on 2 cores.
TINY_OVERRIDES = ["model=resnet10t", "img_size=48", "batch_size=16", "epochs=2", "threads=1", "workers=1",
                  "warmup_epochs=0.5"]


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Seven phantom classes, 12 images each, at 48 px."""
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, per_class=12, seed=0, size=48)
    return root


@pytest.fixture(scope="session")
def trained_run(phantom_dir, tmp_path_factory) -> Path:
    """A run folder trained for two epochs on the phantom set."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(open_training_run(phantom_dir, out, cfg=resolve_config(preset="cpu-small", overrides=TINY_OVERRIDES), progress=False))
    return out
