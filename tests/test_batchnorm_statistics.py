"""BatchNorm statistics re-estimated on clean training cells after training (bn_clean_cells)."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import TINY_OVERRIDES
from neunn.checkpoint import read_checkpoint_meta
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.training.config import resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _best(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / "best.safetensors"))


def test_only_the_batchnorm_statistics_change_and_the_run_says_so(phantom_dir: Path, tmp_path: Path):
    plain = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "device=cpu"])
    clean = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "device=cpu", "bn_clean_cells=40"])
    train(open_training_run(phantom_dir, tmp_path / "plain", cfg=plain, progress=False))
    train(open_training_run(phantom_dir, tmp_path / "clean", cfg=clean, progress=False))
    a, b = _best(tmp_path / "plain"), _best(tmp_path / "clean")
    assert a.keys() == b.keys()
    weights = [k for k in a if not k.endswith(BUFFERS)]
    statistics = [k for k in a if k.endswith(("running_mean", "running_var"))]
    assert weights and statistics
    assert all((a[k] == b[k]).all() for k in weights)  # every trained weight as it was
    assert any(not (a[k] == b[k]).all() for k in statistics)  # the statistics are new
    meta = read_checkpoint_meta(tmp_path / "clean" / "checkpoints" / "best")
    assert meta["batchnorm_statistics"] == {"from": "clean training cells", "n": 40}
    assert "batchnorm_statistics" not in read_checkpoint_meta(tmp_path / "plain" / "checkpoints" / "best")
    # calibration and the out-of-domain score came after, on the final weights: the run predicts with both
    assert meta["temperature"] > 0 and Predictor.from_run(tmp_path / "clean").ood is not None


def test_a_negative_count_is_refused():
    with pytest.raises(NeunnError, match="bn_clean_cells"):
        resolve_config(overrides=["bn_clean_cells=-1"])
