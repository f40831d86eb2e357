"""Fit a run's conformal prediction sets (neunn.inference.screens.conformal) on its validation cells, scored by the
run's own Predictor exactly as in use.

    sets = fit_conformal("runs/b7", alpha=0.05)                          # RUN/conformal.json, one threshold
    sets = fit_conformal("runs/b7", alpha=0.05, class_conditional=True)   # one per class
    sets = fit_conformal("runs/b7", alpha=0.05, data_dir=Path("our_lab"), split="all")   # a lab's own labelled cells

    sets = fit_conformal("runs/b7", alpha=0.05, flag_budget=0.05)   # and the out-of-domain threshold within 5 %

The validation cells chose the best epoch and the temperature, so they are not quite fresh: the guarantee is nearly,
not exactly, split-conformal on them; a laboratory recalibrates on its own labelled cells (``data_dir``), which the
model never saw, and then the guarantee is for cells like those.

**The flag budget.** A cell goes to a person when its set is not one class, when its confidence is under the review
threshold, when another screen sends it to review, or when it is out of domain. With ``flag_budget`` the out-of-domain
threshold is chosen on the same calibration cells after the sets, so that all of these together flag at most that
share of them (the conformal sets and the review bin first: they carry the guarantee; the out-of-domain flag gets
what is left of the budget). When the sets and the review bin alone flag more than the budget, nothing is written and
the error names the smallest α that fits: a weaker model cannot have both the guarantee at α and the budget. Another
flag only takes cells out of those let through, so the share of cells wrong and let through stays at most α; the
budget does lower the out-of-domain flag's share of
in-domain cells, and with it what it catches of another laboratory's cells: `neunn evaluate` reports both
(the flagged share and the wrong-and-unflagged share) on any labelled cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import math
from dataclasses import asdict, dataclass, replace

from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.inference.out_of_domain import save_out_of_domain
from neunn.inference.predictor import Predictor
from neunn.inference.screens.conformal import ConformalSets, conformal_threshold
from neunn.rundir import RunDir

ALPHA_GRID = tuple(round(0.01 * k, 2) for k in range(1, 51))  # where the smallest α meeting a budget is looked for


def _thresholds(scores: np.ndarray, truth: np.ndarray, n_classes: int, alpha: float,
                class_conditional: bool) -> tuple[float, ...]:
    if class_conditional:
        return tuple(conformal_threshold(scores[truth == i], alpha) for i in range(n_classes))
    return (conformal_threshold(scores, alpha),) * n_classes


def _not_single(probs: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """Which cells' sets (1 − p ≤ the class's threshold) do not hold exactly one class."""
    return ((1.0 - probs) <= np.asarray(thresholds)[None, :] + 1e-12).sum(axis=1) != 1


def _budget_threshold(ood_scores: np.ndarray, flagged: np.ndarray, budget: float) -> tuple[float, int]:
    """The out-of-domain threshold over which at most ``budget`` of the cells are flagged with ``flagged``: the
    highest-scoring cells not yet flagged, as many as the budget leaves. Returns it and how many it flags."""
    room = math.floor(budget * len(ood_scores) + 1e-9) - int(flagged.sum())
    free = np.sort(ood_scores[~flagged])[::-1]
    if room <= 0 or not len(free):
        return float(ood_scores.max()), 0
    if room >= len(free):
        return float(np.nextafter(free[-1], -np.inf)), len(free)
    return float(free[room]), int((free > free[room]).sum())  # ties at the threshold stay unflagged


@dataclass(frozen=True)
class BudgetChoice:
    """The out-of-domain threshold chosen within a flag budget, and the shares of the calibration cells flagged."""

    out_of_domain_threshold: float
    share_sets_and_review: float  # the sets not one class, the review bin, other screens sending to review
    share_out_of_domain_only: float  # flagged only by the out-of-domain score
    share_flagged: float

    def as_dict(self, budget: float) -> dict:
        return {"budget": budget, **asdict(self)}


def choose_within_budget(probs: np.ndarray, truth: np.ndarray, ood_scores: np.ndarray, before_ood: np.ndarray, *,
                         alpha: float, class_conditional: bool, budget: float) -> BudgetChoice:
    """The out-of-domain threshold that keeps every flag together within ``budget`` of the calibration cells, after
    the sets at ``alpha`` and the flags in ``before_ood`` (review bin, other screens); NeunnError naming the smallest
    α that fits when those alone take more."""
    n_classes = probs.shape[1]
    scores = 1.0 - probs[np.arange(len(truth)), truth]

    def flagged_at(a: float) -> np.ndarray:
        return before_ood | _not_single(probs, _thresholds(scores, truth, n_classes, a, class_conditional))

    flagged = flagged_at(alpha)
    if flagged.mean() > budget:
        fits = [a for a in ALPHA_GRID if flagged_at(a).mean() <= budget]
        raise NeunnError(
            f"At α = {alpha:g} the sets and the review bin alone flag {flagged.mean():.1%} of the {len(truth)} "
            f"calibration cells, over the flag budget of {budget:.0%}; nothing was written: "
            + (f"α = {fits[0]:g} is the smallest that fits" if fits else "no α up to 0.5 fits")
            + ", or raise the budget.")
    threshold, n_ood = _budget_threshold(ood_scores, flagged, budget)
    n = len(truth)
    return BudgetChoice(threshold, float(flagged.mean()), n_ood / n, (int(flagged.sum()) + n_ood) / n)


def fit_conformal(run_dir: str | Path, *, alpha: float = 0.05, class_conditional: bool = False,
                  data_dir: Path | None = None, flag_budget: float | None = None,
                  device: str = "cpu") -> ConformalSets:
    """Choose the sets' thresholds for level ``alpha`` on the run's validation cells (or every cell of ``data_dir``,
    folder per class with the model's classes); write RUN/conformal.json. With ``flag_budget``, also set the
    out-of-domain threshold so that every flag together takes at most that share of those cells (module docstring)."""
    run = RunDir(Path(run_dir))
    run.require_trained()
    if not 0.0 < alpha < 1.0:
        raise NeunnError(f"α must be between 0 and 1, got {alpha}.")
    if flag_budget is not None and not 0.0 < flag_budget < 1.0:
        raise NeunnError(f"The flag budget is a share between 0 and 1, got {flag_budget}.")
    predictor = Predictor.from_run(run.root, device=device, gate=False)
    classes = predictor.classes
    if data_dir is None:
        root = run.read_info().get("data_dir")
        if not root or not Path(root).is_dir():
            raise NeunnError(f"The sets are fitted on the run's validation images, and its dataset {root} is not "
                             "available; run it where the data is, or give the lab's own labelled cells.")
        entries = [(Path(root) / e.path, e.label) for e in load_split(run.splits).splits["val"]]
        source = "the run's validation split"
    else:
        scan = scan_dataset(Path(data_dir))
        unknown = sorted({r.label for r in scan.images} - set(classes))
        if unknown:
            raise NeunnError(f"{data_dir} has class folders the model does not know ({', '.join(unknown)}); its "
                             f"classes are {', '.join(classes)}.")
        entries = [(Path(data_dir) / r.path, r.label) for r in scan.images]
        source = str(data_dir)
    labels = {str(path): label for path, label in entries}
    if flag_budget is not None and predictor.ood is None:
        raise NeunnError(f"{run.root} has no out-of-domain score to fit within the flag budget; fit one first "
                         "(neunn screen fit out-of-domain RUN).")
    probs, truth, ood_scores, other_review = [], [], [], []
    for p in predictor.predict_files([path for path, _ in entries], workers=1):
        if p.error is None:
            probs.append(p.probs)
            truth.append(classes.index(labels[p.path]))
            ood = p.screens.get("out_of_domain")
            ood_scores.append(ood.value if ood is not None else np.nan)
            other_review.append(any(call.flagged for name, call in p.screens.items()
                                    if name != ConformalSets.name and predictor.screen(name).effect == "review"))
    if not probs:
        raise NeunnError("There is no readable calibration cell to fit the sets on.")
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth)
    scores = 1.0 - probs[np.arange(len(truth)), truth]
    thresholds = _thresholds(scores, truth, len(classes), alpha, class_conditional)
    fitted_on = {"source": source, "n": int(len(scores)),
                 "per_class": {c: int((truth == i).sum()) for i, c in enumerate(classes)}}
    if flag_budget is not None:
        before_ood = (probs.max(axis=1) < predictor.policy.review_threshold) | np.asarray(other_review)
        choice = choose_within_budget(probs, truth, np.asarray(ood_scores, dtype=np.float64), before_ood,
                                      alpha=alpha, class_conditional=class_conditional, budget=flag_budget)
        scorer = replace(predictor.ood, threshold=choice.out_of_domain_threshold,
                         info={**predictor.ood.info, "quantile": None, "flag_budget": flag_budget,
                               "n_threshold": int(len(truth)), "threshold_source": source})
        save_out_of_domain(run, predictor.checkpoint, scorer)
        fitted_on["flag_budget"] = choice.as_dict(flag_budget)
    sets = ConformalSets(alpha, class_conditional, tuple(classes), thresholds, fitted_on)
    sets.write(run)
    return sets
