"""Accuracy of a small ensemble: the calibrated probabilities of several runs' evaluations, averaged cell by cell.

    neunn evaluate RUN_A --tta && neunn evaluate RUN_B --tta
    python benchmarks/ensemble.py RUN_A RUN_B --tta [--split test] [--json OUT.json]

Reads each run's RUN/eval/<split>[-tta]/predictions.csv (the runs must have scored the same images with the same
classes), averages the probabilities and prints the metrics of each member and of the ensemble. It measures what an
ensemble would score; NeuNN's predictor, server and exports serve one model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neunn.errors import NeunnError
from neunn.evaluation.metric_results import MetricResults
from neunn.evaluation.metrics import compute_metrics, read_predictions_csv
from neunn.rundir import RunDir


def ensemble_results(prediction_files: list[Path]) -> tuple[dict[str, MetricResults], MetricResults]:
    """Metrics of each member (by file) and of the averaged probabilities; the files must list the same cells and
    classes."""
    read = [read_predictions_csv(f) for f in prediction_files]
    paths, classes, labels, _ = read[0]
    order = np.argsort(paths)
    probs = []
    for f, (p, c, y, pr) in zip(prediction_files, read, strict=True):
        mine = np.argsort(p)
        if c != classes or sorted(p) != sorted(paths) or not np.array_equal(y[mine], labels[order]):
            raise NeunnError(f"{f} does not score the same cells and classes as {prediction_files[0]}.")
        probs.append(pr[mine])
    members = {str(f): compute_metrics(labels[order], pr, classes)
               for f, pr in zip(prediction_files, probs, strict=True)}
    return members, compute_metrics(labels[order], np.mean(probs, axis=0), classes)


def ensemble_record(members: dict[str, MetricResults], ensemble: MetricResults) -> dict:
    """The JSON record of :func:`ensemble_results`: each member's overall metrics and the ensemble's metrics."""
    return {"members": {f: m.overall.to_json() for f, m in members.items()}, "ensemble": ensemble.to_json()}


def ensemble_metrics(prediction_files: list[Path]) -> dict:
    """:func:`ensemble_record` of the prediction files."""
    return ensemble_record(*ensemble_results(prediction_files))


def _summary(results: MetricResults) -> str:
    overall = results.overall
    return (f"accuracy {100 * overall.accuracy:.1f} %, macro-F1 {100 * overall.macro.f1:.1f} %, "
            f"MCC {100 * overall.mcc:.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tta", action="store_true", help="use each run's evaluation with test-time augmentation")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    files = [RunDir(run).evaluation(args.split, tta=args.tta).predictions for run in args.runs]
    for run, f in zip(args.runs, files, strict=True):
        if not f.is_file():
            parser.error(f"{f} does not exist; run `neunn evaluate {run} --split {args.split}"
                         + (" --tta`" if args.tta else "`") + " first.")
    members, ensemble = ensemble_results(files)
    for f, results in members.items():
        print(f"{f}: {_summary(results)}")
    print(f"ensemble of {len(files)}: {_summary(ensemble)}")
    if args.json:
        args.json.write_text(json.dumps(ensemble_record(members, ensemble), indent=1))


if __name__ == "__main__":
    main()
