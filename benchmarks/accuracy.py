"""Accuracy benchmark: NeuNN presets against a textbook from-scratch baseline, on one fixed split, at equal budget.

    python benchmarks/accuracy.py ../shared/data/pbc-dev --out runs/accuracy --presets cpu-small --set epochs=15

For each preset P it trains two arms with P's model, resolution, epochs and learning rate on the same split:
  baseline@P  the textbook recipe: AdamW, cosine, flips only (no rotations, affine, colour jitter, label smoothing,
              stochastic depth, EMA or class balancing);
  P           the NeuNN preset as shipped.
It writes OUT/accuracy.json and OUT/accuracy.md (accuracy, macro-F1, MCC, per-class recall, train time, device). Runs that
already finished are reused, and a killed benchmark resumes the arm it was training.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from neunn.training.config import resolve_config
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split, save_split, stratified_split
from neunn.evaluation.evaluate import evaluate_run
from neunn.evaluation.metric_results import MetricResults
from neunn.rundir import RunDir
from neunn.training.setup import open_training_run
from neunn.training.train import train

TEXTBOOK = ["aug_rot90=false", "aug_affine=0", "aug_color=0", "aug_stain=0", "label_smoothing=0", "drop_path_rate=0",
            "drop_rate=0", "ema_decay=0", "balance=none"]


def _device_name(device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_arm(data: Path, out: Path, name: str, preset: str, overrides: list[str], split_file: Path,
            tta: bool) -> dict:
    """Train (or resume, or reuse) one arm and evaluate it on the test split."""
    run = RunDir(out / name)
    cfg = resolve_config(preset=preset, overrides=overrides)
    log = run.read_log()
    if not (log and log[-1]["epoch"] == cfg.epochs):
        resume = run.checkpoint("last").with_suffix(".safetensors").is_file()
        train(open_training_run(data, run.root, cfg=None if resume else cfg, resume=resume, split_file=split_file))
        log = run.read_log()
    metrics = evaluate_run(run.root, split="test", device=cfg.device if cfg.device != "auto" else "cpu", tta=tta)
    results = MetricResults.from_json(metrics)
    return {
        "arm": name, "preset": preset, "model": cfg.model, "img_size": cfg.img_size, "epochs": cfg.epochs,
        "overrides": overrides, "tta": tta,
        "accuracy": results.overall.accuracy, "macro_f1": results.overall.macro.f1, "mcc": results.overall.mcc,
        "recall": {c: v.sensitivity for c, v in results.per_class.items()},
        "train_seconds": sum(r["epoch_seconds"] for r in log), "n_test": results.n,
    }


def write_table(results: list[dict], out: Path, device: str, command: str) -> None:
    classes = list(results[0]["recall"])
    head = ["arm", "model", "px", "epochs", "accuracy", "macro-F1", "MCC", *[f"recall {c}" for c in classes],
            "train min"]
    lines = [f"Device: {device}. Command: `{command}`", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in results:
        cells = [r["arm"] + (" +TTA" if r["tta"] else ""), r["model"], str(r["img_size"]), str(r["epochs"]),
                 f"{100 * r['accuracy']:.1f}", f"{100 * r['macro_f1']:.1f}", f"{100 * r['mcc']:.1f}",
                 *[f"{100 * r['recall'][c]:.1f}" for c in classes], f"{r['train_seconds'] / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "accuracy.md").write_text("\n".join(lines) + "\n")
    (out / "accuracy.json").write_text(json.dumps({"device": device, "command": command, "results": results},
                                                  indent=1))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--presets", nargs="+", default=["cpu-small"])
    parser.add_argument("--set", nargs="*", default=[], metavar="key=value", help="overrides for every arm")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared split")
    parser.add_argument("--split-file", type=Path, help="use this splits.json of DATA instead of making one")
    parser.add_argument("--tta", action="store_true", help="also evaluate each NeuNN preset with test-time augmentation")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    split_file = args.out / "splits.json"
    if args.split_file is not None:
        given = load_split(args.split_file)
        if split_file.is_file() and load_split(split_file).digest() != given.digest():
            parser.error(f"{args.out} was made with another split; use a new --out.")
        save_split(given, split_file)
    elif not split_file.is_file():
        save_split(stratified_split(scan_dataset(args.data, progress=True).images, seed=args.seed), split_file)
    results = []
    for preset in args.presets:
        arms = [] if args.no_baseline else [(f"baseline@{preset}", [*TEXTBOOK, *args.set], False)]
        arms.append((preset, list(args.set), False))
        if args.tta:
            arms.append((preset, list(args.set), True))
        for name, overrides, tta in arms:
            results.append(run_arm(args.data, args.out, name, preset, overrides, split_file, tta))
    device = resolve_config(overrides=args.set).device
    command = "python benchmarks/accuracy.py " + " ".join(
        [str(args.data), "--out", str(args.out), "--presets", *args.presets] + (["--set", *args.set] if args.set else [])
        + (["--split-file", str(args.split_file)] if args.split_file else ["--seed", str(args.seed)])
        + (["--tta"] if args.tta else []) + (["--no-baseline"] if args.no_baseline else []))
    write_table(results, args.out, _device_name(device), command)


if __name__ == "__main__":
    main()
