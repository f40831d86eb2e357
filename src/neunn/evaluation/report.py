"""Self-contained HTML evaluation report: metric tables, confusion matrices, curves and the most confident errors.

Call ``write_report(out_html, metrics=..., predictions=..., image_root=..., training_log=..., title=...)`` after
evaluation, with ``metrics`` the dict of metrics.json (``compute_metrics(...).to_json()`` and its other sections). The
page opens offline: figures are inline PNGs
drawn with matplotlib's Agg renderer, thumbnails inline JPEGs, CSS inline, and the Jinja2 template
(``neunn/evaluation/templates/report.html``) is rendered with autoescaping on.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from neunn import __version__
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.errors import NeunnError
from neunn.evaluation.metric_results import MetricIntervals, MetricResults
from neunn.evaluation.metrics import (
    METRICS,
    PER_CLASS_KEYS,
    headline_intervals,
    headline_rows,
    interval_text,
    roc_curve_points,
)
from neunn.evaluation.rare_class import (
    figure_text,
    operating_point_counts,
    precision_recall_curve,
    threshold_sentence,
)

THUMBNAIL_PX = 96
PAPER_NOTE = (
    "Published figures: Barrera et al., Computers in Biology and Medicine (2024), NeuNN (EfficientNet-B7 trained "
    "from scratch) on the held-out test set of their 5,605 real neutrophil images from peripheral blood smears in "
    "seven classes (NEU, HYP, CRY, DB, HJBLI, GBI, BAC), with the GBI class augmented by GAN-generated images. "
    "Figures measured on other data are not directly comparable. The paper's sensitivity (94.0) differs from its "
    "accuracy (94.3), so it is a macro average (support-weighted sensitivity always equals accuracy): it is shown "
    "beside the macro column."
)


def _percent(value: float | None) -> str:
    """Format a fraction as a percentage with one decimal, or an em dash when undefined."""
    return "\u2014" if value is None else f"{100 * value:.1f}"


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a matplotlib Figure to PNG bytes with the Agg renderer."""
    buffer = io.BytesIO()
    # Figure objects made without pyplot are never registered globally, so nothing needs closing and importing this
    # module does not switch the caller's matplotlib backend (which matplotlib.use("Agg") would do).
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _data_uri(payload: bytes, mime: str) -> str:
    """Return payload as a base64 data URI."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def confusion_matrix_figure(matrix: np.ndarray | list, classes: list[str]) -> Figure:
    """Return a figure with the count confusion matrix and its row-normalised version side by side."""
    counts = np.asarray(matrix, dtype=np.float64)
    row_totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    n = len(classes)
    side = max(4.0, 0.55 * n + 2.0)
    fig = Figure(figsize=(2 * side + 1.0, side))
    font = max(6.0, 11.0 - n / 3)
    for ax, values, title, fmt in ((fig.add_subplot(1, 2, 1), counts, "Counts", "{:.0f}"),
                                   (fig.add_subplot(1, 2, 2), normalised, "Row-normalised (% of true class)",
                                    "{:.0%}")):
        is_fraction = values is normalised
        # Fractions use a fixed 0..1 scale so colours mean the same thing in every report.
        top = 1.0 if is_fraction else max(values.max(), 1.0)
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, format=PercentFormatter(1.0) if is_fraction else None)
        threshold = top / 2
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=font,
                    color="white" if value > threshold else "black")
        ax.set_xticks(range(n), labels=classes, rotation=45, ha="right", fontsize=font + 1)
        ax.set_yticks(range(n), labels=classes, fontsize=font + 1)
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _numeric_series(training_log: list[dict], key: str) -> tuple[list[float], list[float]]:
    """Return (epochs, values) for the log entries where key holds a finite number."""
    xs, ys = [], []
    for position, entry in enumerate(training_log, start=1):
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            epoch = entry.get("epoch", position)
            xs.append(float(epoch) if isinstance(epoch, (int, float)) else float(position))
            ys.append(float(value))
    return xs, ys


def training_curves_figure(training_log: list[dict]) -> Figure | None:
    """Return loss, validation-score and learning-rate panels for the keys present in the log, or None if none are."""
    keys = sorted({k for entry in training_log for k in entry if k != "epoch"})
    panels = [
        ("Loss", [k for k in keys if k.endswith("loss")], False),
        ("Score", [k for k in keys if k.startswith(("train_", "val_")) and not k.endswith("loss")], False),
        ("Learning rate", [k for k in keys if k == "lr"], True),
    ]
    panels = [(title, [k for k in group if _numeric_series(training_log, k)[0]], log)
              for title, group, log in panels]
    panels = [panel for panel in panels if panel[1]]
    if not panels:
        return None
    fig = Figure(figsize=(4.6 * len(panels), 3.6))
    for index, (title, group, log_scale) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), index)
        for key in group:
            xs, ys = _numeric_series(training_log, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        if log_scale and all(y > 0 for k in group for y in _numeric_series(training_log, k)[1]):
            ax.set_yscale("log")
        ax.set_xlabel("Epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def roc_curves_figure(y_true: np.ndarray, probs: np.ndarray, classes: list[str],
                      auc_by_class: dict[str, float | None]) -> Figure | None:
    """Return one-vs-rest ROC curves, one line per class whose AUC is defined, or None if no class has one."""
    drawable = [k for k, name in enumerate(classes) if auc_by_class.get(name) is not None]
    if not drawable:
        return None
    fig = Figure(figsize=(6.0, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{i % 10}" for i in range(len(classes))]
    for k in drawable:
        fpr, tpr = roc_curve_points(probs[:, k], y_true == k)
        ax.plot(fpr, tpr, color=colours[k], linewidth=1.6, label=f"{classes[k]} (AUC {auc_by_class[classes[k]]:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("False positive rate (1 \u2212 specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title("One-vs-rest ROC curves")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def precision_recall_figure(scores: np.ndarray, is_positive: np.ndarray, rare: dict) -> Figure | None:
    """Return the rare class's precision-recall curve with its operating point, or None without positive cells."""
    if not np.any(is_positive):
        return None
    precision, recall, _ = precision_recall_curve(scores, is_positive)
    fig = Figure(figsize=(6.0, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    ap = rare["average_precision"]["value"]
    ax.step(np.r_[0.0, recall], np.r_[1.0, precision], where="pre", color="C0", linewidth=1.6,
            label=f"{rare['positive']} (average precision {ap:.3f})")
    ax.axhline(rare["prevalence"], linestyle="--", color="grey", linewidth=1, label="always positive (prevalence)")
    test = (rare.get("operating_point") or {}).get("test")
    if test and test["precision"]["value"] is not None:
        ax.plot([test["sensitivity"]["value"]], [test["precision"]["value"]], "o", color="C3", markersize=8,
                label="operating point (test)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("Recall (sensitivity)")
    ax.set_ylabel("Precision")
    ax.set_title(f"Precision-recall curve: {rare['positive']} against the rest")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def _thumbnail_uri(image_path: Path) -> str | None:
    """Return a ~96 px JPEG thumbnail of the image as a data URI, or None if it is missing or unreadable."""
    try:
        image = load_rgb(image_path).image  # the one loader: same conversions as the model saw
    except (UnreadableImage, OSError):
        return None
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return _data_uri(buffer.getvalue(), "image/jpeg")


def _confident_errors(predictions: list[dict], classes: list[str], image_root: Path | None,
                      limit: int) -> tuple[list[dict], int]:
    """Return (cards for up to limit misclassified images, most confident first; number of errors in total)."""
    errors = [row for row in predictions if row["true"] != row["pred"]]
    column = {name: k for k, name in enumerate(classes)}
    errors.sort(key=lambda row: -float(row["probs"][column[row["pred"]]]))
    cards = []
    for row in errors:
        if len(cards) >= limit:
            break
        uri = _thumbnail_uri(image_root / row["path"]) if image_root is not None else None
        if image_root is not None and uri is None:
            continue  # missing or unreadable image: the next error takes its place
        cards.append({"uri": uri, "path": str(row["path"]), "true": row["true"], "pred": row["pred"],
                      "probability": _percent(float(row["probs"][column[row["pred"]]]))})
    return cards, len(errors)


def _prediction_arrays(predictions: list[dict], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (true class indices, probability matrix) after checking rows against the metrics' classes."""
    column = {name: k for k, name in enumerate(classes)}
    for row in predictions:
        if row.get("true") not in column or row.get("pred") not in column:
            raise NeunnError(f"Prediction for {row.get('path')!r} names a class that is not one of {classes}.")
        if len(row.get("probs", ())) != len(classes):
            raise NeunnError(f"Prediction for {row.get('path')!r} has {len(row.get('probs', ()))} probabilities, "
                             f"expected {len(classes)}.")
    labels = np.array([column[row["true"]] for row in predictions], dtype=np.int64)
    probs = np.array([row["probs"] for row in predictions], dtype=np.float64).reshape(len(predictions), len(classes))
    return labels, probs


def _overall_rows(results: MetricResults) -> list[dict]:
    """Return the overall table rows as display strings; single-number metrics have no macro/weighted split."""
    return [{"label": metric.title, "single": not metric.per_class, "macro": _percent(macro),
             "macro_ci": interval_text(macro_ci), "weighted": "" if weighted is None else _percent(weighted),
             "weighted_ci": interval_text(weighted_ci), "paper": "" if metric.paper is None else _percent(metric.paper)}
            for (metric, macro, weighted), (macro_ci, weighted_ci) in zip(headline_rows(results),
                                                                          headline_intervals(results))]


def _per_class_rows(results: MetricResults) -> list[dict]:
    """Return one display row per class with its support and one-vs-rest metrics (value, interval) in percent."""
    intervals = {} if results.intervals is None else results.intervals.per_class
    return [{"name": name, "support": values.support,
             "cells": [(_percent(values.value(key)),
                        interval_text(intervals[name].value(key) if name in intervals else None))
                       for key in PER_CLASS_KEYS]}
            for name, values in results.per_class.items()]


def _rare_class_view(metrics: dict, labels: np.ndarray, probs: np.ndarray) -> dict | None:
    """Display strings and the precision-recall curve of the rare-class figures, or None when there are none."""
    rare = metrics.get("rare_class")
    if not rare:
        return None
    k = list(metrics["classes"]).index(rare["positive"])
    curve = precision_recall_figure(probs[:, k], labels == k, rare)
    point = rare["operating_point"]
    test = (point or {}).get("test")  # None: no operating point asked for, or none could be chosen
    rows = [("ROC AUC", figure_text(rare["roc_auc"])), ("Average precision", figure_text(rare["average_precision"])),
            ("Prevalence (average precision of chance)", _percent(rare["prevalence"]))]
    rows += [(f"{key.capitalize()} at the operating point", f"{figure_text(figure)} ({hit} of {total})")
             for key, figure, hit, total in operating_point_counts(test)]
    return {"positive": rare["positive"], "n_positive": rare["n_positive"], "rows": rows,
            "threshold": None if point is None else threshold_sentence(point, rare["positive"]),
            "curve_uri": _data_uri(figure_to_png(curve), "image/png") if curve is not None else None}


def _interval_note(iv: MetricIntervals | None) -> str | None:
    """What the bracketed intervals are, in one or two sentences, or None when there are none."""
    if iv is None:
        return None
    note = (f"Brackets: {100 * iv.level:.0f} % percentile bootstrap interval over {iv.n_boot} resamples of the "
            f"evaluated cells (seed {iv.seed}); it shows how much a figure could move with another sample of such "
            "cells, not with another training run.")
    if iv.fewest_resamples < iv.n_boot:
        note += (f" Resamples where a figure is undefined are skipped; the fewest kept for a figure was "
                 f"{iv.fewest_resamples}.")
    return note


def _load_template() -> jinja2.Template:
    """Load the report template shipped as package data, with autoescaping on."""
    source = resources.files("neunn.evaluation").joinpath("templates", "report.html").read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                     lstrip_blocks=True)
    return environment.from_string(source)


def _out_of_domain_rows(metrics: dict) -> list[tuple[str, str]] | None:
    """The out-of-domain flag's figures (percent) as (label, value) rows, or None when the run has no fitted score."""
    ood = metrics.get("out_of_domain") or {}
    if not ood.get("available"):
        return None
    rows = [("Cells flagged out of domain", ood["share_flagged"]),
            ("Flagged or under the review threshold", ood["share_flagged_or_review"]),
            ("Accuracy on cells with neither flag", ood["accuracy_unflagged"]),
            ("Wrong and unflagged (taken as right without review)", ood["wrong_and_unflagged_share"]),
            ("Wrong and not under review, without the flag", ood["wrong_and_unreviewed_share"])]
    return [(label, _percent(value)) for label, value in rows]


def write_report(out_html: Path, *, metrics: dict, predictions: list[dict], image_root: Path | None,
                 training_log: list[dict] | None, title: str, synthetic_note: str | None = None,
                 max_error_images: int = 24) -> Path:
    """Write the self-contained HTML evaluation report of a metrics.json dict to out_html and return its path."""
    results = MetricResults.from_json(metrics)
    classes = list(results.classes)
    labels, probs = _prediction_arrays(predictions, classes)
    curves = training_curves_figure(training_log) if training_log else None
    auc_by_class = {name: values.roc_auc for name, values in results.per_class.items()}
    roc = roc_curves_figure(labels, probs, classes, auc_by_class) if predictions else None
    error_cards, n_errors = _confident_errors(predictions, classes, Path(image_root) if image_root else None,
                                              max_error_images)
    html = _load_template().render(
        title=title,
        synthetic_note=synthetic_note,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        version=__version__,
        n_images=results.n,
        classes=classes,
        overall_rows=_overall_rows(results),
        paper_note=PAPER_NOTE,
        per_class_columns=[m.label[0].upper() + m.label[1:] for m in METRICS if m.per_class],
        per_class_rows=_per_class_rows(results),
        warnings=metrics.get("warnings", []),
        interval_note=_interval_note(results.intervals),
        rare=_rare_class_view(metrics, labels, probs) if predictions else None,
        ood_rows=_out_of_domain_rows(metrics),
        confusion_uri=_data_uri(figure_to_png(confusion_matrix_figure(results.confusion_matrix, classes)),
                                "image/png"),
        curves_uri=_data_uri(figure_to_png(curves), "image/png") if curves is not None else None,
        roc_uri=_data_uri(figure_to_png(roc), "image/png") if roc is not None else None,
        error_cards=error_cards,
        n_errors=n_errors,
        has_images=image_root is not None,
    )
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    return out_html
