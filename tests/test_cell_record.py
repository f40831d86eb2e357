"""One per-cell record and one registry of screens: predict's JSON, the API's results and the store's cells are views
of the same fields, and each kind of screen appears in all of them from its registry entry alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from neunn.cases import open_store
from neunn.cases.export import CELL_COLUMNS
from neunn.cases.stored_cell import StoredCell
from neunn.cases.users import add_user
from neunn.cli import main
from neunn.inference.cell_record import CellCall, CellResult
from neunn.inference.predict_files import CSV_HEADER
from neunn.inference.predictor import Predictor
from neunn.inference.screens import SCREENS, csv_columns, field_names
from neunn.rundir import RunDir
from neunn.serve import create_app
from neunn.training.pallor_fit import fit_pallor_screen


@pytest.fixture(scope="module")
def screened_run(trained_run: Path, tmp_path_factory) -> Path:
    """A copy of the session's run with a pallor screen beside its out-of-domain screen."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("record") / "run"))
    fit_pallor_screen(run, finding="HYP", target_sensitivity=0.9, show_progress=False)
    return run


def test_every_kind_of_screen_is_in_every_view_of_the_record():
    shared = set(CellCall.model_fields)
    assert set(field_names()) <= shared and "screens" in shared
    assert shared <= set(CellResult.model_fields) and shared <= set(StoredCell.model_fields)
    assert set(CELL_COLUMNS) <= set(StoredCell.model_fields)
    assert csv_columns() == ["ood_score", "cell_type", "pallor", "vacuole_score", "prediction_set"]
    assert set(csv_columns()) <= set(CSV_HEADER)
    for name, kind in SCREENS.items():
        assert kind.name == name and kind.effect in ("out_of_domain", "review")
        assert kind.value_field in field_names() and (kind.flag_field is None or kind.flag_field in field_names())


def test_predict_json_the_api_and_the_store_give_the_same_record(screened_run: Path, phantom_dir: Path, tmp_path,
                                                                  capsys):
    files = sorted(phantom_dir.rglob("*.png"))[::12][:4]
    out = tmp_path / "cells.json"
    assert main(["predict", str(screened_run), *map(str, files), "--format", "json", "--out", str(out)]) == 0
    predicted = json.loads(out.read_text())
    assert [set(row) - {"review_threshold", "critical_classes"} for row in predicted] == [set(CellResult.model_fields)] * 4
    assert all(set(row["screens"]) == {"out_of_domain", "pallor_screen"} for row in predicted)
    assert all(row["pallor"] == row["screens"]["pallor_screen"]["value"] and
               row["pale"] == row["screens"]["pallor_screen"]["flagged"] for row in predicted)

    store = open_store(tmp_path / "store")
    with store.transaction() as db:
        add_user(db, "ana", "ana-password-1", role="pathologist")
    client = TestClient(create_app(Predictor.from_run(screened_run), store=store, model_info={"run": "tiny"}))
    token = client.post("/api/v1/token", data={"username": "ana", "password": "ana-password-1"}).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    case = client.post("/api/v1/cases", json={"sample_id": "S-record"}, headers=auth).json()
    uploads = [("files", (f.name, f.read_bytes(), "image/png")) for f in files]
    answered = client.post(f"/api/v1/cases/{case['id']}/cells", files=uploads, headers=auth).json()["cells"]
    stored = client.get(f"/api/v1/cases/{case['id']}", headers=auth).json()["cells"]
    assert stored == answered
    shared = [f for f in CellCall.model_fields if f not in ("probabilities", "screens")]
    for row, cell in zip(predicted, stored):
        assert {f: cell[f] for f in shared} == pytest.approx({f: row[f] for f in shared})
        assert cell["screens"] == row["screens"] and cell["predicted_label"] == row["label"]
        assert cell["probabilities"] == pytest.approx(row["probabilities"])
    store.close()


def test_screen_list_and_remove_speak_of_every_kind(screened_run: Path, tmp_path, capsys):
    run = Path(shutil.copytree(screened_run, tmp_path / "run"))
    assert main(["screen", "list", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(SCREENS)
    assert "none" in lines[1] and "threshold=" in lines[2] and "finding=HYP" in lines[2]
    assert main(["screen", "remove", str(run), "pallor_screen"]) == 0 and not RunDir(run).pallor_file.exists()
    assert main(["screen", "remove", str(run), "pallor_screen"]) == 0
    assert "has no pallor screen" in capsys.readouterr().out
    assert main(["screen", "remove", str(run), "vacuoles"]) == 2
    assert "the kinds are out_of_domain, cell_type_gate, pallor_screen, vacuole_finder, conformal" in capsys.readouterr().err
    assert main(["screen", "remove", str(run), "out_of_domain"]) == 0
    assert Predictor.from_run(run).screens == [] and not RunDir(run).ood_file().exists()
