"""Typed metric results: what ``compute_metrics`` measures and ``bootstrap_intervals`` bounds, with one JSON form each.

    results = compute_metrics(y_true, probs, classes)             # MetricResults
    results.overall.accuracy, results.overall.macro.f1, results.per_class["GBI"].sensitivity
    results = replace(results, intervals=bootstrap_intervals(y_true, probs, classes))
    results.intervals.overall.accuracy.low                        # Interval(low, high, resamples)
    metrics = results.to_json()                                   # the layout of metrics.json, key for key
    results = MetricResults.from_json(json.loads(path.read_text()))

``to_json`` writes exactly the dict that metrics.json has always held, and ``from_json`` reads any metrics.json (with or
without intervals); the file's other sections (rare_class, warnings, selective, policy, ...) belong to their own
modules and are left alone. Field names are the metric keys of :data:`neunn.evaluation.metrics.METRICS`: ``value(key)``
looks one up by that key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")
Record = TypeVar("Record", bound="OneVsRest[Any]")


def _value(record: Any, key: str) -> Any:
    """The field ``key`` of a results record, by metric key; a KeyError names a key it does not have."""
    if key not in {f.name for f in fields(record)}:
        raise KeyError(f"{type(record).__name__} has no metric {key!r}.")
    return getattr(record, key)


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval and the resamples it was computed from (low and high None when undefined)."""

    low: float | None
    high: float | None
    resamples: int

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "resamples": self.resamples}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interval:
        """An interval from its JSON form, or from any figure that carries one (other keys, e.g. value, are ignored)."""
        return cls(data["low"], data["high"], data["resamples"])


@dataclass(frozen=True)
class OneVsRest(Generic[Value]):
    """One value of each one-vs-rest metric of METRICS, in its order: see Averages, ClassMetrics, OneVsRestIntervals."""

    sensitivity: Value
    specificity: Value
    precision: Value
    f1: Value
    jaccard: Value
    roc_auc: Value

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The metric keys, in the order of METRICS and of the JSON form."""
        return tuple(f.name for f in fields(OneVsRest))

    def value(self, key: str) -> Value:
        """The value of the metric ``key`` (e.g. "f1")."""
        return _value(self, key)

    def to_json(self) -> dict[str, Any]:
        return {key: self.value_to_json(self.value(key)) for key in self.keys()}

    @classmethod
    def values_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The six values of a JSON form as keyword arguments (the subclass says how one value is read)."""
        return {key: cls.value_from_json(data[key]) for key in cls.keys()}

    @staticmethod
    def value_to_json(value: Any) -> Any:
        """The JSON form of one value (a number or None as it is here; OneVsRestIntervals writes an Interval's)."""
        return value

    @staticmethod
    def value_from_json(value: Any) -> Any:
        """One value from its JSON form (the inverse of value_to_json)."""
        return value

    @classmethod
    def from_json(cls: type[Record], data: Mapping[str, Any]) -> Record:
        return cls(**cls.values_from_json(data))


@dataclass(frozen=True)
class Averages(OneVsRest[float | None]):
    """The macro (every class alike) or support-weighted average of each one-vs-rest metric; None where undefined."""


@dataclass(frozen=True)
class ClassMetrics(OneVsRest[float | None]):
    """One class's one-vs-rest metrics (ROC AUC None when the class has no positives or no negatives) and its cells."""

    support: int

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "support": self.support}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassMetrics:
        return cls(**cls.values_from_json(data), support=data["support"])


@dataclass(frozen=True)
class OneVsRestIntervals(OneVsRest[Interval]):
    """The bootstrap interval of each one-vs-rest metric: of one class, or of the macro or weighted average."""

    @staticmethod
    def value_to_json(value: Interval) -> dict[str, Any]:
        return value.to_json()

    @staticmethod
    def value_from_json(value: Any) -> Interval:
        return Interval.from_json(value)


@dataclass(frozen=True)
class OverallMetrics:
    """The single-number metrics and the macro and weighted averages of the per-class ones."""

    accuracy: float
    balanced_accuracy: float
    mcc: float
    macro: Averages
    weighted: Averages
    ece: float

    def value(self, key: str) -> float:
        """A single-number metric by its key (accuracy, balanced_accuracy, mcc, ece)."""
        return _value(self, key)

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "mcc": self.mcc,
                "macro": self.macro.to_json(), "weighted": self.weighted.to_json(), "ece": self.ece}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OverallMetrics:
        return cls(accuracy=data["accuracy"], balanced_accuracy=data["balanced_accuracy"], mcc=data["mcc"],
                   macro=Averages.from_json(data["macro"]), weighted=Averages.from_json(data["weighted"]),
                   ece=data["ece"])


@dataclass(frozen=True)
class OverallIntervals:
    """The bootstrap intervals of OverallMetrics, field for field."""

    accuracy: Interval
    mcc: Interval
    balanced_accuracy: Interval
    ece: Interval
    macro: OneVsRestIntervals
    weighted: OneVsRestIntervals

    SINGLE = ("accuracy", "mcc", "balanced_accuracy", "ece")  # the order of METRICS and of the JSON form

    def value(self, key: str) -> Interval:
        """The interval of a single-number metric by its key."""
        return _value(self, key)

    def to_json(self) -> dict[str, Any]:
        return {**{key: self.value(key).to_json() for key in self.SINGLE},
                "macro": self.macro.to_json(), "weighted": self.weighted.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OverallIntervals:
        return cls(**{key: Interval.from_json(data[key]) for key in cls.SINGLE},
                   macro=OneVsRestIntervals.from_json(data["macro"]),
                   weighted=OneVsRestIntervals.from_json(data["weighted"]))


@dataclass(frozen=True)
class MetricIntervals:
    """Bootstrap intervals of every metric of METRICS, laid out as MetricResults, with how they were drawn."""

    level: float
    n_boot: int
    seed: int
    method: str
    fewest_resamples: int  # the fewest resamples any defined interval was computed from
    overall: OverallIntervals
    per_class: dict[str, OneVsRestIntervals]

    def every_interval(self) -> Iterator[Interval]:
        """Every interval, overall and per class."""
        yield from (self.overall.value(key) for key in OverallIntervals.SINGLE)
        for group in (self.overall.macro, self.overall.weighted, *self.per_class.values()):
            yield from (group.value(key) for key in group.keys())

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "n_boot": self.n_boot, "seed": self.seed, "method": self.method,
                "fewest_resamples": self.fewest_resamples, "overall": self.overall.to_json(),
                "per_class": {name: c.to_json() for name, c in self.per_class.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricIntervals:
        return cls(level=data["level"], n_boot=data["n_boot"], seed=data["seed"], method=data["method"],
                   fewest_resamples=data["fewest_resamples"], overall=OverallIntervals.from_json(data["overall"]),
                   per_class={name: OneVsRestIntervals.from_json(c) for name, c in data["per_class"].items()})


@dataclass(frozen=True)
class MetricResults:
    """Every metric of one evaluation: overall, per class (in class order), the confusion matrix (rows = true class,
    columns = predicted) and, once bootstrapped, the intervals."""

    classes: tuple[str, ...]
    n: int
    overall: OverallMetrics
    per_class: dict[str, ClassMetrics]
    confusion_matrix: tuple[tuple[int, ...], ...]
    intervals: MetricIntervals | None = None

    def to_json(self) -> dict[str, Any]:
        """The metrics.json layout: classes, n, overall, per_class, confusion_matrix and, when there are, intervals."""
        data = {"classes": list(self.classes), "n": self.n, "overall": self.overall.to_json(),
                "per_class": {name: c.to_json() for name, c in self.per_class.items()},
                "confusion_matrix": [list(row) for row in self.confusion_matrix]}
        if self.intervals is not None:
            data["intervals"] = self.intervals.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricResults:
        """The metric results of a metrics.json (of any NeuNN version; its other sections are not read)."""
        intervals = data.get("intervals")
        return cls(classes=tuple(data["classes"]), n=data["n"], overall=OverallMetrics.from_json(data["overall"]),
                   per_class={name: ClassMetrics.from_json(c) for name, c in data["per_class"].items()},
                   confusion_matrix=tuple(tuple(row) for row in data["confusion_matrix"]),
                   intervals=MetricIntervals.from_json(intervals) if intervals else None)
