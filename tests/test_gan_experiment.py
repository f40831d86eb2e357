"""The rare-class experiment: the cut split, the summary statistics, and a tiny end-to-end run of arms a, b, c."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from conftest import TINY_GAN

from neunn.data.scan import scan_dataset
from neunn.data.split import load_split, stratified_split
from neunn.errors import NeunnError
from neunn.experiments.rare_class import (ExperimentSettings, cut_split, default_synthetic_count,
                                          run_rare_class_experiment)
from neunn.experiments.rare_class_report import mean_sd, results_markdown, summarise_experiment
from neunn.gan.pipeline import augment_rare_class


@pytest.fixture(scope="module")
def split(phantom_dir: Path):
    return stratified_split(scan_dataset(phantom_dir).images, seed=0)


def test_cut_split_keeps_n_of_the_class_and_nothing_else_changes(split):
    cut = cut_split(split, "GBI", 4)
    before = [e for e in split.splits["train"] if e.label == "GBI"]
    after = [e for e in cut.splits["train"] if e.label == "GBI"]
    assert len(after) == 4 and set(after) <= set(before)
    assert [e for e in cut.splits["train"] if e.label != "GBI"] == [e for e in split.splits["train"] if e.label != "GBI"]
    assert cut.splits["val"] == split.splits["val"] and cut.splits["test"] == split.splits["test"]
    assert cut_split(split, "GBI", 4).digest() == cut.digest()  # deterministic
    with pytest.raises(NeunnError, match="between 1 and the 9 training images of GBI"):
        cut_split(split, "GBI", 10)


def test_default_synthetic_count_lifts_the_class_to_the_median(split):
    cut = cut_split(split, "GBI", 3)
    assert default_synthetic_count(cut, "GBI") == 9 - 3  # the other classes have 9 training images each
    assert default_synthetic_count(split, "GBI") == 9  # a class that is not rare still gets as many as it has


def test_mean_sd_and_paired_differences(split):
    rows = [{"arm": arm, "seed": seed, "class_sensitivity": v, "class_precision": v, "class_f1": v, "accuracy": v,
             "macro_f1": v, "balanced_accuracy": v, "mcc": v}
            for arm, values in (("a", [0.5, 0.7, 0.6]), ("c", [0.6, 0.9, 0.6])) for seed, v in enumerate(values)]
    results = summarise_experiment(rows, settings={"seeds": [0, 1, 2]}, class_name="GBI", keep=4, n_synthetic=5,
                                   split=cut_split(split, "GBI", 4), gan_quality={})
    assert results["summary"]["a"]["class_f1"]["mean"] == pytest.approx(0.6)
    assert results["summary"]["a"]["class_f1"]["sd"] == pytest.approx(0.1)
    diff = results["paired_differences"]["c-a"]["class_f1"]
    assert diff["values"] == pytest.approx([0.1, 0.2, 0.0]) and diff["mean"] == pytest.approx(0.1)
    text = results_markdown(results)
    assert "| (a) no augmentation | 4 real | 0.600 ± 0.100 |" in text
    assert "| (c) GAN images | 4 real + 5 synthetic | 0.700 ± 0.173 |" in text and "| c-a | +0.100 ± 0.100 |" in text
    assert mean_sd([0.3])["sd"] == 0.0


def test_rare_class_experiment_end_to_end(phantom_dir: Path, tmp_path: Path):
    out = tmp_path / "exp"
    kwargs = {"class_name": "GBI", "keep": 6, "seeds": [0], "overrides": [*TINY_OVERRIDES, "epochs=1"],
              "gan_preset": "gan-cpu", "gan_overrides": TINY_GAN, "n_synthetic": 5, "progress": False}
    results = run_rare_class_experiment(ExperimentSettings(phantom_dir, out, **kwargs))
    assert [(r["arm"], r["seed"]) for r in results["rows"]] == [("a", 0), ("b", 0), ("c", 0)]
    for name in ("results.json", "results.md", "results.png", "splits.json", "experiment.json"):
        assert (out / name).is_file(), name
    cut = load_split(out / "splits.json")
    kept = {e.path for e in cut.splits["train"] if e.label == "GBI"}
    assert len(kept) == 6 and results["train_counts"]["GBI"] == 6
    gan_info = json.loads((out / "gan" / "seed0" / "gan.json").read_text())
    assert {p for p, _, _ in gan_info["training_images"]} == kept  # the GAN saw the kept images only
    for arm in "abc":
        assert load_split(out / "runs" / f"{arm}-seed0" / "splits.json").digest() == cut.digest()
    run_c = json.loads((out / "runs" / "c-seed0" / "run.json").read_text())
    assert [s["counts"] for s in run_c["synthetic"]] == [{"GBI": 5}]
    assert "synthetic" not in json.loads((out / "runs" / "a-seed0" / "run.json").read_text()) or \
        not json.loads((out / "runs" / "a-seed0" / "run.json").read_text())["synthetic"]
    assert set(results["gan_quality"]["0"]) >= {"agreement", "fid", "near_copies_pixel"}

    # continuing reuses every finished step
    again = run_rare_class_experiment(ExperimentSettings(phantom_dir, out, **kwargs))
    assert again["summary"] == results["summary"]
    with pytest.raises(NeunnError, match="other settings"):
        run_rare_class_experiment(ExperimentSettings(phantom_dir, out, **{**kwargs, "keep": 5}))


def test_experiment_refuses_bad_input_before_writing(phantom_dir: Path, tmp_path: Path):
    out = tmp_path / "exp"
    with pytest.raises(NeunnError, match="Class 'XYZ' is not in dataset"):
        run_rare_class_experiment(ExperimentSettings(phantom_dir, out, class_name="XYZ", keep=5, arms=["a", "b"],
                                                     progress=False))
    with pytest.raises(NeunnError, match="below the 20 images a GAN needs"):
        run_rare_class_experiment(ExperimentSettings(phantom_dir, out, class_name="GBI", keep=5, gan_preset="gan-cpu",
                                                     progress=False))
    with pytest.raises(NeunnError, match="Arm 'd' does not run on one cut split"):
        run_rare_class_experiment(ExperimentSettings(phantom_dir, out, class_name="GBI", keep=5, arms=["a", "d"],
                                                     progress=False))
    assert not out.exists()


def test_augment_rare_class_trains_samples_and_then_reuses(phantom_dir: Path, tmp_path: Path):
    synthetic = augment_rare_class(phantom_dir, class_name="GBI", out=tmp_path / "aug", n_samples=3,
                                   preset="gan-cpu", overrides=TINY_GAN, progress=False)
    assert synthetic == tmp_path / "aug" / "synthetic"
    assert sorted(p.name for p in (synthetic / "GBI").iterdir()) == [f"seed_{s:06d}.png" for s in range(3)]
    assert json.loads((synthetic / "manifest.json").read_text())["class"] == "GBI"
    stamp = (synthetic / "manifest.json").stat().st_mtime_ns
    assert augment_rare_class(phantom_dir, class_name="GBI", out=tmp_path / "aug", n_samples=3, progress=False) == synthetic
    assert (synthetic / "manifest.json").stat().st_mtime_ns == stamp
