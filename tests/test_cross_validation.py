"""Cross-validation: folds test every image exactly once, pooling equals scoring the folds' own predictions, and a
second run trains nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES
from neunn.cli import main
from neunn.data.scan import ImageRecord
from neunn.data.split import load_split, stratified_folds
from neunn.errors import NeunnError
from neunn.evaluation.metrics import metrics_from_predictions_csv
from neunn.experiments import cross_validation
from neunn.experiments.cross_validation import CrossValidationSettings, run_cross_validation
from conftest import image_records

CV_OVERRIDES = [*TINY_OVERRIDES, "epochs=1", "img_size=32"]


def test_folds_test_every_image_once_per_class_and_by_seed() -> None:
    records = image_records({"NEU": 50, "VAC": 7, "GBI": 13})
    folds = stratified_folds(records, 5, seed=0, val_fraction=0.125)
    tested = [e.path for fold in folds for e in fold.splits["test"]]
    assert sorted(tested) == sorted(r.path for r in records)  # every image tested, none twice
    for fold in folds:
        parts = [{e.path for e in fold.splits[name]} for name in ("train", "val", "test")]
        assert sum(map(len, parts)) == len(records) == len(set().union(*parts))  # disjoint and complete
        counts = fold.counts()
        assert counts["test"]["NEU"] == 10 and counts["test"]["VAC"] in (1, 2)
        assert counts["val"]["NEU"] == 5 and counts["val"]["VAC"] == 1 and counts["train"]["VAC"] >= 4
    sizes = [len(fold.splits["test"]) for fold in folds]
    assert max(sizes) - min(sizes) <= 1
    again = stratified_folds(records, 5, seed=0, val_fraction=0.125)
    assert [f.splits for f in again] == [f.splits for f in folds]
    assert [f.splits for f in stratified_folds(records, 5, seed=1)] != [f.splits for f in folds]


def test_duplicates_share_a_fold_and_bad_requests_are_refused() -> None:
    records = image_records({"A": 20, "B": 20})
    copies = [ImageRecord(f"B/copy{i}.jpg", "B", records[i].sha256, 10, 10, "RGB", None) for i in range(5)]
    for fold in stratified_folds(records + copies, 4, seed=0):
        where = {e.path: name for name, entries in fold.splits.items() for e in entries}
        assert all(where[records[i].path] == where[f"B/copy{i}.jpg"] for i in range(5))
    with pytest.raises(NeunnError, match="at least 2 folds"):
        stratified_folds(records, 1)
    with pytest.raises(NeunnError, match="Class 'C' has fewer than 2"):
        stratified_folds(records + image_records({"C": 1}), 3)


def _checkpoint_times(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("fold-*/checkpoints/*"))}


def test_cross_validation_pools_every_image_once_and_resumes(phantom_dir: Path, tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    out = tmp_path / "cv"
    options = dict(folds=3, overrides=CV_OVERRIDES, positive="GBI", target_sensitivity=0.9, progress=False)
    real_train, trained = cross_validation.train, []

    def train_then_stop(setup):  # the experiment is killed while fold 2 trains
        trained.append(setup.run.root.name)
        if setup.run.root.name == "fold-2":
            raise KeyboardInterrupt
        return real_train(setup)

    monkeypatch.setattr(cross_validation, "train", train_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_cross_validation(CrossValidationSettings(phantom_dir, out, **options))
    assert trained == ["fold-1", "fold-2"] and (out / "fold-2" / "config.yaml").is_file()
    fold_1 = _checkpoint_times(out)
    monkeypatch.setattr(cross_validation, "train", real_train)
    # resumes fold 2, trains fold 3, skips fold 1
    results = run_cross_validation(CrossValidationSettings(phantom_dir, out, **options))
    assert {k: v for k, v in _checkpoint_times(out).items() if k.startswith("fold-1")} == fold_1

    # Every image of the dataset is tested exactly once, in the fold whose test split holds it.
    rows = list(csv.DictReader((out / "pooled" / "predictions.csv").open()))
    images = sorted(str(p.relative_to(phantom_dir)) for p in phantom_dir.rglob("*.png"))
    assert sorted(r["path"] for r in rows) == images and results["n_images"] == len(images) == 84
    for fold in (1, 2, 3):
        test = {e.path for e in load_split(out / f"fold-{fold}" / "splits.json").splits["test"]}
        assert {r["path"] for r in rows if r["fold"] == str(fold)} == test
        assert load_split(out / "splits" / f"fold-{fold}.json").splits == load_split(
            out / f"fold-{fold}" / "splits.json").splits

    # Pooling: the pooled metrics are those of the folds' own predictions, stacked.
    pooled = json.loads((out / "pooled" / "metrics.json").read_text())
    assert metrics_from_predictions_csv(out / "pooled" / "predictions.csv").to_json()["overall"] == pooled["overall"]
    fold_rows = [row for fold in (1, 2, 3)
                 for row in csv.DictReader((out / f"fold-{fold}" / "eval" / "test" / "predictions.csv").open())]
    assert sorted((r["path"], r["prob_GBI"]) for r in fold_rows) == sorted((r["path"], r["prob_GBI"]) for r in rows)
    assert pooled["intervals"]["overall"]["accuracy"]["resamples"] == 1000 and isinstance(pooled["warnings"], list)
    assert (out / "pooled" / "report.html").is_file()

    # Pooled operating point: each fold's own validation threshold on its own test cells.
    thresholds = {f["fold"]: f["threshold"] for f in pooled["rare_class"]["operating_point"]["folds"]}
    for fold, threshold in thresholds.items():
        saved = json.loads((out / f"fold-{fold}" / "eval" / "test" / "metrics.json").read_text())
        assert saved["rare_class"]["operating_point"]["threshold"] == threshold
    gbi = [r for r in rows if r["true"] == "GBI"]
    caught = sum(float(r["prob_GBI"]) >= thresholds[int(r["fold"])] for r in gbi)
    assert pooled["rare_class"]["operating_point"]["test"]["counts"]["tp"] == caught
    assert pooled["rare_class"]["operating_point"]["test"]["sensitivity"]["value"] == pytest.approx(caught / len(gbi))

    # The per-fold table sits beside the pooled figures.
    assert [f["n"] for f in results["folds"]] == [28, 28, 28] and results["pooled"]["n"] == 84
    assert results["pooled"]["figures"]["accuracy"] == pooled["overall"]["accuracy"]
    table = (out / "results.md").read_text()
    assert "| pooled | 84 |" in table and table.count("\n| 1 |") == 1

    # Again, through the command line: nothing is trained, nothing changes.
    before = _checkpoint_times(out)
    argv = ["experiment", "cv", str(phantom_dir), "--folds", "3", "--out", str(out), "--positive", "GBI",
            "--target-sensitivity", "0.9", *CV_OVERRIDES]
    assert main(argv) == 0
    assert _checkpoint_times(out) == before
    assert "| pooled | 84 |" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))

    # Other settings for the same folder are refused in one sentence.
    with pytest.raises(NeunnError, match=r"other settings \(folds\)"):
        run_cross_validation(CrossValidationSettings(phantom_dir, out, **{**options, "folds": 2}))
    with pytest.raises(NeunnError, match=r"other settings \(overrides\)"):
        run_cross_validation(CrossValidationSettings(phantom_dir, out,
                                                     **{**options, "overrides": [*CV_OVERRIDES, "lr=0.01"]}))
