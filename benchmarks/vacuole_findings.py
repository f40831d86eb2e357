"""The vacuole finder on real cells: located pale spots and a small linear model, against the pallor alone, on the
folds of a cross-validation, on another cell type, and in time per cell.

    PYTHONPATH=src python benchmarks/vacuole_findings.py ../shared/data/neutro-vac-dev --positive vacuolated \
        --monocytes ../shared/data/pbc-dev --attributes ../shared/data/pbc-dev-attributes.csv \
        --json results/vacuole_findings.json

* Folds: `neunn experiment cv`'s own (stratified, seed 0, 5 folds), so the figures pair with a CNN recipe's. In each
  fold the model is fitted on the fold's training and validation cells only, its threshold for the target sensitivity
  chosen on their out-of-fold scores (an inner 5-fold split), and both applied to the fold's test cells. Nothing else
  is tuned on the folds. The pooled out-of-fold scores give ROC AUC and average precision with 95 % bootstrap
  intervals, and the paired difference against the pallor on the same cells.
* Another cell type: the model fitted on every cell of DATA scores pbc-dev's monocytes, vacuolated or not by WBCAtt's
  `cytoplasm_vacuole` attribute.
* The top-scored cells labelled normal are listed: some hold vacuoles the annotator missed (the labels' own noise).
* Time: the finder's measurement per cell (regions, spots, features), on one thread, after decoding.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from neunn.data.cytoplasm_findings import FEATURES, measure_vacuoles
from neunn.data.image_io import load_rgb
from neunn.data.scan import scan_dataset
from neunn.data.split import stratified_folds
from neunn.evaluation.paired import paired_ranking_difference
from neunn.evaluation.rare_class import choose_threshold, figure_text, operating_point, rare_class_report
from neunn.training.finding_fit import feature_rows, fit_finding_model, out_of_fold_scores

PALLOR = FEATURES.index("pallor")


def _measure(paths: list[Path], workers: int) -> list[dict[str, float]]:
    def one(path: Path) -> dict[str, float]:
        return measure_vacuoles(np.asarray(load_rgb(path).image))[0]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, paths))


def _ranking(scores: np.ndarray, is_positive: np.ndarray) -> dict:
    probs = np.stack([1 - scores, scores], axis=1)
    report = rare_class_report(is_positive.astype(int), probs, ["rest", "positive"], "positive")
    return {k: report[k] for k in ("n", "n_positive", "prevalence", "roc_auc", "average_precision")}


def cross_validate(rows: np.ndarray, is_positive: np.ndarray, folds, index: dict[str, int], target: float) -> dict:
    """Pooled out-of-fold scores of the finder and the pallor, with each fold's threshold applied to its test cells."""
    scores, pallor = np.full(len(rows), np.nan), rows[:, PALLOR].copy()
    threshold, pallor_threshold = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for split in folds:
        train = np.array([index[e.path] for name in ("train", "val") for e in split.splits[name]])
        test = np.array([index[e.path] for e in split.splits["test"]])
        model = fit_finding_model(rows[train], is_positive[train])
        scores[test] = model.scores(rows[test])
        inner = out_of_fold_scores(rows[train], is_positive[train])
        threshold[test] = choose_threshold(inner, is_positive[train], target)["threshold"]
        pallor_threshold[test] = choose_threshold(pallor[train], is_positive[train], target)["threshold"]
    assert not np.isnan(scores).any()  # every cell tested exactly once
    return {"finder": {**_ranking(scores, is_positive), "operating_point": operating_point(scores, is_positive,
                                                                                           threshold)},
            "pallor": {**_ranking(pallor, is_positive), "operating_point": operating_point(pallor, is_positive,
                                                                                           pallor_threshold)},
            "finder_minus_pallor": paired_ranking_difference(is_positive, pallor, scores),
            "scores": scores}


def monocytes(data: Path, attributes: Path, model, workers: int) -> dict:
    with attributes.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"].startswith("monocyte/")]
    paths = [data / r["path"] for r in rows]
    is_positive = np.array([r["cytoplasm_vacuole"] == "yes" for r in rows])
    features = feature_rows(_measure(paths, workers))
    return {"finder": _ranking(model.scores(features), is_positive),
            "pallor": _ranking(features[:, PALLOR], is_positive)}


def time_per_cell(paths: list[Path], n: int) -> dict:
    images = [np.asarray(load_rgb(p).image) for p in paths[:n]]
    start = time.perf_counter()
    for rgb in images:
        measure_vacuoles(rgb)
    seconds = (time.perf_counter() - start) / len(images)
    return {"cells": len(images), "ms_per_cell": 1000 * seconds, "threads": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--positive", default="vacuolated")
    parser.add_argument("--target-sensitivity", type=float, default=0.9)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--monocytes", type=Path, help="pbc-dev, whose monocytes are scored by the model fitted on DATA")
    parser.add_argument("--attributes", type=Path, help="WBCAtt's attributes table of --monocytes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-cells", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    scan = scan_dataset(args.data)
    images = sorted(scan.images, key=lambda r: r.path)
    index = {r.path: i for i, r in enumerate(images)}
    is_positive = np.array([r.label == args.positive for r in images])
    rows = feature_rows(_measure([args.data / r.path for r in images], args.workers))
    folds = stratified_folds(scan.images, args.folds, seed=0)
    result = cross_validate(rows, is_positive, folds, index, args.target_sensitivity)
    scores = result.pop("scores")
    result["out_of_fold"] = {"paths": [r.path for r in images], "finder": [float(v) for v in scores],
                             "pallor": [float(v) for v in rows[:, PALLOR]], "is_positive": is_positive.tolist()}
    normal = [i for i in np.argsort(-scores) if not is_positive[i]][:12]
    result["top_scored_normal"] = [{"path": images[i].path, "score": float(scores[i])} for i in normal]
    model = fit_finding_model(rows, is_positive)
    result["model_on_all"] = {"features": model.features, "coef": model.coef, "intercept": model.intercept}
    if args.monocytes and args.attributes:
        result["monocytes"] = monocytes(args.monocytes, args.attributes, model, args.workers)
    result["time"] = time_per_cell([args.data / r.path for r in images], args.time_cells)
    result["run"] = {"command": " ".join(["python", *sys.argv]), "date": datetime.now(timezone.utc).isoformat(),
                     "device": f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
                     "n": len(images), "n_positive": int(is_positive.sum()), "folds": args.folds,
                     "target_sensitivity": args.target_sensitivity}

    for arm in ("pallor", "finder"):
        r = result[arm]
        op = r["operating_point"]
        print(f"{arm:7} ROC AUC {figure_text(r['roc_auc'])}  AP {figure_text(r['average_precision'])}  "
              f"sens {figure_text(op['sensitivity'])}  spec {figure_text(op['specificity'])}")
    d = result["finder_minus_pallor"]
    for name in ("roc_auc", "average_precision"):
        ci = d[name]["difference_ci95"]
        print(f"finder − pallor {name}: {100 * d[name]['difference']:+.1f} [{100 * ci['low']:+.1f}, "
              f"{100 * ci['high']:+.1f}]")
    if "monocytes" in result:
        for arm in ("pallor", "finder"):
            r = result["monocytes"][arm]
            print(f"monocytes {arm:7} ROC AUC {figure_text(r['roc_auc'])}  AP {figure_text(r['average_precision'])} "
                  f"({r['n_positive']} of {r['n']})")
    print(f"time: {result['time']['ms_per_cell']:.1f} ms per cell on one thread")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
