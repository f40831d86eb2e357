"""The pallor screen: its threshold is chosen on the run's own cells for the target sensitivity, and a pale cell the
model did not call the finding goes to review, everywhere the run predicts, without changing the model's call."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neunn.cli import main
from neunn.data.cytoplasm_pallor import cytoplasm_pallor
from neunn.errors import NeunnError
from neunn.evaluation.rare_class import choose_threshold
from neunn.inference.predictor import Predictor
from neunn.rundir import RunDir
from neunn.training.pallor_fit import fit_pallor_screen

FINDING = "HYP"  # the phantom's hypogranulated neutrophils: a paler cytoplasm


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's run, so that its screen stays out of the other tests."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_screen_threshold_is_chosen_on_the_runs_own_cells(run: Path, phantom_dir: Path) -> None:
    screen = fit_pallor_screen(run, finding=FINDING, target_sensitivity=0.9, show_progress=False)
    split = json.loads((run / "splits.json").read_text())["splits"]
    entries = split["train"] + split["val"]
    scores = np.array([cytoplasm_pallor(np.asarray(Image.open(phantom_dir / e["path"]).convert("RGB")))
                       for e in entries])
    expected = choose_threshold(scores, np.array([e["label"] == FINDING for e in entries]), 0.9)
    assert screen.threshold == expected["threshold"] and screen.fitted_on["sensitivity"] >= 0.9
    assert json.loads(RunDir(run).pallor_file.read_text())["finding"] == FINDING
    with pytest.raises(NeunnError, match="not a class"):
        fit_pallor_screen(run, finding="vacuolated", show_progress=False)
    with pytest.raises(NeunnError, match="target sensitivity"):
        fit_pallor_screen(run, finding=FINDING, target_sensitivity=0.0, show_progress=False)


def test_pale_cells_go_to_review_and_the_call_stays(run: Path, phantom_dir: Path, capsys) -> None:
    files = sorted(phantom_dir.rglob("*.png"))[::2]
    plain = list(Predictor.from_run(run).predict_files(files))
    assert main(["screen", "fit", "pallor", str(run), "--finding", FINDING, "--target-sensitivity", "0.9"]) == 0
    assert "pallor screen for 'HYP'" in capsys.readouterr().out
    predictor = Predictor.from_run(run)
    screened = list(predictor.predict_files(files))
    threshold = predictor.screen("pallor_screen").threshold
    for f, before, after in zip(files, plain, screened):
        assert after.pallor == pytest.approx(cytoplasm_pallor(np.asarray(Image.open(f).convert("RGB"))))
        assert after.pale == (after.pallor >= threshold)
        assert (after.label, after.probs, after.out_of_domain) == (before.label, before.probs, before.out_of_domain)
        assert after.needs_review == (before.needs_review or (after.pale and after.label != FINDING))
    assert any(p.pale for p in screened) and not all(p.pale for p in screened)
    assert all(p.pallor is None and p.pale is None for p in plain)

    out = run.parent / "screened.csv"
    assert main(["predict", str(run), *map(str, files), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [float(r["pallor"]) for r in rows] == pytest.approx([p.pallor for p in screened], abs=1e-4)
    assert [r["needs_review"] == "yes" for r in rows] == [p.needs_review for p in screened]

    assert main(["screen", "remove", str(run), "pallor_screen"]) == 0 and not RunDir(run).pallor_file.exists()
    assert Predictor.from_run(run).screen("pallor_screen") is None
