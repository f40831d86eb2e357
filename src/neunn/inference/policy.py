"""The decision policy: when a cell goes to review and which classes raise a critical alert.

    policy = DecisionPolicy.of_model(meta)                               # the default the model was trained with
    policy = policy.overridden(review_threshold=0.7, critical="GBI,BAC", classes=meta["classes"])   # a lab's own
    policy.needs_review(0.55), policy.is_critical("GBI"), policy.as_dict()

A policy is a decision of the laboratory, not of training: the checkpoint carries a default (the training config's
``review_threshold`` and ``critical_classes``), and ``neunn predict``, ``evaluate`` and ``serve`` take
``--review-threshold`` and ``--critical`` to change it without retraining. Every output a policy shaped records it
(``as_dict``). Critical classes are any of the model's classes (e.g. ``vacuolated`` for a vacuole model), not only the
paper's GBI and BAC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from neunn.errors import NeunnError

DEFAULT_REVIEW_THRESHOLD = 0.6  # calibrated confidence under this sends a cell to "Unidentified — review"
DEFAULT_CRITICAL_CLASSES = ("GBI", "BAC")  # the paper's critical findings: green–blue inclusions, bacteria


def check_review_threshold(value: float) -> float:
    """``value`` as a float in [0, 1], or a one-sentence error."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise NeunnError(f"The review threshold must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise NeunnError(f"The review threshold must be in [0, 1], got {value}.")
    return value


def parse_critical(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"GBI,BAC"`` (or a list) as class names; ``none`` or an empty string means no critical class."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names if n.strip()]
    return () if [n.lower() for n in names] == ["none"] else tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class DecisionPolicy:
    """Review threshold and critical classes in force for one model."""

    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    critical_classes: tuple[str, ...] = ()  # only classes the model has
    source: str = "model"  # "model": the checkpoint's default; "override": set where the model is used

    @classmethod
    def of_model(cls, meta: dict[str, Any]) -> DecisionPolicy:
        """The default policy a checkpoint carries (runs older than the policy carry it in their training config)."""
        config = meta.get("config", {})
        threshold = check_review_threshold(config.get("review_threshold", DEFAULT_REVIEW_THRESHOLD))
        critical = parse_critical(config.get("critical_classes", DEFAULT_CRITICAL_CLASSES))
        classes = set(meta["classes"])
        return cls(threshold, tuple(c for c in critical if c in classes))

    def overridden(self, *, review_threshold: float | None = None, critical: str | Iterable[str] | None = None,
                   classes: Sequence[str]) -> DecisionPolicy:
        """This policy with a lab's own threshold and/or critical classes (which must be classes of the model)."""
        if review_threshold is None and critical is None:
            return self
        threshold = self.review_threshold if review_threshold is None else check_review_threshold(review_threshold)
        names = self.critical_classes if critical is None else parse_critical(critical)
        unknown = [c for c in names if c not in classes]
        if unknown:
            raise NeunnError(f"Critical class '{unknown[0]}' is not a class of this model; its classes are "
                             f"{', '.join(classes)}.")
        return DecisionPolicy(threshold, tuple(names), "override")

    def needs_review(self, confidence: float) -> bool:
        """Whether a cell of this calibrated confidence goes to "Unidentified — review"."""
        return confidence < self.review_threshold

    def is_critical(self, label: str | None) -> bool:
        return label in self.critical_classes

    def as_dict(self) -> dict[str, Any]:
        return {"review_threshold": self.review_threshold, "critical_classes": list(self.critical_classes),
                "source": self.source}
