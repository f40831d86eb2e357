"""Tables and a plot for the rare-class experiment: mean ± sd per arm over seeds, paired differences, GAN quality.

    results = summarise_experiment(rows, settings=..., class_name="GBI", keep=100, n_synthetic=400, split=split,
                                   gan_quality={0: {...}})
    write_experiment_report(out, results)   # results.json, results.md, results.png
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from neunn.atomic import write_atomic, write_text_atomic
from neunn.data.split import DatasetSplit
from neunn.evaluation.report import figure_to_png

ARM_LABELS = {"a": "(a) no augmentation", "b": "(b) oversampling", "c": "(c) GAN images"}
METRIC_LABELS = {"class_sensitivity": "{c} recall", "class_precision": "{c} precision", "class_f1": "{c} F1",
                 "accuracy": "Accuracy", "macro_f1": "Macro-F1", "balanced_accuracy": "Balanced acc.", "mcc": "MCC"}
PLOTTED = ("class_sensitivity", "class_precision", "class_f1", "macro_f1")
PAIRED = ("class_f1", "class_sensitivity", "class_precision", "macro_f1")


def mean_sd(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for a single value) of a list, with the values themselves."""
    return {"mean": float(np.mean(values)), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": list(values), "n": len(values)}


def summarise_experiment(rows: list[dict[str, Any]], *, settings: dict[str, Any], class_name: str, keep: int,
                         n_synthetic: int, split: DatasetSplit, gan_quality: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-arm mean ± sd of every metric, and paired (same-seed) differences of arm c against a and b."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    summary = {arm: {m: mean_sd([r[m] for r in rows if r["arm"] == arm]) for m in METRIC_LABELS} for arm in arms}
    paired = {}
    for other in ("a", "b"):
        if "c" in arms and other in arms:
            by_seed = {(r["arm"], r["seed"]): r for r in rows}
            seeds = [s for a, s in by_seed if a == "c" and (other, s) in by_seed]
            paired[f"c-{other}"] = {m: mean_sd([by_seed["c", s][m] - by_seed[other, s][m] for s in seeds])
                                    for m in PAIRED}
    counts = split.counts()
    return {"class": class_name, "keep": keep, "n_synthetic": n_synthetic, "settings": settings,
            "train_counts": counts["train"], "test_counts": counts["test"], "rows": rows, "summary": summary,
            "paired_differences": paired, "gan_quality": {str(k): v for k, v in gan_quality.items()}}


def _cell(stat: dict[str, Any]) -> str:
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}"


def gan_quality_table(gan_quality: dict[str, dict[str, Any]], key: str) -> list[str]:
    """Markdown rows of GAN sample quality, one per seed or fold (``key`` names the first column)."""
    lines = [f"| {key} | Agreement | Held-out real agreement | FID | KID | Precision | Recall | Near-copies (pixel / "
             "feature) |", "|---|---|---|---|---|---|---|---|"]
    for name, q in gan_quality.items():
        held = "—" if q.get("heldout_agreement") is None else f"{q['heldout_agreement']:.3f}"
        lines.append(f"| {name} | {q['agreement']:.3f} | {held} | {q['fid']:.2f} | {q['kid']:.4f} | "
                     f"{q['precision']:.3f} | {q['recall']:.3f} | {q['near_copies_pixel']} / "
                     f"{q['near_copies_feature']} of {q['n_synthetic']} |")
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    """The experiment's results as a Markdown document."""
    c = results["class"]
    metrics = list(METRIC_LABELS)
    header = ["Arm", f"{c} training images"] + [METRIC_LABELS[m].format(c=c) for m in metrics]
    test = (f"Test set: {results['test_counts'][c]} {c} images of {sum(results['test_counts'].values())}; "
            f"seeds {results['settings']['seeds']}; mean ± sd over seeds.")
    lines = [f"# Rare-class experiment: {c} cut to {results['keep']} training images", "", test, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, stats in results["summary"].items():
        images = f"{results['keep']} real" + (f" + {results['n_synthetic']} synthetic" if arm == "c" else "")
        images += " (oversampled)" if arm == "b" else ""
        lines.append("| " + " | ".join([ARM_LABELS[arm], images] + [_cell(stats[m]) for m in metrics]) + " |")
    if results["paired_differences"]:
        paired = PAIRED
        lines += ["", "Paired differences (same seed, same split):", "",
                  "| Difference | " + " | ".join(METRIC_LABELS[m].format(c=c) for m in paired) + " |",
                  "|---|---|---|---|---|"]
        for name, stats in results["paired_differences"].items():
            lines.append(f"| {name} | " + " | ".join(f"{stats[m]['mean']:+.3f} ± {stats[m]['sd']:.3f}"
                                                     for m in paired) + " |")
    if results["gan_quality"]:
        lines += ["", "GAN samples, scored with the arm (a) classifier of the same seed (classifier features):", "",
                  *gan_quality_table(results["gan_quality"], "Seed")]
    lines += ["", "Per run:", "", "| Arm | Seed | " + " | ".join(METRIC_LABELS[m].format(c=c) for m in metrics) + " |",
              "|" + "---|" * (len(metrics) + 2)]
    for r in results["rows"]:
        lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(f"{r[m]:.3f}" for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def results_figure(results: dict[str, Any]) -> Figure:
    """Grouped bars (mean ± sd) per arm for the class's recall, precision, F1 and the macro-F1, with per-seed dots."""
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot()
    arms = list(results["summary"])
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        xs = np.arange(len(PLOTTED)) + (i - (len(arms) - 1) / 2) * width
        stats = [results["summary"][arm][m] for m in PLOTTED]
        ax.bar(xs, [s["mean"] for s in stats], width, yerr=[s["sd"] for s in stats], capsize=3, label=ARM_LABELS[arm])
        for x, s in zip(xs, stats):
            ax.scatter([x] * s["n"], s["values"], color="k", s=6, zorder=3)
    ax.set_xticks(np.arange(len(PLOTTED)), [METRIC_LABELS[m].format(c=results["class"]) for m in PLOTTED])
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{results['class']} cut to {results['keep']} training images (mean ± sd over seeds)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def write_experiment_report(out: Path, results: dict[str, Any]) -> None:
    """Write results.json, results.md and results.png into ``out``."""
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_text_atomic(out / "results.md", results_markdown(results))
    png = figure_to_png(results_figure(results))
    write_atomic(out / "results.png", lambda tmp: tmp.write_bytes(png))
