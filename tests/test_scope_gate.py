"""The cell-type gate: a model of some cell types flags the cells its gate calls another type, everywhere it predicts,
without changing its own calls; a gate that changed or vanished is refused."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from fastapi.testclient import TestClient
from PIL import ImageFilter

from neunn.cases.users import add_user
from neunn.cli import main
from neunn.errors import NeunnError
from neunn.inference.int8 import write_int8_model
from neunn.inference.predictor import Predictor
from neunn.inference.screens.cell_type_gate import remove_gate, set_gate
from neunn.rundir import RunDir
from neunn.serve import create_app
from neunn.training.pallor_fit import fit_pallor_screen
from neunn.training.config import resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train

SCOPE = ("NEU", "HYP")


@pytest.fixture(scope="module")
def finding_run(phantom_dir: Path, tmp_path_factory) -> Path:
    """A run of two of the phantom's classes, at another input size than the gate (32 px against 48)."""
    data = tmp_path_factory.mktemp("two-classes")
    for name in SCOPE:
        shutil.copytree(phantom_dir / name, data / name)
    out = tmp_path_factory.mktemp("runs") / "finding"
    cfg = resolve_config(preset="cpu-small", overrides=[*TINY_OVERRIDES, "img_size=32"])
    train(open_training_run(data, out, cfg=cfg, progress=False))
    return out


@pytest.fixture(scope="module")
def gate_run(phantom_dir: Path, tmp_path_factory) -> Path:
    """A gate of all seven phantom classes, trained long enough to tell some of them apart."""
    out = tmp_path_factory.mktemp("runs") / "gate"
    cfg = resolve_config(preset="cpu-small", overrides=[*TINY_OVERRIDES, "epochs=10", "split=0.9,0.1,0"])
    train(open_training_run(phantom_dir, out, cfg=cfg, progress=False))
    return out


def _files(phantom_dir: Path) -> list[Path]:
    return sorted(phantom_dir.rglob("*.png"))[::3]


def test_gate_flags_other_cell_types_and_leaves_the_model_alone(finding_run: Path, gate_run: Path,
                                                                phantom_dir: Path) -> None:
    files = _files(phantom_dir)
    plain = list(Predictor.from_run(finding_run).predict_files(files))
    gate_calls = [p.label for p in Predictor.from_run(gate_run).predict_files(files)]
    record = set_gate(finding_run, gate_run, scope=["NEU", "HYP"])
    assert record["scope"] == ["NEU", "HYP"] and RunDir(finding_run).gate_file.is_file()

    predictor = Predictor.from_run(finding_run)
    gated = list(predictor.predict_files(files))
    assert [p.cell_type for p in gated] == gate_calls  # the gate saw each cell as its own model prepares it
    for before, after in zip(plain, gated):
        assert (after.label, after.probs, after.ood_score) == (before.label, before.probs, before.ood_score)
        assert after.out_of_scope == (after.cell_type not in SCOPE)
        assert after.out_of_domain == (bool(before.out_of_domain) or after.out_of_scope)
        assert after.as_dict()["cell_type"] == after.cell_type
    assert any(p.out_of_scope for p in gated) and any(not p.out_of_scope for p in gated)
    assert Predictor.from_run(finding_run, gate=False).screen("cell_type_gate") is None

    # The same with a perturbation (decoded once, prepared for each model) and through `neunn predict`'s CSV.
    blurred = list(predictor.predict_files(files[:4], transform=lambda im: im.filter(ImageFilter.GaussianBlur(1))))
    assert all(p.cell_type is not None and p.error is None for p in blurred)
    out = finding_run.parent / "gated.csv"
    assert main(["predict", str(finding_run), *map(str, files), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["cell_type"] for r in rows] == gate_calls
    assert [r["out_of_domain"] == "yes" for r in rows] == [bool(p.out_of_domain) for p in gated]

    # The review station: each cell's gate class and scope, and the gate in the model card.
    client = TestClient(create_app(predictor))
    assert client.get("/api/v1/model").json()["cell_type_gate"]["scope"] == ["NEU", "HYP"]
    body = client.post("/api/v1/predict", files=[("files", (f.name, f.read_bytes())) for f in files]).json()
    assert [r["cell_type"] for r in body["results"]] == gate_calls
    assert [r["out_of_domain"] for r in body["results"]] == [p.out_of_domain for p in gated]

    assert remove_gate(finding_run) and not remove_gate(finding_run)
    assert Predictor.from_run(finding_run).screen("cell_type_gate") is None


def test_gate_requests_are_checked(finding_run: Path, gate_run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(NeunnError, match="classes of the gate"):
        set_gate(finding_run, gate_run, scope=["neutrophil"])
    with pytest.raises(NeunnError, match="never flag a cell"):
        set_gate(finding_run, gate_run, scope=["NEU", "HYP", "CRY", "DB", "HJBLI", "GBI", "BAC"])
    with pytest.raises(NeunnError, match="its own cell-type gate"):
        set_gate(finding_run, finding_run, scope=["NEU"])
    assert main(["screen", "fit", "cell-type-gate", str(finding_run)]) == 2
    assert "--scope" in capsys.readouterr().err

    # A gate retrained (or moved, or deleted) after it was set is refused, not silently replaced.
    gate = tmp_path / "gate"
    shutil.copytree(gate_run, gate)
    assert main(["screen", "fit", "cell-type-gate", str(finding_run), str(gate), "--scope", "NEU,HYP"]) == 0
    assert json.loads(RunDir(finding_run).gate_file.read_text())["scope"] == ["NEU", "HYP"]
    weights = gate / "checkpoints" / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(NeunnError, match="missing or has changed"):
        Predictor.from_run(finding_run)
    assert main(["screen", "remove", str(finding_run), "cell_type_gate"]) == 0
    assert "removed" in capsys.readouterr().out and not RunDir(finding_run).gate_file.exists()


def test_a_stored_case_keeps_what_the_screens_said_of_each_cell(finding_run: Path, gate_run: Path, phantom_dir: Path,
                                                               tmp_path: Path, case_store) -> None:
    run = Path(shutil.copytree(finding_run, tmp_path / "screened"))
    set_gate(run, gate_run, scope=list(SCOPE))
    fit_pallor_screen(run, finding="HYP", target_sensitivity=0.9, show_progress=False)
    predictor = Predictor.from_run(run)
    files = _files(phantom_dir)
    expected = list(predictor.predict_files(files))
    with case_store.transaction() as db:
        add_user(db, "ana", "ana-password-1", role="pathologist")
    client = TestClient(create_app(predictor, store=case_store, model_info={"run": "screened"}))
    csrf = {"X-CSRF-Token": client.post("/api/v1/session", json={"name": "ana", "password": "ana-password-1"})
            .json()["csrf_token"]}
    case = client.post("/api/v1/cases", json={"sample_id": "S-screens"}, headers=csrf).json()
    upload = client.post(f"/api/v1/cases/{case['id']}/cells", headers=csrf,
                         files=[("files", (f.name, f.read_bytes())) for f in files])
    assert upload.status_code == 200, upload.text
    stored = client.get(f"/api/v1/cases/{case['id']}").json()["cells"]
    assert [(c["cell_type"], c["out_of_scope"], c["pale"]) for c in stored] == [
        (p.cell_type, p.out_of_scope, p.pale) for p in expected]
    assert [c["pallor"] for c in stored] == pytest.approx([p.pallor for p in expected])
    assert any(c["pale"] for c in stored) and any(c["out_of_scope"] for c in stored)
    exported = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/cases/{case['id']}/export?format=csv").text)))
    assert [r["cell_type"] for r in exported] == [p.cell_type for p in expected]


def test_the_gate_runs_on_the_models_backend_int8_included(finding_run: Path, gate_run: Path, phantom_dir: Path,
                                                           tmp_path: Path) -> None:
    run = Path(shutil.copytree(finding_run, tmp_path / "finding"))
    gate = Path(shutil.copytree(gate_run, tmp_path / "gate"))
    for folder in (run, gate):  # the tiny models' margins are too thin for the real agreement bar
        write_int8_model(RunDir(folder), min_agreement=0.0)
    set_gate(run, gate, scope=list(SCOPE))
    files = _files(phantom_dir)
    gated = Predictor.from_run(run, backend="onnx-int8")
    assert gated.screen("cell_type_gate") is not None and gated.screen("cell_type_gate").predictor.backend == "onnx-int8"
    gate_calls = [p.label for p in Predictor.from_run(gate, backend="onnx-int8").predict_files(files)]
    results = list(gated.predict_files(files))
    assert [p.cell_type for p in results] == gate_calls
    assert all(p.out_of_scope == (p.cell_type not in SCOPE) for p in results)
