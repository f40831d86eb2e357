"""The rare-class experiment on folds: every arm tests the same cells once, each fold's synthetic images come from its
own training split only, arms are compared on the same cells, and a second run trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES
from conftest import TINY_GAN

from neunn.cli import main
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.evaluation.metrics import read_predictions_csv
from neunn.evaluation.paired import paired_ranking_difference
from neunn.experiments import cross_validation
from neunn.experiments.rare_class_folds import FoldExperimentSettings, run_rare_class_folds


def test_paired_ranking_difference_is_zero_for_the_same_ranking_and_positive_for_a_better_one() -> None:
    rng = np.random.default_rng(1)
    positive = rng.random(300) < 0.1
    noisy = rng.random(300) + 0.3 * positive
    same = paired_ranking_difference(positive, noisy, noisy, n_boot=200)
    assert same["roc_auc"]["difference"] == 0.0
    assert same["roc_auc"]["difference_ci95"]["low"] == same["roc_auc"]["difference_ci95"]["high"] == 0.0
    better = paired_ranking_difference(positive, noisy, noisy + 2.0 * positive, n_boot=200)
    assert better["roc_auc"]["second"] == 1.0 and better["average_precision"]["second"] == 1.0
    assert better["roc_auc"]["difference_ci95"]["low"] > 0 and better["average_precision"]["difference"] > 0
    assert better["positives"] == int(positive.sum())
    with pytest.raises(NeunnError, match="same cells"):
        paired_ranking_difference(positive, noisy, noisy[:-1])


def _pooled(out: Path, arm: str) -> tuple[list[str], np.ndarray]:
    paths, _, labels, _ = read_predictions_csv(out / "arms" / arm / "pooled" / "predictions.csv")
    order = np.argsort(paths)
    return [paths[i] for i in order], labels[order]


def test_rare_class_folds_end_to_end(phantom_dir: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "exp"
    kwargs = {"class_name": "GBI", "folds": 2, "arms": ["a", "c", "d"], "paste_from": "NEU",
              "overrides": [*TINY_OVERRIDES, "epochs=1", "img_size=32"], "gan_preset": "gan-cpu",
              "gan_overrides": TINY_GAN, "n_synthetic": 4, "target_sensitivity": 0.9, "progress": False}
    results = run_rare_class_folds(FoldExperimentSettings(phantom_dir, out, **kwargs))

    images = sorted(str(p.relative_to(phantom_dir)) for p in phantom_dir.rglob("*.png"))
    for arm in "acd":  # every arm tests every image exactly once, on the same folds
        paths, _ = _pooled(out, arm)
        assert paths == images, arm
        assert [load_split(out / "arms" / arm / "splits" / f"fold-{k}.json").digest() for k in (1, 2)] == \
            [load_split(out / "arms" / "a" / "splits" / f"fold-{k}.json").digest() for k in (1, 2)]
    for fold in (1, 2):
        split = load_split(out / "arms" / "c" / "splits" / f"fold-{fold}.json")
        train_gbi = {e.path for e in split.splits["train"] if e.label == "GBI"}
        train_neu = {str(phantom_dir / e.path) for e in split.splits["train"] if e.label == "NEU"}
        gan_info = json.loads((out / "gan" / f"fold-{fold}" / "gan.json").read_text())
        assert {p for p, _, _ in gan_info["training_images"]} == train_gbi  # the GAN saw this fold's training cells
        painted = json.loads((out / "painted" / f"fold-{fold}" / "manifest.json").read_text())
        assert set(painted["sources"]) <= train_neu and painted["n"] == 4  # painted into this fold's training cells
        for arm, folder in (("c", out / "synthetic" / f"fold-{fold}"), ("d", out / "painted" / f"fold-{fold}")):
            run_info = json.loads((out / "arms" / arm / f"fold-{fold}" / "run.json").read_text())
            assert [s["counts"] for s in run_info["synthetic"]] == [{"GBI": 4}]
            assert run_info["synthetic"][0]["source"] == str(folder.resolve())
        assert not json.loads((out / "arms" / "a" / f"fold-{fold}" / "run.json").read_text()).get("synthetic")

    assert [r["arm"] for r in results["rows"]] == ["a", "c", "d"]
    assert set(results["paired_differences"]) == {"c-a", "d-a"}
    assert set(results["gan_quality"]) == {"1", "2"}
    for row in results["rows"]:
        assert 0 <= row["figures"]["rare_roc_auc"]["value"] <= 1 and len(row["fold_roc_auc"]) == 2
    text = (out / "results.md").read_text()
    assert "| (d) vacuoles painted into cells of another class" in text and "| c-a |" in text

    def no_training(setup):
        raise AssertionError("a finished experiment must not train again")

    monkeypatch.setattr(cross_validation, "train", no_training)
    again = run_rare_class_folds(FoldExperimentSettings(phantom_dir, out, **kwargs))
    assert again["rows"] == results["rows"]
    assert [r["arm"] for r in run_rare_class_folds(
        FoldExperimentSettings(phantom_dir, out, **{**kwargs, "arms": ["d", "a"]}))["rows"]] == \
        ["d", "a"]  # arms are folders: a later call may table any of them
    with pytest.raises(NeunnError, match="other settings"):
        run_rare_class_folds(FoldExperimentSettings(phantom_dir, out, **{**kwargs, "n_synthetic": 5}))


def test_rare_class_folds_refuses_unclear_requests(phantom_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(NeunnError, match="--paste-from"):
        run_rare_class_folds(FoldExperimentSettings(phantom_dir, tmp_path / "a", class_name="GBI", arms=["a", "d"],
                                                    progress=False))
    with pytest.raises(NeunnError, match="not a class"):
        run_rare_class_folds(FoldExperimentSettings(phantom_dir, tmp_path / "b", class_name="GBI", arms=["d"],
                                                    paste_from="nope", progress=False))
    base = ["experiment", "rare-class", str(phantom_dir), "--class", "GBI", "--out", str(tmp_path / "c")]
    for extra, message in (([], "Give --keep N"), (["--folds", "2", "--keep", "3"], "drop --keep"),
                           (["--folds", "2", "--seeds", "0", "1"], "drop --keep"),
                           (["--keep", "3", "--paste-from", "NEU"], "go with --folds"),
                           (["--keep", "3", "--arms", "a", "d"], "arm d runs with --folds")):
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "c").exists()
