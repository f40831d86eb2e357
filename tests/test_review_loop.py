"""The review loop of benchmarks/review_loop.py at toy size (its --quick settings): cases opened, decided and signed
through the HTTP API over a real SQLite store, the reviewed export, and the fine-tune that learns from it on the
original run's split. It checks what the loop does, not how much the model gains (too noisy at this size)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from neunn import NEUTROPHIL_CLASSES

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "review_loop.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("review_loop_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it is being executed
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """(the benchmark module, its output folder, its results) after one quick loop."""
    module = _load_benchmark()
    out = tmp_path_factory.mktemp("review-loop") / "loop"
    return module, out, module.run_loop(out, module.QUICK, seed=3)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _truth(pool: Path) -> dict[str, str]:
    """Image SHA-256 → true class of every cell of the reviewed pool P."""
    return {_sha256(p): label for label in NEUTROPHIL_CLASSES for p in (pool / label).glob("*.png")}


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "reviewed" / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_case_is_decided_cell_by_cell_and_signed(loop):
    module, out, results = loop
    from neunn.cases import open_store
    from neunn.cases.casework import audit_trail, list_cases

    store = open_store(out / "store")
    try:
        with store.transaction() as db:
            cases = list_cases(db)
            trails = [audit_trail(db, case["id"]) for case in cases]
    finally:
        store.close()
    n_pool = len(_truth(out / "data" / "P"))
    assert len(cases) == module.QUICK.n_cases == results["review"]["n_cases"]
    assert all(c["status"] == "signed" and c["signed_by"] == module.REVIEWER for c in cases)
    assert all(c["n_decided"] == c["n_cells"] for c in cases) and sum(c["n_cells"] for c in cases) == n_pool
    actions = [entry for trail in trails for entry in trail]
    # every cell was decided by the reviewer before signing: none was accepted as classified at the signature
    assert not any((e["detail"] or {}).get("accepted_at_signing") for e in actions)
    assert sum(e["action"] == "reclassify" for e in actions) == results["review"]["n_corrected"] > 0
    assert sum(e["action"] == "confirm" for e in actions) == results["review"]["n_confirmed"]
    assert sum(e["action"] == "sign" for e in actions) == len(cases)


def test_the_export_holds_exactly_the_reviewed_cells_under_their_true_class(loop):
    _, out, results = loop
    truth, export = _truth(out / "data" / "P"), out / "reviewed"
    files = [p for p in export.rglob("*") if p.is_file() and p.name != "manifest.csv"]
    assert sorted(_sha256(p) for p in files) == sorted(truth)  # every reviewed cell, once, and nothing else
    assert all(p.parent.name == truth[_sha256(p)] for p in files)
    rows = _manifest(out)
    corrected = [r for r in rows if r["model_label"] != r["final_label"]]
    assert len(corrected) == results["review"]["n_corrected"] == results["export"]["n_corrected"] > 0
    assert all(r["final_label"] == truth[r["image_sha256"]] for r in corrected)


def test_the_manifest_names_the_reviewer_the_models_call_and_the_final_call(loop):
    module, out, _ = loop
    truth = _truth(out / "data" / "P")
    with (out / "review.csv").open(newline="", encoding="utf-8") as handle:
        called = {row["image_sha256"]: row["model_label"] for row in csv.DictReader(handle)}
    rows = _manifest(out)
    assert len(rows) == len(truth)
    for row in rows:
        assert row["reviewer"] == row["signed_by"] == module.REVIEWER
        assert row["model_label"] == called[row["image_sha256"]]  # what the current model said through the API
        assert row["final_label"] == truth[row["image_sha256"]] == Path(row["file"]).parent.name
        assert row["model_run"] == "current" and len(row["model_weights_sha256"]) == 64
        assert row["sample_id"].startswith("LOOP-") and row["signed_at"]


def test_the_fine_tune_names_the_added_dataset_and_keeps_the_original_test_split(loop):
    _, out, results = loop
    runs, export = out / "runs", out / "reviewed"
    original = json.loads((runs / "current" / "splits.json").read_text())
    tuned = yaml.safe_load((runs / "next" / "config.yaml").read_text())
    assert tuned["added_data"] == [str(export)] and tuned["init_from"] == str(runs / "current")
    info = json.loads((runs / "next" / "run.json").read_text())
    assert info["added"][0]["manifest_sha256"] == _sha256(export / "manifest.csv")
    assert sum(info["added"][0]["counts"].values()) == len(_truth(out / "data" / "P"))
    assert info["added"][0]["dropped_copies_of_val_or_test"] == []  # P is not A: nothing leaks into A's test split
    control = yaml.safe_load((runs / "control" / "config.yaml").read_text())
    assert control["added_data"] == [] and control["init_from"] == str(runs / "current")
    for name in ("next", "control"):
        split = json.loads((runs / name / "splits.json").read_text())
        assert split["splits"]["test"] == original["splits"]["test"] and split["splits"] == original["splits"]
    # the control is given at least the fine-tune's optimiser steps, so a gain is the reviewed cells', not more training
    assert results["runs"]["control"]["steps"] >= results["runs"]["next"]["steps"]


def test_the_three_runs_are_scored_on_the_same_cells_and_written_up(loop):
    _, out, results = loop
    n_test = len(json.loads((out / "runs" / "current" / "splits.json").read_text())["splits"]["test"])
    n_heldout = results["data"]["Q"]["n"]
    for name in ("current", "control", "next"):
        assert results["evaluation"]["original_test"][name]["n"] == n_test
        assert results["evaluation"]["heldout"][name]["n"] == n_heldout
        assert results["evaluation"]["heldout"][name]["accuracy_ci95"] is not None
    assert results["comparisons"]["heldout"]["next_vs_control"]["n"] == n_heldout
    assert json.loads((out / "results.json").read_text())["synthetic"] is True
    table = (out / "results.md").read_text()
    assert "synthetic, not real cells" in table and "| next vs control |" in table
