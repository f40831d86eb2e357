"""What the out-of-domain flag buys on an evaluated set: how many cells it flags, and how many wrong calls still pass
unflagged (neither under the review threshold nor out of domain).

    metrics["out_of_domain"] = flag_report(rows, predictor.ood)     # rows: {"true", "pred", "needs_review",
                                                                    #        "out_of_domain"} per cell (evaluate.py)

On cells of the training domain the flag should take few (about 5 % by design) and leave accuracy on the rest high; on
another laboratory's cells it should take most of the wrong ones. ``wrong_and_unflagged_share`` is the share of all
cells that a user would take as right without review while the model is wrong: the figure that matters for safety.
The review-only figures beside it say what the confidence threshold alone achieved. Without a fitted score
(``available`` false) only those are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neunn.inference.out_of_domain import OodScorer


def _share(mask: np.ndarray, of: np.ndarray | None = None) -> float | None:
    """Mean of ``mask`` over the cells where ``of`` holds (all cells by default); None over no cell."""
    selected = mask if of is None else mask[of]
    return float(selected.mean()) if len(selected) else None


def flag_report(rows: Sequence[dict[str, Any]], scorer: OodScorer | None) -> dict[str, Any]:
    """Flag counts and accuracies of evaluated cells (JSON-ready; None where a share has no cell)."""
    correct = np.array([r["pred"] == r["true"] for r in rows], dtype=bool)
    review = np.array([bool(r["needs_review"]) for r in rows], dtype=bool)
    available = scorer is not None and all(r.get("out_of_domain") is not None for r in rows)
    report: dict[str, Any] = {
        "available": available, "n": len(rows), "accuracy": _share(correct),
        "share_review": _share(review),
        "wrong_and_unreviewed_share": _share(~correct & ~review),  # what the confidence threshold alone leaves
    }
    if not available:
        return {**report, "method": None, "threshold": None}
    ood = np.array([bool(r["out_of_domain"]) for r in rows], dtype=bool)
    unflagged = ~ood & ~review
    return {
        **report, "method": scorer.method, "threshold": scorer.threshold,
        "n_flagged": int(ood.sum()), "share_flagged": _share(ood),
        "share_flagged_or_review": _share(~unflagged),
        "accuracy_in_domain": _share(correct, ~ood),  # cells the score did not flag, whatever their confidence
        "accuracy_unflagged": _share(correct, unflagged),
        "wrong_and_unflagged_share": _share(~correct & unflagged),
    }


def ood_columns(row: dict[str, Any]) -> list[str]:
    """The ``out_of_domain`` and ``ood_score`` fields of a predictions.csv row: "yes" or empty, and the score (both
    empty without a fitted score), as ``neunn predict`` writes them."""
    if row.get("out_of_domain") is None:
        return ["", ""]
    return ["yes" if row["out_of_domain"] else "", repr(float(row["ood_score"]))]
