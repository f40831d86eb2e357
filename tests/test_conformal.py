"""Conformal prediction sets: the split-conformal threshold, its coverage guarantee on exchangeable cells, and a run's
sets in every prediction (a cell whose set is not one class goes to review)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from neunn.cli import main
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.inference.screens.conformal import ConformalSets, conformal_threshold
from neunn.rundir import RunDir
from neunn.training.conformal_fit import choose_within_budget


def test_the_threshold_is_the_conformal_rank_of_the_scores():
    scores = np.arange(1, 20) / 20.0  # 19 scores 0.05 ... 0.95
    assert conformal_threshold(scores, 0.1) == pytest.approx(0.90)  # ⌈20 · 0.9⌉ = 18th smallest
    assert conformal_threshold(scores, 0.5) == pytest.approx(0.50)  # ⌈20 · 0.5⌉ = 10th
    assert conformal_threshold(scores[:5], 0.1) == 1.0  # too few cells for that level: keep every class


def _cells(rng, n: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A noisy classifier's calibrated-looking probabilities and the true classes."""
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 2.0 * np.eye(k)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, truth


@pytest.mark.parametrize("class_conditional", [False, True])
def test_on_exchangeable_cells_at_most_about_alpha_are_wrong_and_let_through(class_conditional):
    rng, alpha, classes = np.random.default_rng(0), 0.1, ("A", "B", "C", "D")
    missed, through_wrong = [], []
    for _ in range(200):
        cal_p, cal_y = _cells(rng, 300)
        test_p, test_y = _cells(rng, 300)
        scores = 1.0 - cal_p[np.arange(300), cal_y]
        thresholds = (tuple(conformal_threshold(scores[cal_y == i], alpha) for i in range(4)) if class_conditional
                      else (conformal_threshold(scores, alpha),) * 4)
        sets = ConformalSets(alpha, class_conditional, classes, thresholds, {})
        kept = [sets.prediction_set(p) for p in test_p]
        missed.append(np.mean([classes[y] not in s for s, y in zip(kept, test_y)]))
        through_wrong.append(np.mean([len(s) == 1 and s[0] != classes[y] for s, y in zip(kept, test_y)]))
    assert np.mean(missed) <= alpha + 0.005  # coverage ≥ 1 − α on average over draws
    assert np.mean(missed) >= alpha - 0.03  # and not far over it: the sets are not trivially everything
    assert np.mean(through_wrong) <= alpha + 0.005


def test_a_runs_sets_reach_every_prediction(trained_run: Path, phantom_dir: Path, tmp_path: Path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    files = sorted(phantom_dir.rglob("*.png"))[::5]
    plain = list(Predictor.from_run(run).predict_files(files))
    assert main(["screen", "fit", "conformal", str(run), "--alpha", "0.2"]) == 0
    assert "conformal sets at α = 0.2" in capsys.readouterr().out
    saved = json.loads(RunDir(run).conformal_file.read_text())
    assert saved["alpha"] == 0.2 and len(set(saved["thresholds"])) == 1 and saved["fitted_on"]["n"] >= 1
    predictor = Predictor.from_run(run)
    sets = predictor.screen("conformal")
    for before, after in zip(plain, predictor.predict_files(files)):
        kept = sets.prediction_set(np.asarray(after.probs))
        assert after.prediction_set == "|".join(kept) and after.set_not_single == (len(kept) != 1)
        assert after.needs_review == (before.needs_review or len(kept) != 1)
        assert (after.label, after.probs) == (before.label, before.probs)
        if len(kept) == 1:
            assert kept[0] == after.label  # a single-class set is the model's call
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), *map(str, files), "--out", str(out)]) == 0
    assert all("prediction_set" in row for row in csv.DictReader(out.open()))
    assert main(["screen", "fit", "conformal", str(run), "--alpha", "0.2", "--per-class", "--data",
                 str(phantom_dir)]) == 0
    saved = json.loads(RunDir(run).conformal_file.read_text())
    assert saved["class_conditional"] and saved["fitted_on"]["n"] == 84 and set(saved["fitted_on"]["per_class"].values()) == {12}
    assert main(["screen", "fit", "conformal", str(run), "--alpha", "1.5"]) == 2
    assert "α must be between 0 and 1" in capsys.readouterr().err


def test_within_a_flag_budget_the_out_of_domain_flag_takes_what_the_sets_leave():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (400, 4)) + 6.0 * np.eye(4)[truth := rng.integers(0, 4, 400)]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # a strong classifier: few sets not single
    ood = rng.normal(0, 1, 400)
    review = probs.max(axis=1) < 0.6
    choice = choose_within_budget(probs, truth, ood, review, alpha=0.05, class_conditional=False, budget=0.1)
    thresholds = (conformal_threshold(1.0 - probs[np.arange(400), truth], 0.05),) * 4
    sets = ConformalSets(0.05, False, ("A", "B", "C", "D"), thresholds, {})
    before = review | np.array([len(sets.prediction_set(p)) != 1 for p in probs])
    flagged = before | (ood > choice.out_of_domain_threshold)
    assert choice.share_sets_and_review == pytest.approx(before.mean()) and before.mean() < 0.1
    assert flagged.mean() == pytest.approx(choice.share_flagged) and 0.095 <= flagged.mean() <= 0.1
    assert choice.share_out_of_domain_only == pytest.approx((flagged & ~before).mean())
    assert (flagged & ~before).any()
    with pytest.raises(NeunnError, match=r"over the flag budget of 1%; nothing was written: α = 0\.\d+ is the "
                                         "smallest that fits"):
        choose_within_budget(probs, truth, ood, np.zeros(400, bool), alpha=0.001, class_conditional=False,
                             budget=0.01)


def test_a_budget_the_run_cannot_meet_is_refused_and_nothing_written(trained_run: Path, tmp_path: Path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    ood_before = RunDir(run).ood_file("best", ".json").read_text()
    assert main(["screen", "fit", "conformal", str(run), "--flag-budget", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "over the flag budget of 5%; nothing was written" in err and "Traceback" not in err
    assert not RunDir(run).conformal_file.exists() and RunDir(run).ood_file("best", ".json").read_text() == ood_before
