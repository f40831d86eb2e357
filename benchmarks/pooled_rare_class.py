"""Pool the test predictions of a cross-validation's folds for one evaluation variant and score a rare class.

    python benchmarks/pooled_rare_class.py /tmp/vac/recipe --variant test --positive vacuolated   # without TTA
    python benchmarks/pooled_rare_class.py /tmp/vac/recipe --variant test-tta --positive vacuolated
    python benchmarks/pooled_rare_class.py /tmp/vac/recipe --variant test-last-tta --positive vacuolated \
        --write /tmp/recipe-last.csv      # then: neunn compare /tmp/vac/recipe /tmp/recipe-last.csv --positive vacuolated

For variants that `neunn experiment cv` did not pool itself (e.g. each fold re-evaluated with `neunn evaluate
EXP/fold-N` without --tta): ROC AUC and average precision of the pooled cells, each with a 95 % percentile bootstrap
interval (1000 resamples, seed 0), computed with NeuNN's own functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neunn.evaluation.metrics import read_predictions_csv, roc_auc_one_vs_rest
from neunn.evaluation.rare_class import average_precision
from neunn.rundir import EvalDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--variant", default="test", help="the folds' eval/<variant> folder (test, test-tta, ...)")
    parser.add_argument("--positive", required=True)
    parser.add_argument("--write", type=Path, metavar="CSV", help="also write the pooled rows (the folds' predictions.csv "
                                                                  "rows, one header) for `neunn compare`")
    args = parser.parse_args()
    labels, scores, lines = [], [], []
    for fold in sorted(args.experiment.glob("fold-*")):
        path = EvalDir(fold / "eval" / args.variant).predictions
        rows = path.read_text().splitlines()
        lines += rows if not lines else rows[1:]
        _, classes, y, probs = read_predictions_csv(path)
        k = classes.index(args.positive)
        labels.append(y == k)
        scores.append(probs[:, k])
    positive, score = np.concatenate(labels), np.concatenate(scores)
    if args.write:
        args.write.write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(score), len(score)) for _ in range(1000)]
    draws = [d for d in draws if positive[d].any() and not positive[d].all()]
    for name, fn in (("ROC AUC", roc_auc_one_vs_rest), ("average precision", average_precision)):
        low, high = np.percentile([fn(score[d], positive[d]) for d in draws], [2.5, 97.5])
        print(f"{name}: {100 * fn(score, positive):.1f} [{100 * low:.1f}, {100 * high:.1f}] "
              f"({len(score)} cells, {int(positive.sum())} {args.positive}, {len(draws)} resamples)")


if __name__ == "__main__":
    main()
