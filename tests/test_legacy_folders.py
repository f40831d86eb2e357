"""Folders written by NeuNN 0.1.0 before the code was regrouped by role (tests/fixtures/v0.1, made by
make_v0_1_folders.sh at commit 0ea8ab5) still load, predict and sample exactly as that version did."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from neunn.data.phantom import write_phantom_dataset
from neunn.gan.sample import sample_images
from neunn.inference.policy import DecisionPolicy
from neunn.inference.predictor import Predictor

V0_1 = Path(__file__).parent / "fixtures" / "v0.1"


def test_a_v0_1_run_predicts_as_it_did(tmp_path: Path):
    phantom = tmp_path / "phantom"
    write_phantom_dataset(phantom, per_class=6, seed=0, size=64)  # the images the old version scored
    with open(V0_1 / "predictions.csv", newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if not row["error"]]  # manifest.json and SYNTHETIC.md were not images
    before = {Path(row["path"]).relative_to(Path(row["path"]).parents[1]).as_posix(): row for row in rows}
    predictor = Predictor.from_run(V0_1 / "run")
    assert predictor.policy == DecisionPolicy(0.6, ("GBI", "BAC"), "model")  # its config's keys are the default policy
    paths = sorted(phantom.rglob("*.png"))
    assert len(paths) == len(before) == 42
    for p in predictor.predict_files(paths):
        old = before[Path(p.path).relative_to(phantom).as_posix()]
        assert p.label == old["pred"] and p.probability == pytest.approx(float(old["probability"]), abs=2e-6)
        assert [f"{c}:{q:.4f}" for c, q in p.top] == [old["top1"], old["top2"], old["top3"]]
        assert p.needs_review == (old["needs_review"] == "yes") and p.critical == (old["critical"] == "yes")


def test_a_v0_1_gan_folder_samples_the_same_images(tmp_path: Path):
    result = sample_images(V0_1 / "gan", n=3, out=tmp_path / "samples", seed=5, progress=False)
    expected = dict(line.split()[::-1] for line in (V0_1 / "gan-samples.sha256").read_text().splitlines())
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (result.out / "GBI").glob("seed_*.png")}
    assert got == expected
