"""Two runs scored on the same cells: where they disagree, and whether the difference is more than chance.

    python benchmarks/paired.py RUN_A RUN_B [--tta] [--split test]

Reads each run's RUN/eval/<split>[-tta]/predictions.csv and prints the cells only A gets right, the cells only B gets
right, and the exact McNemar test's two-sided p-value (a binomial test on those discordant cells).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scipy.stats import binomtest

from neunn.evaluation.metrics import read_predictions_csv
from neunn.rundir import RunDir


def correct_by_cell(path: Path) -> dict[str, bool]:
    paths, _, labels, probs = read_predictions_csv(path)
    return dict(zip(paths, (probs.argmax(1) == labels).tolist(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()
    a, b = (correct_by_cell(RunDir(run).eval_dir(args.split, tta=args.tta) / "predictions.csv")
            for run in (args.run_a, args.run_b))
    if a.keys() != b.keys():
        parser.error("the two evaluations do not score the same cells")
    only_a = sum(a[c] and not b[c] for c in a)
    only_b = sum(b[c] and not a[c] for c in a)
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    print(f"{len(a)} cells: only {args.run_a} right on {only_a}, only {args.run_b} right on {only_b}; "
          f"exact McNemar p = {p:.3f}")


if __name__ == "__main__":
    main()
