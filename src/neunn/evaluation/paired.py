"""Two runs scored on the same cells: the accuracy difference with a paired bootstrap interval, and McNemar's test.

    a = correct_by_cell(RunDir("runs/current").eval_dir("test") / "predictions.csv")
    b = correct_by_cell(RunDir("runs/next").eval_dir("test") / "predictions.csv")
    paired_difference(a, b)   # {"n", "difference", "difference_ci95": {...}, "only_first_right", ..., "mcnemar_p"}

Two runs' intervals overlapping says little when both were scored on the same cells: the paired difference resamples
the cells once for both runs, so what the cells share cancels. The exact McNemar test looks only at the cells one run
gets right and the other wrong (a two-sided binomial test on those).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from neunn.errors import NeunnError
from neunn.evaluation.intervals import N_BOOT, bootstrap, percentile_interval
from neunn.evaluation.metrics import read_predictions_csv


def correct_by_cell(predictions_csv: Path) -> dict[str, bool]:
    """Whether the run's top class was right, for each cell (by path) of an evaluation's predictions.csv."""
    paths, _, labels, probs = read_predictions_csv(Path(predictions_csv))
    return dict(zip(paths, (probs.argmax(1) == labels).tolist(), strict=True))


def paired_difference(first: dict[str, bool], second: dict[str, bool], *, n_boot: int = N_BOOT,
                      seed: int = 0) -> dict[str, Any]:
    """Second minus first on the same cells: accuracy difference, its 95 % paired bootstrap interval, McNemar's p."""
    if first.keys() != second.keys():
        raise NeunnError("The two evaluations do not score the same cells; evaluate both runs on the same split.")
    cells = sorted(first)
    x = np.array([first[c] for c in cells], dtype=np.float64)
    y = np.array([second[c] for c in cells], dtype=np.float64)
    diff = y - x
    samples = bootstrap(lambda counts: {"d": (counts @ diff / len(cells), np.ones(len(counts), dtype=bool))},
                        len(cells), n_boot=n_boot, seed=seed)
    only_first, only_second = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    p = binomtest(only_first, only_first + only_second, 0.5).pvalue if only_first + only_second else 1.0
    return {"n": len(cells), "first_accuracy": float(x.mean()), "second_accuracy": float(y.mean()),
            "difference": float(diff.mean()), "difference_ci95": percentile_interval(*samples["d"]),
            "only_first_right": only_first, "only_second_right": only_second, "mcnemar_p": float(p)}
