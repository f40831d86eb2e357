"""Tables of a cross-validation: each fold's headline figures beside the pooled ones, with the pooled intervals.

    results = summarise_folds(fold_metrics, pooled, settings={...}, tta=False)   # JSON-ready: OUT/results.json
    text = results_markdown(results)                                              # OUT/results.md

The columns are the metric registry's (:data:`neunn.evaluation.metrics.METRICS`, macro averages for per-class metrics)
and, with a rare class, its ROC AUC, average precision and the sensitivity and specificity at the operating point.
"""

from __future__ import annotations

from typing import Any

from neunn.evaluation.metric_results import Interval, MetricResults
from neunn.evaluation.metrics import METRICS, headline_intervals, headline_rows, interval_text

RARE_COLUMNS = (("rare_roc_auc", "ROC AUC"), ("rare_average_precision", "average precision"),
                ("rare_sensitivity", "sensitivity at threshold"), ("rare_specificity", "specificity at threshold"))


def _rare_figures(metrics: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The rare class's figures (value and interval dicts) by column key; empty without a rare class."""
    rare = metrics.get("rare_class")
    if not rare:
        return {}
    test = (rare["operating_point"] or {}).get("test") or {}
    return {"rare_roc_auc": rare["roc_auc"], "rare_average_precision": rare["average_precision"],
            "rare_sensitivity": test.get("sensitivity"), "rare_specificity": test.get("specificity")}


def headline_figures(metrics: dict[str, Any]) -> dict[str, float | None]:
    """One evaluation's headline figures by column key (macro averages; None where undefined or not measured)."""
    figures = {metric.key: value for metric, value, _ in headline_rows(MetricResults.from_json(metrics))}
    figures.update({key: None if f is None else f["value"] for key, f in _rare_figures(metrics).items()})
    return figures


def _headline_intervals(metrics: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The bootstrap interval of every headline figure (JSON-ready), by column key."""
    intervals = {metric.key: None if macro is None else macro.to_json()
                 for metric, (macro, _) in zip(METRICS, headline_intervals(MetricResults.from_json(metrics)))}
    intervals.update(_rare_figures(metrics))
    return intervals


def _threshold(metrics: dict[str, Any]) -> float | None:
    point = (metrics.get("rare_class") or {}).get("operating_point") or {}
    return point.get("threshold")


def summarise_folds(fold_metrics: list[dict[str, Any]], pooled: dict[str, Any], *, settings: dict[str, Any],
                    tta: bool) -> dict[str, Any]:
    """Per-fold headline figures, the pooled ones with their intervals, and the pooled warnings (JSON-ready)."""
    rare, intervals = pooled.get("rare_class"), MetricResults.from_json(pooled).intervals
    columns = [[metric.key, metric.label] for metric in METRICS]
    if rare:
        columns += [[key, f"{rare['positive']} {label}"] for key, label in RARE_COLUMNS]
    return {
        "settings": settings, "tta": tta, "classes": pooled["classes"], "n_images": pooled["n"],
        "positive": rare["positive"] if rare else None,
        "target_sensitivity": ((rare or {}).get("operating_point") or {}).get("target_sensitivity"),
        "columns": columns,
        "folds": [{"fold": i, "n": m["n"], "threshold": _threshold(m), "figures": headline_figures(m),
                   "warnings": m.get("warnings", [])} for i, m in enumerate(fold_metrics, start=1)],
        "pooled": {"n": pooled["n"], "figures": headline_figures(pooled), "intervals": _headline_intervals(pooled),
                   "level": intervals.level, "n_boot": intervals.n_boot},
        "warnings": pooled.get("warnings", []),
    }


def _cell(value: float | None, interval: dict[str, Any] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} {interval_text(Interval.from_json(interval) if interval else None)}".rstrip()


def results_markdown(results: dict[str, Any]) -> str:
    """The cross-validation's results as a Markdown document."""
    s, pooled = results["settings"], results["pooled"]
    keys = [key for key, _ in results["columns"]]
    with_threshold = results["target_sensitivity"] is not None
    head = ["fold", "images", *(label for _, label in results["columns"])] + ["threshold"] * with_threshold
    lines = [f"# {s['folds']}-fold cross-validation", "",
             f"Data `{s['data_dir']}`: {results['n_images']} images tested, each once, by the fold that did not "
             f"train on it (fold seed {s['seed']}, preset {s['preset'] or 'default'}, overrides "
             f"{' '.join(s['overrides']) or 'none'}{', TTA' if results['tta'] else ''}). Figures in %, macro averages "
             f"for per-class metrics. Pooled brackets: {100 * pooled['level']:.0f} % bootstrap interval over "
             f"{pooled['n_boot']} resamples of the pooled cells (not of folds or training runs).", ""]
    if with_threshold:
        lines += [f"Operating point: each fold's threshold is the highest giving sensitivity >= "
                  f"{100 * results['target_sensitivity']:g} % on its own validation split, applied to its own "
                  "test cells.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fold in results["folds"]:
        threshold = [("n/a" if fold["threshold"] is None else f"{fold['threshold']:.3f}")] * with_threshold
        cells = [str(fold["fold"]), str(fold["n"]), *(_cell(fold["figures"][k]) for k in keys), *threshold]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["pooled", str(pooled["n"]), *(_cell(pooled["figures"][k], pooled["intervals"][k]) for k in keys)]
    lines.append("| " + " | ".join(cells + [""] * with_threshold) + " |")
    if results["warnings"]:
        lines += ["", "Warnings (pooled):", *(f"- {w}" for w in results["warnings"])]
    lines += ["", "Pooled predictions, metrics and report: `pooled/predictions.csv`, `pooled/metrics.json`, "
              "`pooled/report.html`; each fold is a normal run folder (`fold-1/`, ...)."]
    return "\n".join(lines) + "\n"
