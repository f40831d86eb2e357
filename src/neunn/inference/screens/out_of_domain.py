"""The out-of-domain screen: a cell whose score (:mod:`neunn.inference.out_of_domain`) is over the run's threshold is
"outside the model's experience".

Fitted at the end of training, or later by ``neunn screen fit out-of-domain RUN``, and kept beside the checkpoint it
was fitted on (``RunDir.ood_file``); after the checkpoint changes it is stale and not used.
"""

from __future__ import annotations

from typing import Any

from neunn.inference.out_of_domain import OodScorer, load_out_of_domain
from neunn.inference.screens.base import Screen, ScreenBatch, ScreenCall
from neunn.rundir import RunDir


class OutOfDomainScreen(Screen):
    name = "out_of_domain"
    title = "out-of-domain score"
    effect = "out_of_domain"
    value_field = "ood_score"
    value_type = float
    flag_field = None  # its verdict is the cell's out_of_domain itself
    csv_column = "ood_score"
    recorded_apart = True  # a case's model record keeps its threshold in its own field (ood_threshold)

    def __init__(self, scorer: OodScorer) -> None:
        self.scorer = scorer
        self.needs_features = scorer.needs_features

    @classmethod
    def load(cls, run: RunDir, *, checkpoint: str, open_run) -> OutOfDomainScreen | None:
        scorer = load_out_of_domain(run, checkpoint)
        return None if scorer is None else cls(scorer)

    @classmethod
    def files(cls, run: RunDir) -> list:
        return [path for which in ("best", "last") for path in (run.ood_file(which), run.ood_file(which, ".json"))]

    def call(self, batch: ScreenBatch) -> list[ScreenCall]:
        scores = self.scorer.score(batch.logits, batch.features)
        return [ScreenCall(float(s), bool(f)) for s, f in zip(scores, self.scorer.flags(scores))]

    @classmethod
    def csv_value(cls, call: ScreenCall | None) -> str:
        return "" if call is None else f"{call.value:.6g}"

    def describe(self) -> dict[str, Any]:
        return self.scorer.as_dict()
