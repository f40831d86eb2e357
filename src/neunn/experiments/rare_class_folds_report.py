"""The table of a rare-class experiment on folds: each arm's pooled figures with intervals, paired differences against
arm (a), and the GAN's sample quality per fold.

    text = results_markdown(results)   # OUT/results.md of `neunn experiment rare-class --folds K`
"""

from __future__ import annotations

from typing import Any

from neunn.evaluation.metric_results import Interval
from neunn.evaluation.metrics import interval_text
from neunn.experiments.rare_class_report import gan_quality_table

COLUMNS = (("rare_roc_auc", "ROC AUC"), ("rare_average_precision", "average precision"),
           ("rare_sensitivity", "sensitivity at threshold"), ("rare_specificity", "specificity at threshold"),
           ("accuracy", "accuracy"))


def _figure(figure: dict[str, Any] | None) -> str:
    if not figure or figure["value"] is None:
        return "n/a"
    interval = Interval.from_json(figure["interval"]) if figure["interval"] else None
    return f"{100 * figure['value']:.1f} {interval_text(interval)}".rstrip()


def _difference(d: dict[str, Any]) -> str:
    ci = d["difference_ci95"]
    low, high = ("n/a" if ci["low"] is None else f"{100 * ci['low']:+.1f}",
                 "n/a" if ci["high"] is None else f"{100 * ci['high']:+.1f}")
    return f"{100 * d['difference']:+.1f} [{low}, {high}]"


def results_markdown(results: dict[str, Any]) -> str:
    """The experiment's results as a Markdown document."""
    s, c = results["settings"], results["class"]
    lines = [f"# Rare-class experiment on {s['folds']} folds: {c}", "",
             f"Data `{s['data_dir']}`; every arm trains on the same folds (fold seed {s['seed']}) and every image is "
             f"tested once per arm. Preset {s['preset'] or 'default'}, overrides {' '.join(s['overrides']) or 'none'}"
             f"{', TTA' if s['tta'] else ''}. Figures in %, pooled over the folds' test cells; brackets: 95 % "
             "bootstrap intervals over those cells (not over training runs).", ""]
    head = ["arm", *(f"{c} {label}" if key.startswith("rare_") else label for key, label in COLUMNS),
            f"{c} ROC AUC per fold"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["rows"]:
        folds = ", ".join("n/a" if v is None else f"{100 * v:.1f}" for v in row["fold_roc_auc"])
        cells = [f"({row['arm']}) {row['description']}", *(_figure(row["figures"].get(k)) for k, _ in COLUMNS), folds]
        lines.append("| " + " | ".join(cells) + " |")
    if results["paired_differences"]:
        lines += ["", "Paired differences on the same cells (95 % paired bootstrap intervals, points):", "",
                  f"| difference | {c} ROC AUC | {c} average precision |", "|---|---|---|"]
        for name, d in results["paired_differences"].items():
            lines.append(f"| {name} | {_difference(d['roc_auc'])} | {_difference(d['average_precision'])} |")
    if results["gan_quality"]:
        lines += ["", "GAN samples of each fold, scored with arm (a)'s classifier of that fold:", "",
                  *gan_quality_table(results["gan_quality"], "Fold")]
    warned = [(row["arm"], w) for row in results["rows"] for w in row["warnings"]]
    if warned:
        lines += ["", "Warnings (pooled):", *(f"- arm ({arm}): {w}" for arm, w in warned)]
    lines += ["", "Each arm is a cross-validation folder: `arms/<arm>/results.md`, `arms/<arm>/pooled/report.html`."]
    return "\n".join(lines) + "\n"
