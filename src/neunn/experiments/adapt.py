"""Few-shot adaptation to another laboratory: fine-tune a run on K labelled cells per class of that lab's own cells,
refit calibration and the out-of-domain threshold on them, and score the lab's remaining cells.

    result = adapt_run("runs/pbc", "other_lab/", shots=10, out="runs/pbc-other_lab", seed=0)
    result["before"]["accuracy"], result["after"]["accuracy"]     # the source run and the adapted one, same cells
    # neunn adapt runs/pbc other_lab/ --shots 10 --out runs/pbc-other_lab [--seed 0] [key=value ...]

K cells per class are drawn (seeded, per class) from the lab's folder. Of them, one in five (at least one per class) is
held for validation, since an adapted model must be calibrated, and its out-of-domain threshold set, on the lab's own
cells, and those must not be the cells it was fitted on; the others are trained on. Every other cell of the lab is the
test split: scored, never adapted on. The adapted model has the lab's classes (those the run also knows; others are
left out) and starts from all of the run's weights, its head cut to those classes, so K = 0 would be the run itself.
``RUN/adapt.json`` records the draw and both scores.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from neunn.atomic import write_text_atomic
from neunn.checkpoint import read_checkpoint, save_checkpoint
from neunn.data.scan import ImageRecord, report_scan, scan_dataset
from neunn.data.split import SPLIT_NAMES, DatasetSplit, SplitEntry, save_split
from neunn.errors import NeunnError
from neunn.evaluation.evaluate import evaluate_run
from neunn.evaluation.metric_results import MetricResults
from neunn.evaluation.out_of_domain import flag_report
from neunn.inference.predictor import Predictor
from neunn.log import say
from neunn.model import create_classifier
from neunn.rundir import RunDir
from neunn.training.config import load_config, resolve_config
from neunn.training.setup import open_training_run
from neunn.training.train import train

VAL_EVERY = 5  # one drawn cell in five (at least one per class) is held for calibration and the OOD threshold
# Fine-tuning a trained model on a few dozen cells: a third of the source's learning rate, batches of 8 so that 40
# epochs are 80-400 steps (K = 5-20; batches of 32 left the loss high after 40 steps), a short warm-up; the source's
# augmentation is kept, its synthetic and added images are not (other classes, another lab).
ADAPT_DEFAULTS = ["epochs=40", "batch_size=8", "warmup_epochs=1", "balance=none", "synthetic=[]", "added_data=[]"]
LR_FACTOR = 1 / 3
INIT_FOLDER = "init"  # inside the new run: the source weights cut to the lab's classes, removed once trained


def kshot_split(images: list[ImageRecord], classes: list[str], *, shots: int, seed: int) -> DatasetSplit:
    """K cells per class for adaptation (train and val), every other cell of those classes for test."""
    if shots < 2:
        raise NeunnError(f"--shots must be at least 2 (one to train on and one to calibrate on), got {shots}.")
    n_val = max(1, round(shots / VAL_EVERY))
    splits: dict[str, list[SplitEntry]] = {name: [] for name in SPLIT_NAMES}
    for label in classes:
        cells = sorted((r for r in images if r.label == label), key=lambda r: r.path)
        if len(cells) <= shots:
            raise NeunnError(f"Class {label} has {len(cells)} cells, and {shots} shots leave none to score; "
                             "use fewer shots.")
        random.Random(f"{seed}:{label}").shuffle(cells)  # per class, as stratified_split: one class never moves another
        for name, part in zip(SPLIT_NAMES, (cells[n_val:shots], cells[:n_val], cells[shots:])):
            splits[name].extend(SplitEntry(r.path, r.label, r.sha256) for r in part)
    drawn = {e.sha256 for name in ("train", "val") for e in splits[name]}  # a copy of a drawn cell is never scored
    splits["test"] = [e for e in splits["test"] if e.sha256 not in drawn]
    for entries in splits.values():
        entries.sort(key=lambda e: e.path)
    total = sum(map(len, splits.values()))
    fractions = tuple(round(len(splits[name]) / total, 4) for name in SPLIT_NAMES)
    return DatasetSplit(classes=list(classes), seed=seed, fractions=fractions, splits=splits)


def _cut_head(source: RunDir, classes: list[str], out: Path) -> None:
    """Write the source's best weights as a run folder whose classifier head keeps only ``classes``' rows."""
    tensors, meta = read_checkpoint(source.checkpoint("best"))
    model = create_classifier(meta["arch"], len(meta["classes"]))
    head = model.get_classifier()
    prefix = next(name for name, module in model.named_modules() if module is head)
    rows = [meta["classes"].index(c) for c in classes]
    for key in head.state_dict():
        tensors[f"{prefix}.{key}"] = tensors[f"{prefix}.{key}"][rows].clone()
    save_checkpoint(RunDir(out).checkpoint("best"), tensors, {**meta, "classes": list(classes)})


def _lab_classes(scan_classes: list[str], source_classes: list[str]) -> list[str]:
    classes = sorted(c for c in scan_classes if c in source_classes)
    unknown = sorted(set(scan_classes) - set(source_classes))
    if unknown:
        say(f"note: classes the run does not know are left out: {', '.join(unknown)}")
    if len(classes) < 2:
        raise NeunnError(f"The new laboratory's folder shares {len(classes)} class(es) with the run "
                         f"({', '.join(source_classes)}); adaptation needs at least two.")
    return classes


def _source_scores(source: RunDir, data_dir: Path, split: DatasetSplit) -> dict[str, Any]:
    """The source run (all its classes, its own calibration and out-of-domain score) on the test split's cells."""
    predictor = Predictor.from_run(source.root)
    entries = split.splits["test"]
    rows = [{"true": e.label, "pred": p.label, "needs_review": p.needs_review, "out_of_domain": p.out_of_domain}
            for e, p in zip(entries, predictor.predict_files(data_dir / e.path for e in entries)) if p.error is None]
    return flag_report(rows, predictor.ood)


def adapt_run(run_dir: str | Path, data_dir: str | Path, *, shots: int, out: str | Path, seed: int = 0,
              overrides: list[str] | None = None) -> dict[str, Any]:
    """Adapt a run to a new lab's folder-per-class cells with ``shots`` per class; score both runs on the rest."""
    source, data_dir, out = RunDir(Path(run_dir)), Path(data_dir), Path(out)
    source.require_trained()
    RunDir(out).check_can_open(resume=False)
    scan = scan_dataset(data_dir, progress=True)
    report_scan(scan)
    source_classes = read_checkpoint(source.checkpoint("best"))[1]["classes"]
    split = kshot_split(scan.images, _lab_classes(scan.classes, source_classes), shots=shots, seed=seed)
    init = (out / INIT_FOLDER).resolve()
    source_lr = load_config(source.config).lr
    cfg = resolve_config(config_file=source.config, overrides=[
        *ADAPT_DEFAULTS, f"lr={source_lr * LR_FACTOR:.6g}", f"seed={seed}", *(overrides or []), f"init_from={init}"])
    with tempfile.TemporaryDirectory() as tmp:
        save_split(split, Path(tmp) / "splits.json")
        setup = open_training_run(data_dir, out, cfg, split_file=Path(tmp) / "splits.json")
    _cut_head(source, split.classes, init)
    trained = train(setup)
    shutil.rmtree(init)  # the adapted weights hold everything; adapt.json says where they started
    after = evaluate_run(out, split="test")
    result = {"source_run": str(source.root.resolve()), "data_dir": str(data_dir.resolve()), "shots": shots,
              "seed": seed, "classes": split.classes, "counts": split.counts(), "lr": cfg.lr, "epochs": cfg.epochs,
              "best_epoch": trained.best_epoch, "before": _source_scores(source, data_dir, split),
              "after": after["out_of_domain"], "after_macro_f1": MetricResults.from_json(after).overall.macro.f1}
    write_text_atomic(RunDir(out).adapt_file, json.dumps(result, indent=1, allow_nan=False))
    return result


def adapt_summary(result: dict[str, Any]) -> str:
    """A few lines for people: the draw, and the source and adapted runs on the same held-out cells."""
    n_test = sum(result["counts"]["test"].values())

    def line(name: str, r: dict[str, Any]) -> str:
        flags = "" if not r["available"] else (f", {r['share_flagged']:.1%} flagged out of domain, "
                                               f"{r['wrong_and_unflagged_share']:.1%} wrong and unflagged")
        return f"  {name:<8} accuracy {r['accuracy']:.1%}{flags}"

    return "\n".join([f"adapted on {result['shots']} cells per class (seed {result['seed']}) of {result['data_dir']}; "
                      f"scored on its {n_test} other cells:", line("before", result["before"]),
                      line("after", result["after"])])
