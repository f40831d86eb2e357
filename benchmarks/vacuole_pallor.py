"""A label-free baseline for vacuoles: the cytoplasm's pallor (neunn.data.cytoplasm_pallor), scored on the same folds as
a cross-validation, beside the CNNs trained on them.

    PYTHONPATH=src python benchmarks/vacuole_pallor.py ../shared/data/neutro-vac-dev --positive vacuolated \
        --folds /tmp/vacab/crop-only/splits --target-sensitivity 0.9 --versus /tmp/vacab/crop-only [--json out.json]
    PYTHONPATH=src python benchmarks/vacuole_pallor.py OTHER_CELLS/ --positive monocyte_vacuolated \
        --only monocyte monocyte_vacuolated          # ranking only, on another cell type

Every image gets its pallor (no training). ROC AUC and average precision of the pooled cells, with 95 % bootstrap
intervals (NeuNN's own rare-class report); the operating point: each fold's threshold for the target sensitivity is
chosen on the fold's own non-test cells (its training and validation splits) and applied to its test cells, as the
cross-validation does for a CNN. With --versus (cross-validation folders, or a rare-class experiment's arms), each
CNN's pooled out-of-fold scores are compared with the pallor on the same cells (paired bootstrap), and so is their
parameter-free combination, the mean of the two ranks, and what a run with a pallor screen (`neunn screen fit pallor`)
would send on: the model's own call, or a cell at or over its fold's pallor threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import rankdata

from neunn.data.cytoplasm_pallor import cytoplasm_pallor
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.evaluation.metrics import read_predictions_csv
from neunn.evaluation.paired import paired_ranking_difference
from neunn.evaluation.rare_class import choose_threshold, figure_text, rare_class_report
from neunn.rundir import pooled_evaluation


def _report(scores: np.ndarray, is_positive: np.ndarray, positive: str, **choice) -> dict:
    probs = np.stack([1 - scores, scores], axis=1)  # a two-class table whose 'positive' column is the score
    return rare_class_report(is_positive.astype(int), probs, ["rest", positive], positive, **choice)


def _difference(d: dict, name: str) -> str:
    ci = d[name]["difference_ci95"]
    return f"{100 * d[name]['difference']:+.1f} [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--positive", required=True)
    parser.add_argument("--folds", type=Path, help="a cross-validation's splits/ folder (for the operating point)")
    parser.add_argument("--only", nargs="+", metavar="CLASS", help="score only these classes of DATA")
    parser.add_argument("--target-sensitivity", type=float, default=0.9)
    parser.add_argument("--versus", type=Path, nargs="*", default=[], help="cross-validation folders to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    scan = scan_dataset(args.data)
    images = [r for r in scan.images if args.only is None or r.label in args.only]
    paths = sorted(r.path for r in images)
    label = {r.path: r.label for r in images}
    pallor = np.array([cytoplasm_pallor(np.asarray(Image.open(args.data / p).convert("RGB"))) for p in paths])
    is_positive = np.array([label[p] == args.positive for p in paths])
    index = {p: i for i, p in enumerate(paths)}

    if args.folds is None:  # ranking only: no threshold to choose
        report = _report(pallor, is_positive, args.positive)
        print(f"cytoplasm pallor, {len(paths)} cells ({int(is_positive.sum())} {args.positive}), no training: "
              f"ROC AUC {figure_text(report['roc_auc'])}, average precision {figure_text(report['average_precision'])}")
        if args.json:
            args.json.write_text(json.dumps({"n": len(paths), "pallor": report}, indent=1))
        return
    thresholds, folds = np.full(len(paths), np.nan), []
    for fold_file in sorted(args.folds.glob("fold-*.json")):
        test = np.array([index[e.path] for e in load_split(fold_file).splits["test"]])
        rest = np.setdiff1d(np.arange(len(paths)), test)
        choice = choose_threshold(pallor[rest], is_positive[rest], args.target_sensitivity)
        thresholds[test] = choice["threshold"]
        folds.append({"fold": fold_file.stem, "threshold": choice["threshold"], "n_test": len(test)})
    if np.isnan(thresholds).any():
        raise SystemExit("The folds do not test every image once; give a cross-validation's splits/ folder.")
    choice = {"target_sensitivity": args.target_sensitivity, "threshold": None,
              "chosen_on": "each fold's non-test cells", "folds": folds, "same_cells": False}
    report = _report(pallor, is_positive, args.positive, choice=choice, thresholds=thresholds)
    point = report["operating_point"]["test"]
    print(f"cytoplasm pallor, {len(paths)} cells ({int(is_positive.sum())} {args.positive}), no training:")
    print(f"  ROC AUC {figure_text(report['roc_auc'])}, average precision {figure_text(report['average_precision'])}")
    print(f"  at each fold's threshold for sensitivity {args.target_sensitivity:g}: sensitivity "
          f"{figure_text(point['sensitivity'])}, specificity {figure_text(point['specificity'])}")
    result = {"n": len(paths), "pallor": report, "versus": {}}

    for folder in args.versus:
        got, classes, labels, probs = read_predictions_csv(pooled_evaluation(folder).predictions)
        if sorted(got) != paths:
            raise SystemExit(f"{folder} did not test exactly the images of {args.data}.")
        cnn = np.zeros(len(paths))
        cnn[[index[p] for p in got]] = probs[:, classes.index(args.positive)]
        combined = (rankdata(cnn) + rankdata(pallor)) / (2 * len(paths))
        cnn_report = _report(cnn, is_positive, args.positive)
        # What a run with a pallor screen does: the model's own call, or a pale cell sent to review.
        called = np.zeros(len(paths), dtype=bool)
        called[[index[p] for p in got]] = probs.argmax(axis=1) == classes.index(args.positive)
        either = called | (pallor >= thresholds)
        screen = {"model_call": {"sensitivity": float(called[is_positive].mean()),
                                 "specificity": float(1 - called[~is_positive].mean())},
                  "call_or_pale": {"sensitivity": float(either[is_positive].mean()),
                                   "specificity": float(1 - either[~is_positive].mean())}}
        versus = paired_ranking_difference(is_positive, cnn, pallor)
        with_both = paired_ranking_difference(is_positive, cnn, combined)
        print(f"{folder}: CNN ROC AUC {figure_text(cnn_report['roc_auc'])}, AP "
              f"{figure_text(cnn_report['average_precision'])}; pallor − CNN: AUC {_difference(versus, 'roc_auc')}, "
              f"AP {_difference(versus, 'average_precision')}; mean rank of both − CNN: AUC "
              f"{_difference(with_both, 'roc_auc')} (AUC {100 * with_both['roc_auc']['second']:.1f}), AP "
              f"{_difference(with_both, 'average_precision')} "
              f"(AP {100 * with_both['average_precision']['second']:.1f})")
        print("  the model's call: sensitivity {sensitivity:.1%}, specificity {specificity:.1%}".format(
            **screen["model_call"]) + "; its call or pale (a pallor screen): sensitivity {sensitivity:.1%}, "
              "specificity {specificity:.1%}".format(**screen["call_or_pale"]))
        result["versus"][str(folder)] = {"cnn": cnn_report, "pallor_minus_cnn": versus,
                                         "mean_rank_minus_cnn": with_both, "screen": screen}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
