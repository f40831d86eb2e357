"""Corrections that teach the model: the review loop end to end on phantom cells, through the review station's HTTP API.

    .venv/bin/python benchmarks/review_loop.py --out /tmp/loop            # the measured run (docs/review_loop.md)
    .venv/bin/python benchmarks/review_loop.py --out /tmp/loop-q --quick  # the same steps at toy size, in seconds

What a laboratory does, step by step, with the real commands and a real SQLite case store (nothing mocked):

1. data     the original training data A (phantom, seed S) with its fixed split; the lab's new samples P (seed S+1:
            never in A, so never in A's test split); a held-out pool Q (seed S+2) that nobody reviews.
2. current  `neunn train A --out runs/current` with a deliberately small budget: a weak model that gets many of P wrong;
            `neunn evaluate runs/current --split test`.
3. review   `create_app(Predictor.from_run(runs/current), store=...)` under FastAPI's TestClient: log in (bearer token),
            open one case per sample, upload its cells (anonymous names: the class is not in the file name), and as
            the pathologist, who knows each cell's class (P's folder names), decide every cell — confirm the model's
            right calls, reclassify its wrong ones — then sign the case.
4. export   `neunn cases export --reviewed --out reviewed/`; the manifest is checked against what was reviewed.
5. tune     `neunn train A --add reviewed/ --split-file runs/current/splits.json init_from=runs/current --out runs/next`
            and the fair control, the same fine-tune WITHOUT --add (`runs/control`), given at least as many optimiser
            steps, so that a gain over the control is the reviewed cells' and not that of more training.
6. compare  `neunn evaluate RUN --split test` (A's test split, the same for the three runs) and
            `neunn evaluate RUN --data Q --split all` (the held-out pool); accuracy and macro-F1 with the bootstrap 95 %
            intervals of metrics.json, and for each pair of runs the paired difference on the same cells (a paired
            bootstrap interval and the exact McNemar test).

Writes OUT/results.json and OUT/results.md (and review.csv: every reviewed cell, the model's call and the truth). The
neunn commands run in this process through the console script's entry point (neunn.cli.main) with its exact argument
lists, so each run's run.json records the command a lab would type. Phantom cells are synthetic: these figures show
that the loop works and what it measured here, not what corrections do for a model of real cells. What it measured
(about 10 minutes on a shared 2-core CPU): docs/review_loop.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


from neunn import NEUTROPHIL_CLASSES
from neunn.evaluation.metric_results import Interval, MetricResults

REVIEWER, PASSWORD = "dr.phantom", "loop-password-123"
RUNS = ("current", "control", "next")
EVALS = {"original_test": "A's test split", "heldout": "held-out pool Q"}


@dataclass(frozen=True)
class LoopSettings:
    """Sizes and budgets of one loop. ``full`` is the measured run; ``quick`` checks the machinery in seconds."""

    size: int  # phantom image side and the model's input size, px
    per_class_data: int  # A: the original training data (split 70/10/20)
    per_class_pool: int  # P: the new samples that are reviewed
    per_class_heldout: int  # Q: never reviewed, only scored
    n_cases: int  # P's cells are dealt into this many samples (cases)
    weak_epochs: int  # the current (weak) model's budget on A
    tune_epochs: int  # the fine-tune's epochs on A + reviewed cells; the control gets at least as many steps
    batch_size: int
    threads: int
    preset: str = "cpu-small"
    model: str = "resnet10t"
    lab_shift: tuple[str, ...] = ()  # perturbations (name=value) applied to P and Q: the lab's samples differ from A


# The full run's settings were fixed before its first (pilot) run, except two: Q grew from 60 to 100 cells per class
# for tighter intervals, and tune_epochs from 8 to 16, as 8 left both fine-tunes far from converged (most of their
# gain was more training). What each setting measured: docs/review_loop.md.
FULL = LoopSettings(size=96, per_class_data=60, per_class_pool=24, per_class_heldout=100, n_cases=4, weak_epochs=15,
                    tune_epochs=16, batch_size=32, threads=1)
QUICK = LoopSettings(size=48, per_class_data=10, per_class_pool=3, per_class_heldout=3, n_cases=2, weak_epochs=1,
                     tune_epochs=1, batch_size=16, threads=1)


def say(message: str) -> None:
    print(f"[review-loop] {message}", file=sys.stderr, flush=True)


def neunn(*argv: Any, commands: list[str] | None = None) -> str:
    """Run one neunn command in this process as the console script would (sys.argv included, so run.json records it);
    return what it printed. A failing command stops the loop."""
    from neunn.cli import main

    args = [str(a) for a in argv]
    line = "neunn " + shlex.join(args)
    say(f"$ {line}")
    if commands is not None:
        commands.append(line)
    saved, out = sys.argv, io.StringIO()
    sys.argv = ["neunn", *args]
    try:
        with contextlib.redirect_stdout(out):
            rc = main(args)
    finally:
        sys.argv = saved
    text = out.getvalue()
    print(text, end="", file=sys.stderr)
    if rc != 0:
        raise RuntimeError(f"`{line}` failed with exit status {rc}")
    return text


# ---- 1. data ---------------------------------------------------------------------------------------------------------

def render_data(out: Path, settings: LoopSettings, seed: int) -> dict[str, Path]:
    """A (seed), P (seed + 1) and Q (seed + 2) as folder-per-class phantom sets."""
    from neunn.data.phantom import write_phantom_dataset

    sets = {"A": (settings.per_class_data, seed), "P": (settings.per_class_pool, seed + 1),
            "Q": (settings.per_class_heldout, seed + 2)}
    paths = {}
    for name, (per_class, base_seed) in sets.items():
        paths[name] = out / "data" / name
        write_phantom_dataset(paths[name], per_class=per_class, seed=base_seed, size=settings.size)
        if name != "A" and settings.lab_shift:
            shift_images(paths[name], settings.lab_shift)
    return paths


def shift_images(folder: Path, shift: tuple[str, ...]) -> None:
    """Apply the perturbations to every image of a folder-per-class set, in place (the new lab's stain, scanner...)."""
    from PIL import Image

    from neunn.evaluation.perturbations import parse_perturbations

    steps = parse_perturbations(list(shift))
    for path in sorted(folder.glob("*/*.png")):
        with Image.open(path) as image:
            shifted = image.convert("RGB")
        for step in steps:
            shifted = step(shifted)
        shifted.save(path)


def pool_cells(pool: Path) -> list[tuple[str, Path]]:
    """(true class, file) of every image of a folder-per-class set, in a fixed order."""
    return [(label, path) for label in NEUTROPHIL_CLASSES for path in sorted((pool / label).glob("*.png"))]


# ---- 2. and 5. training ----------------------------------------------------------------------------------------------

def common_overrides(settings: LoopSettings) -> list[str]:
    return [f"model={settings.model}", f"img_size={settings.size}", f"batch_size={settings.batch_size}",
            f"threads={settings.threads}", "workers=1", "seed=0"]


def train_current(data: Path, run: Path, settings: LoopSettings, commands: list[str]) -> None:
    neunn("train", data, "--out", run, "--preset", settings.preset, *common_overrides(settings),
          f"epochs={settings.weak_epochs}", commands=commands)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return max(1, n_images // batch_size)  # the training loader drops the last partial batch


def train_steps(run: Path) -> int:
    """Optimiser steps the run took (its log's last epoch line)."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return int(lines[-1]["step"])


def control_epochs(n_train: int, n_added: int, settings: LoopSettings) -> int:
    """Epochs on A alone that take at least as many optimiser steps as the fine-tune with the reviewed cells."""
    wanted = settings.tune_epochs * steps_per_epoch(n_train + n_added, settings.batch_size)
    per_epoch = steps_per_epoch(n_train, settings.batch_size)
    return -(-wanted // per_epoch)


def fine_tune(data: Path, current: Path, out: Path, settings: LoopSettings, epochs: int, commands: list[str],
              added: Path | None = None) -> None:
    add = ["--add", added] if added is not None else []
    neunn("train", data, *add, "--split-file", current / "splits.json", "--out", out, "--preset", settings.preset,
          *common_overrides(settings), f"init_from={current}", f"epochs={epochs}", commands=commands)


# ---- 3. review through the HTTP API ----------------------------------------------------------------------------------

def review(run: Path, pool: Path, store_dir: Path, settings: LoopSettings, *, seed: int) -> dict[str, Any]:
    """Open one case per sample of P through the HTTP API, decide every cell as the pathologist who knows the truth,
    sign each case. Returns the cases and one row per cell (the model's call, the truth, the decision)."""
    from fastapi.testclient import TestClient

    from neunn.cases import open_store
    from neunn.cases.users import add_user
    from neunn.inference.predictor import Predictor
    from neunn.serve import create_app

    cells = pool_cells(pool)
    random.Random(seed).shuffle(cells)  # a sample holds cells of every class, in no order
    samples = [cells[k::settings.n_cases] for k in range(settings.n_cases)]
    store = open_store(store_dir)
    with store.transaction() as db:
        add_user(db, REVIEWER, PASSWORD, role="pathologist")
    app = create_app(Predictor.from_run(run), store=store, model_info={"run": run.name})
    rows, cases = [], []
    try:
        with TestClient(app) as client:
            answer = client.post("/api/v1/token", data={"username": REVIEWER, "password": PASSWORD})
            _expect(answer, 200, "log in")
            auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            for k, sample in enumerate(samples, start=1):
                sample_id = f"LOOP-{k:03d}"
                answer = client.post("/api/v1/cases", json={"sample_id": sample_id}, headers=auth)
                _expect(answer, 201, f"open case {sample_id}")
                case_id = answer.json()["id"]
                truth, source, files = {}, {}, []
                for i, (label, path) in enumerate(sample):
                    name = f"{sample_id}_cell{i:03d}.png"  # what a scanner would call it: no class in the name
                    truth[name], source[name] = label, path
                    files.append(("files", (name, path.read_bytes(), "image/png")))
                answer = client.post(f"/api/v1/cases/{case_id}/cells", files=files, headers=auth)
                _expect(answer, 200, f"upload the cells of {sample_id}")
                if answer.json()["n_failed"]:
                    raise RuntimeError(f"{answer.json()['n_failed']} cells of {sample_id} were refused")
                answer = client.get(f"/api/v1/cases/{case_id}", headers=auth)
                _expect(answer, 200, f"read case {sample_id}")
                n_corrected = 0
                for cell in answer.json()["cells"]:
                    label = truth[cell["name"]]
                    decided = client.put(f"/api/v1/cases/{case_id}/cells/{cell['id']}/decision",
                                         json={"label": label, "version": cell["version"]}, headers=auth)
                    _expect(decided, 200, f"decide cell {cell['id']}")
                    n_corrected += label != cell["predicted_label"]
                    rows.append({"sample_id": sample_id, "case_id": case_id, "cell_id": cell["id"],
                                 "name": cell["name"], "source": str(source[cell["name"]]),
                                 "image_sha256": cell["image_sha256"], "model_label": cell["predicted_label"],
                                 "probability": round(cell["probability"], 4), "flagged": cell["flagged"],
                                 "truth": label, "final_label": decided.json()["final_label"],
                                 "decided_by": decided.json()["decided_by"]})
                answer = client.post(f"/api/v1/cases/{case_id}/signature", headers=auth)
                _expect(answer, 200, f"sign case {sample_id}")
                signed = answer.json()
                cases.append({"id": case_id, "sample_id": sample_id, "status": signed["status"],
                              "n_cells": signed["n_cells"], "n_corrected": n_corrected,
                              "signed_by": signed["signed_by"], "signed_at": signed["signed_at"]})
            answer = client.get("/api/v1/cases", params={"status": "signed"}, headers=auth)
            _expect(answer, 200, "read the worklist")
            n_signed = len(answer.json()["cases"])
    finally:
        store.close()
    n_corrected = sum(r["model_label"] != r["truth"] for r in rows)
    pairs: dict[str, int] = {}
    for r in rows:
        if r["model_label"] != r["truth"]:
            key = f"{r['model_label']}->{r['truth']}"
            pairs[key] = pairs.get(key, 0) + 1
    return {"reviewer": REVIEWER, "n_cases": len(cases), "n_signed_in_worklist": n_signed, "n_cells": len(rows),
            "n_corrected": n_corrected, "n_confirmed": len(rows) - n_corrected,
            "model_accuracy_on_reviewed": round(1 - n_corrected / len(rows), 4),
            "n_flagged": sum(r["flagged"] for r in rows),
            "corrections": dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))),
            "cases": cases, "cells": rows}


def _expect(answer, status: int, what: str) -> None:
    if answer.status_code != status:
        raise RuntimeError(f"could not {what}: HTTP {answer.status_code} {answer.text[:300]}")


def write_review_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


# ---- 4. export and its check -----------------------------------------------------------------------------------------

def read_manifest(export: Path) -> list[dict[str, str]]:
    with (export / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def check_export(export: Path, reviewed: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare the exported dataset with the review: the same cells, each in its true class folder, and a manifest
    row per cell naming the reviewer, the model's call and the final call. Raises on any mismatch."""
    manifest = read_manifest(export)
    by_sha = {r["image_sha256"]: r for r in reviewed}
    problems = []
    if len(manifest) != len(reviewed):
        problems.append(f"{len(manifest)} manifest rows for {len(reviewed)} reviewed cells")
    for row in manifest:
        cell = by_sha.get(row["image_sha256"])
        if cell is None:
            problems.append(f"{row['file']} was not reviewed")
            continue
        expected = {"final_label": cell["truth"], "model_label": cell["model_label"], "reviewer": REVIEWER,
                    "signed_by": REVIEWER, "sample_id": cell["sample_id"], "cell_id": str(cell["cell_id"])}
        problems += [f"{row['file']}: {key} {row[key]!r}, expected {value!r}" for key, value in expected.items()
                     if row[key] != value]
        data = (export / row["file"]).read_bytes()
        if row["file"].split("/")[0] != cell["truth"] or hashlib.sha256(data).hexdigest() != row["image_sha256"]:
            problems.append(f"{row['file']}: not the reviewed image in its true class folder")
    files = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()} - {"manifest.csv"}
    if files != {row["file"] for row in manifest}:
        problems.append(f"the export's files differ from its manifest: {sorted(files ^ {r['file'] for r in manifest})}")
    if problems:
        raise RuntimeError("the export does not match the review:\n  " + "\n  ".join(problems[:20]))
    return {"n_rows": len(manifest), "n_files": len(files),
            "n_corrected": sum(r["final_label"] != r["model_label"] for r in manifest),
            "per_class": {c: sum(r["final_label"] == c for r in manifest) for c in NEUTROPHIL_CLASSES},
            "model_runs": sorted({r["model_run"] for r in manifest}), "checked": "ok"}


# ---- 6. evaluation and paired comparison -----------------------------------------------------------------------------

def evaluation_dir(run: Path, which: str) -> Path:
    from neunn.rundir import RunDir

    return RunDir(run).evaluation("test" if which == "original_test" else "all")


def evaluate(run: Path, heldout: Path, commands: list[str]) -> None:
    neunn("evaluate", run, "--split", "test", commands=commands)
    neunn("evaluate", run, "--data", heldout, "--split", "all", commands=commands)


def summarise_metrics(path: Path) -> dict[str, Any]:
    results = MetricResults.from_json(json.loads(path.read_text()))
    overall, ci = results.overall, None if results.intervals is None else results.intervals.overall

    def interval(entry: Interval | None) -> list[float] | None:
        return None if entry is None or entry.low is None else [round(entry.low, 4), round(entry.high, 4)]

    return {"n": results.n, "accuracy": round(overall.accuracy, 4),
            "accuracy_ci95": interval(None if ci is None else ci.accuracy),
            "macro_f1": round(overall.macro.f1, 4), "macro_f1_ci95": interval(None if ci is None else ci.macro.f1),
            "sensitivity": {c: round(v.sensitivity, 3) for c, v in results.per_class.items()}}


def compare_runs(runs: dict[str, Path], which: str) -> dict[str, dict[str, Any]]:
    """next vs control, next vs current, control vs current on the same cells (neunn compare's figures)."""
    from neunn.evaluation.paired import correct_by_cell, paired_difference

    correct = {name: correct_by_cell(evaluation_dir(runs[name], which).predictions) for name in RUNS}
    pairs = {"next_vs_control": ("control", "next"), "next_vs_current": ("current", "next"),
             "control_vs_current": ("current", "control")}
    out = {}
    for key, (first, second) in pairs.items():
        result = paired_difference(correct[first], correct[second])
        result["difference_ci95"] = [result["difference_ci95"]["low"], result["difference_ci95"]["high"]]
        out[key] = result
    return out


def device_name() -> str:
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), no GPU used"


def run_loop(out: Path, settings: LoopSettings, *, seed: int = 0, command: str | None = None) -> dict[str, Any]:
    """The whole loop in ``out`` (which must be new or empty); returns the results written to out/results.json."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: give the loop a new folder")
    out.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    load_before = os.getloadavg()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        seconds[name] = round(now - since, 1)
        return now

    clock = time.perf_counter()
    say("1/6 rendering phantom data A (original), P (new samples, reviewed), Q (held out)")
    data = render_data(out, settings, seed)
    runs = {name: out / "runs" / name for name in RUNS}
    clock = lap("data", clock)

    say("2/6 training the current (weak) model on A")
    train_current(data["A"], runs["current"], settings, commands)
    clock = lap("train_current", clock)

    say("3/6 review at the station (HTTP API, SQLite case store): every cell decided, every case signed")
    store = out / "store"
    reviewed = review(runs["current"], data["P"], store, settings, seed=seed)
    write_review_csv(reviewed["cells"], out / "review.csv")
    say(f"    {reviewed['n_cells']} cells in {reviewed['n_cases']} cases; the model was wrong on "
        f"{reviewed['n_corrected']} ({1 - reviewed['model_accuracy_on_reviewed']:.1%}): corrected")
    clock = lap("review", clock)

    say("4/6 exporting the signed cells")
    export = out / "reviewed"
    printed = neunn("cases", "export", "--reviewed", "--out", export, "--store", store, commands=commands)
    checked = check_export(export, reviewed["cells"])
    clock = lap("export", clock)

    say("5/6 fine-tuning from the current run: with the reviewed cells (next) and without them (control)")
    split = json.loads((runs["current"] / "splits.json").read_text())
    n_train = len(split["splits"]["train"])
    epochs_control = control_epochs(n_train, checked["n_files"], settings)
    fine_tune(data["A"], runs["current"], runs["next"], settings, settings.tune_epochs, commands, added=export)
    fine_tune(data["A"], runs["current"], runs["control"], settings, epochs_control, commands)
    clock = lap("fine_tune", clock)

    say("6/6 evaluating the three runs on A's test split and on the held-out pool Q")
    for name in RUNS:
        evaluate(runs[name], data["Q"], commands)
    lap("evaluate", clock)

    added_record = json.loads((runs["next"] / "run.json").read_text())["added"]
    run_info = {}
    for name in RUNS:
        run_split = json.loads((runs[name] / "splits.json").read_text())
        run_info[name] = {"path": str(runs[name]), "steps": train_steps(runs[name]),
                          "same_test_split_as_current": run_split["splits"]["test"] == split["splits"]["test"]}
    run_info["current"]["epochs"] = settings.weak_epochs
    run_info["next"].update(epochs=settings.tune_epochs, init_from=str(runs["current"]),
                            train_images=n_train + sum(added_record[0]["counts"].values()),
                            added_counts=added_record[0]["counts"],
                            added_dropped_copies_of_val_or_test=added_record[0]["dropped_copies_of_val_or_test"])
    run_info["control"].update(epochs=epochs_control, init_from=str(runs["current"]), train_images=n_train)
    run_info["current"]["train_images"] = n_train

    evaluation = {which: {name: summarise_metrics(evaluation_dir(runs[name], which).metrics)
                          for name in RUNS} for which in EVALS}
    comparisons = {which: compare_runs(runs, which) for which in EVALS}
    results = {
        "benchmark": "review_loop", "synthetic": True,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "device": device_name(), "python": platform.python_version(), "torch": _torch_version(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "settings": asdict(settings), "seeds": {"A": seed, "P": seed + 1, "Q": seed + 2},
        "data": {name: {"path": str(path), "n": len(pool_cells(path))} for name, path in data.items()}
                | {"A_split": {part: len(entries) for part, entries in split["splits"].items()}},
        "review": {k: v for k, v in reviewed.items() if k != "cells"},
        "export": {"path": str(export), "printed": printed.strip(), **checked},
        "runs": run_info, "evaluation": evaluation, "comparisons": comparisons,
        "commands": commands, "seconds": seconds | {"total": round(time.perf_counter() - started, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    return results


def _torch_version() -> str:
    import torch

    return torch.__version__


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _ci(interval: list[float] | None) -> str:
    return "" if not interval else f" [{_pct(interval[0])}, {_pct(interval[1])}]"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def _signed(interval: list[float]) -> str:
    return f"[{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"


def verdict(comparison: dict[str, Any]) -> str:
    low, high = comparison["difference_ci95"]
    if low > 0:
        return "gain: the paired 95 % interval lies above zero"
    if high < 0:
        return "loss: the paired 95 % interval lies below zero"
    return "within noise: the paired 95 % interval includes zero"


def markdown(results: dict[str, Any]) -> str:
    s, r, runs = results["settings"], results["review"], results["runs"]
    lines = [
        "# Review loop on phantom cells (synthetic, not real cells)", "",
        f"{results['date']}; {results['device']}; torch {results['torch']}; load average "
        f"{results['load_average_before_after'][0]} before, {results['load_average_before_after'][1]} after; "
        f"{results['seconds']['total'] / 60:.1f} min in all.", "",
        f"Command: `{results['command']}`", "",
        f"Data: A {results['data']['A']['n']} cells (train/val/test {results['data']['A_split']['train']}/"
        f"{results['data']['A_split']['val']}/{results['data']['A_split']['test']}), P {results['data']['P']['n']} "
        f"reviewed, Q {results['data']['Q']['n']} held out; {s['size']} px, {s['preset']} ({s['model']}), batch "
        f"{s['batch_size']}, {s['threads']} torch thread(s) per training run."
        + (f" P and Q shifted as another lab's samples: {', '.join(s['lab_shift'])}." if s.get("lab_shift") else ""),
        "",
        f"Review: {r['n_cases']} cases, {r['n_cells']} cells, every one decided through the HTTP API and every case "
        f"signed; the current model was wrong on {r['n_corrected']} ({_pct(r['n_corrected'] / r['n_cells'])} %), "
        "which the reviewer reclassified.", "",
        "| run | trained on | epochs (steps) | A test accuracy [95 % CI] | macro-F1 | Q accuracy [95 % CI] "
        "| macro-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    trained_on = {"current": f"A ({runs['current']['train_images']} cells), from scratch",
                  "control": f"A ({runs['control']['train_images']}), from current",
                  "next": f"A + {r['n_cells']} reviewed ({runs['next']['train_images']}), from current"}
    for name in RUNS:
        cells = [name, trained_on[name], f"{runs[name]['epochs']} ({runs[name]['steps']})"]
        for which in EVALS:
            e = results["evaluation"][which][name]
            cells += [f"{_pct(e['accuracy'])}{_ci(e['accuracy_ci95'])}", f"{_pct(e['macro_f1'])}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired differences on the same cells (second minus first; percentage points, paired bootstrap "
                  "95 % interval, exact McNemar p):", "",
              "| comparison | on | difference [95 % CI] | only first right / only second right | McNemar p | reading |",
              "|---|---|---|---|---|---|"]
    for which, label in EVALS.items():
        for key, c in results["comparisons"][which].items():
            lines.append(f"| {key.replace('_vs_', ' vs ')} | {label} (n={c['n']}) | {100 * c['difference']:+.1f} "
                         f"{_signed(c['difference_ci95'])} | {c['only_first_right']} / {c['only_second_right']} | "
                         f"{_p(c['mcnemar_p'])} | {verdict(c)} |")
    lines += ["", "Sensitivity per class on the held-out pool Q (percent):", "",
              "| run | " + " | ".join(NEUTROPHIL_CLASSES) + " |", "|---|" + "---|" * len(NEUTROPHIL_CLASSES)]
    for name in RUNS:
        sensitivity = results["evaluation"]["heldout"][name]["sensitivity"]
        lines.append(f"| {name} | " + " | ".join(_pct(sensitivity[c]) for c in NEUTROPHIL_CLASSES) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the data, runs, store and results")
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks the machinery, measures nothing")
    parser.add_argument("--seed", type=int, default=0, help="phantom seeds: A SEED, P SEED+1, Q SEED+2 (default 0)")
    parser.add_argument("--threads", type=int, help="torch threads per training run (default 1)")
    parser.add_argument("--weak-epochs", type=int, help=f"the current model's epochs on A (default {FULL.weak_epochs})")
    parser.add_argument("--tune-epochs", type=int,
                        help=f"the fine-tune's epochs with the reviewed cells (default {FULL.tune_epochs}); the "
                             "control gets at least as many optimiser steps")
    parser.add_argument("--lab-shift", nargs="+", default=[], metavar="NAME=VALUE",
                        help="perturb the reviewed pool P and the held-out pool Q (not A) as another laboratory's "
                             "samples, e.g. hue=0.06 stain=1.25 scale=0.75 (neunn evaluate --perturb's names)")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    changed = {key: value for key, value in (("threads", args.threads), ("weak_epochs", args.weak_epochs),
                                             ("tune_epochs", args.tune_epochs),
                                             ("lab_shift", tuple(args.lab_shift))) if value}
    settings = LoopSettings(**{**asdict(settings), **changed})
    command = shlex.join([".venv/bin/python", *sys.argv])
    run_loop(args.out, settings, seed=args.seed, command=command)
    print((args.out / "results.md").read_text(), end="")
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
