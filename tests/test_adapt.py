"""Tests for few-shot adaptation (neunn.experiments.adapt): the K-shot split, and ``neunn adapt`` on a stain-shifted
copy of the phantom, which must beat the source run on the shifted cells it did not adapt on."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from PIL import Image

from neunn.cli import main
from neunn.data.phantom import write_phantom_dataset
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.evaluation.perturbations import parse_perturbation
from neunn.experiments.adapt import INIT_FOLDER, kshot_split
from neunn.inference.out_of_domain import load_out_of_domain
from neunn.rundir import RunDir
from neunn.training.config import resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train

SHIFT = "stain=2"  # another lab's stain: twice the optical density, which a model trained without stain jitter misreads
CLASSES = {"NEU": 40, "GBI": 40}  # two classes at 64 px: a source well above chance in seconds (the shared tiny run
# is at chance, and seven phantom classes need far more images and pixels: docs/phantom.md)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A phantom run of NEU against GBI, trained without colour or stain augmentation."""
    data, out = tmp_path_factory.mktemp("adapt-source-data"), tmp_path_factory.mktemp("adapt") / "source"
    write_phantom_dataset(data, per_class=CLASSES, seed=0, size=64)
    cfg = resolve_config(preset="cpu-small", overrides=[*TINY_OVERRIDES, "img_size=64", "epochs=20", "aug_color=0",
                                                         "aug_stain=0"])
    train(open_training_run(data, out, cfg=cfg, progress=False))
    return out


@pytest.fixture(scope="module")
def shifted_lab(tmp_path_factory) -> Path:
    """Another lab: new phantom cells (another seed), all stain-shifted, one folder per class."""
    clean, shifted = tmp_path_factory.mktemp("lab-clean"), tmp_path_factory.mktemp("lab-shifted")
    write_phantom_dataset(clean, per_class={c: 24 for c in CLASSES}, seed=1, size=64)
    shift = parse_perturbation(SHIFT)
    for path in clean.rglob("*.png"):
        target = shifted / path.relative_to(clean)
        target.parent.mkdir(parents=True, exist_ok=True)
        shift(Image.open(path).convert("RGB")).save(target)
    return shifted


def test_kshot_split_draws_k_per_class_and_keeps_the_rest_for_scoring(shifted_lab):
    images = scan_dataset(shifted_lab).images
    split = kshot_split(images, ["GBI", "NEU"], shots=10, seed=3)
    assert split.counts() == {"train": {"GBI": 8, "NEU": 8}, "val": {"GBI": 2, "NEU": 2},
                              "test": {"GBI": 14, "NEU": 14}}
    drawn = {e.path for name in ("train", "val") for e in split.splits[name]}
    assert not drawn & {e.path for e in split.splits["test"]}
    again = kshot_split(images, ["GBI", "NEU"], shots=10, seed=3)
    assert again.digest() == split.digest() and kshot_split(images, ["GBI", "NEU"], shots=10, seed=4).digest() != \
        split.digest()
    five = kshot_split(images, ["GBI", "NEU"], shots=5, seed=3)  # the same draw order: K = 5 cells are among K = 10
    assert {e.path for n in ("train", "val") for e in five.splits[n]} <= drawn
    with pytest.raises(NeunnError, match="leave none to score"):
        kshot_split(images, ["GBI"], shots=24, seed=0)
    copies = [replace(r, path=f"{r.label}/copy_{i}.png") for i, r in enumerate(images)]  # every cell twice
    doubled = kshot_split(images + copies, ["GBI", "NEU"], shots=10, seed=3)
    drawn_content = {e.sha256 for name in ("train", "val") for e in doubled.splits[name]}
    assert doubled.splits["test"] and not drawn_content & {e.sha256 for e in doubled.splits["test"]}


def test_adapt_beats_the_source_on_the_shifted_cells_it_did_not_adapt_on(source_run, shifted_lab, tmp_path, capsys):
    out = tmp_path / "adapted"
    assert main(["adapt", str(source_run), str(shifted_lab), "--shots", "10", "--out", str(out), "--seed", "0",
                 "threads=1", "workers=1"]) == 0
    result = json.loads((out / "adapt.json").read_text())
    assert result["after"]["accuracy"] >= result["before"]["accuracy"] + 0.1, result  # 0.57 -> 0.75 when written
    assert "before" in capsys.readouterr().out
    split = load_split(out / "splits.json")
    assert split.counts()["train"] == {"GBI": 8, "NEU": 8} and split.counts()["val"] == {"GBI": 2, "NEU": 2}
    adapted_on = {e.path for name in ("train", "val") for e in split.splits[name]}
    with open(out / "eval" / "test" / "predictions.csv", newline="") as fh:
        scored = [row["path"] for row in csv.DictReader(fh)]
    assert len(scored) == 2 * 14 and not set(scored) & adapted_on  # 24 per class, 10 drawn: 14 scored
    assert result["after"]["n"] == result["before"]["n"] == 28
    ood = load_out_of_domain(RunDir(out))  # refitted on the new lab's cells, thresholded on its held cells
    assert ood is not None and ood.info["n_fit"] == 16 and ood.info["n_threshold"] == 4
    assert not (out / INIT_FOLDER).exists()
