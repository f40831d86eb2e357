"""Starting a run from another run's weights (init_from), and the central crop recorded with the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import TINY_OVERRIDES
from neunn.checkpoint import read_checkpoint_meta
from neunn.data.preprocess import central_crop, image_to_uint8, load_pixels
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.training.config import resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "best.safetensors"))


def test_central_crop_keeps_the_middle_of_each_side():
    image = Image.new("RGB", (360, 363))
    image.putpixel((180, 181), (255, 0, 0))
    cropped = central_crop(image, 0.5)
    assert cropped.size == (180, 182) and cropped.getpixel((90, 91)) == (255, 0, 0)
    assert central_crop(image, 1.0) is image


def test_crop_is_recorded_and_used_at_prediction(phantom_dir: Path, tmp_path: Path):
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "crop=0.6"])
    train(open_training_run(phantom_dir, tmp_path / "run", cfg, progress=False))
    assert read_checkpoint_meta(tmp_path / "run" / "checkpoints" / "best")["crop"] == 0.6
    cell = next(phantom_dir.glob("GBI/*.png"))
    predictor = Predictor.from_run(tmp_path / "run")
    pixels = predictor.load_pixels(cell)
    assert torch.equal(pixels, load_pixels(cell, 48, jpeg_draft=True, crop=0.6))
    assert not torch.equal(pixels, load_pixels(cell, 48, jpeg_draft=True))
    assert torch.equal(pixels, image_to_uint8(central_crop(Image.open(cell).convert("RGB"), 0.6), 48))


def test_init_from_starts_with_the_other_runs_weights(phantom_dir: Path, trained_run: Path, tmp_path: Path):
    # lr=0 keeps the starting weights (BatchNorm running statistics still move, so only weights are compared).
    same = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "lr=0", f"init_from={trained_run}"])
    train(open_training_run(phantom_dir, tmp_path / "same", same, progress=False))
    source, started = _weights(trained_run), _weights(tmp_path / "same")
    weights = [k for k in source if k.endswith(".weight") and source[k].ndim > 1]
    assert weights and all(torch.equal(source[k], started[k]) for k in weights)

    # Fewer classes: everything but the new head comes from the source run.
    subset = tmp_path / "subset"
    for name in ("GBI", "NEU"):
        shutil.copytree(phantom_dir / name, subset / name)
    other = resolve_config(overrides=[*TINY_OVERRIDES, "epochs=1", "lr=0", f"init_from={trained_run}"])
    train(open_training_run(subset, tmp_path / "two", other, progress=False))
    two = _weights(tmp_path / "two")
    assert two["fc.weight"].shape[0] == 2 and all(torch.equal(source[k], two[k]) for k in weights if k != "fc.weight")


def test_init_from_refuses_another_architecture(phantom_dir: Path, trained_run: Path, tmp_path: Path):
    cfg = resolve_config(overrides=[*TINY_OVERRIDES, "model=resnet18", f"init_from={trained_run}"])
    with pytest.raises(NeunnError, match="holds a resnet10t model, not resnet18"):
        train(open_training_run(phantom_dir, tmp_path / "r18", cfg, progress=False))
