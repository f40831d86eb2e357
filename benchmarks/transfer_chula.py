"""What transfers to another laboratory: framing, stain normalisation and batch statistics of its cells, never
trained on.

    python benchmarks/transfer_chula.py RUN [RUN ...] --other OTHER_DATA [--threads 1] [--json out.json]
    python benchmarks/transfer_chula.py /tmp/ood/pbc /tmp/transfer/pbc-crop50 --other ../shared/data/chula-wbc

Each run (trained on one lab; its splits.json names its training and test cells) scores every image of OTHER_DATA
whose class it knows, and its own test split, under each variant, a ``+``-joined choice of:

* a stain normalisation, first, on the crop's own pixels: ``reinhard`` or ``macenko``
  (:mod:`neunn.data.stain_normalisation`), to references fitted on a seeded sample of the run's training images;
* a geometry (:mod:`neunn.data.leukocyte_framing`): ``zoom`` pads (or crops) every image of a set about its centre by
  one factor, the set's median leukocyte share of the frame over the training images'; ``frame`` finds, centres and
  scales each cell to the training images' median share;
* ``adabn``: BatchNorm statistics re-estimated on the set's unlabelled cells (Li et al. 2016), two-fold: the cells are
  halved at random and each half is scored with the statistics of the other, so no cell is scored by statistics it
  contributed to.

``none`` prepares each image exactly as the run's Predictor does (as ``neunn evaluate`` scores it); any other variant
decodes the image fully first. OTHER_DATA's labels are used for scoring only; its leukocyte share and, for adabn, its
images are used without them. Printed as a markdown table: accuracy with its 95 % bootstrap interval, the paired
difference from the first row (the first run, first variant) with its 95 % paired bootstrap interval, recall of each
class of OTHER_DATA, the shares flagged out of domain and wrong-and-unflagged (95 % Wilson intervals), and the same
variant's accuracy and flagged share on the run's own test split. Each ``--pair FIRST SECOND`` (rows named
RUN_NAME/VARIANT) adds their paired difference on both sets, with McNemar's p.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neunn.data.image_io import load_rgb
from neunn.data.leukocyte_framing import FILLS, Leukocyte, find_leukocyte, frame_leukocyte, rescale_frame
from neunn.data.preprocess import image_to_uint8, normalize_batch
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.data.stain_normalisation import fit_macenko_reference, fit_reinhard_reference, macenko, reinhard
from neunn.evaluation.intervals import bootstrap_intervals
from neunn.evaluation.paired import paired_difference
from neunn.inference.engines import TorchEngine
from neunn.inference.predictor import Predictor
from neunn.rundir import RunDir
from ood_methods import wilson  # benchmarks/: the Wilson interval section 5's shares use

GEOMETRIES = ("none", "zoom", "frame")
STAINS = ("none", "reinhard", "macenko")
DEFAULT_VARIANTS = ("none", "reinhard", "macenko", "zoom", "frame", "zoom+reinhard", "zoom+macenko", "adabn",
                    "reinhard+adabn", "zoom+adabn", "zoom+reinhard+adabn", "frame+reinhard+adabn")
BATCH = 64


def parse_variant(name: str) -> tuple[str, str, bool]:
    """A variant name (``none``, ``reinhard``, ``zoom``, ``frame+macenko``, ``zoom+adabn``...) as (geometry, stain,
    whether BatchNorm statistics are re-estimated on the set's unlabelled cells)."""
    parts = [p for p in name.split("+") if p != "none"]
    geometries, stains = [p for p in parts if p in GEOMETRIES], [p for p in parts if p in STAINS]
    adabn = parts.count("adabn")
    if len(geometries) > 1 or len(stains) > 1 or adabn > 1 or len(geometries) + len(stains) + adabn != len(parts):
        raise SystemExit(f"unknown variant '{name}': at most one geometry ({', '.join(GEOMETRIES[1:])}), one stain "
                         f"({', '.join(STAINS[1:])}) and adabn, joined by +")
    return (geometries or ["none"])[0], (stains or ["none"])[0], bool(adabn)


class CellSet:
    """The images of one set, with each one's leukocyte (found once) and the set's median leukocyte share."""

    def __init__(self, name: str, root: Path, entries: list[tuple[str, str]]) -> None:
        self.name, self.root, self.entries = name, root, entries
        self.cells: dict[str, Leukocyte] = {}
        shares = []
        for path, _ in entries:
            rgb = np.asarray(load_rgb(root / path).image)
            cell = self.cells[path] = find_leukocyte(rgb)
            shares.append(cell.diameter / max(rgb.shape[:2]))
        self.found = float(np.mean([c.found for c in self.cells.values()]))
        self.share = float(np.median(shares))
        self.diameter = float(np.median([c.diameter for c in self.cells.values()]))  # pixels of the lab's camera


def fit_references(root: Path, paths: list[str]) -> dict:
    """Reinhard and Macenko references and the median leukocyte share of a lab's (training) images."""
    images = [np.asarray(load_rgb(root / p).image) for p in paths]
    cells = [find_leukocyte(rgb) for rgb in images]
    return {"reinhard": fit_reinhard_reference(images), "macenko": fit_macenko_reference(images),
            "share": float(np.median([c.diameter / max(rgb.shape[:2]) for c, rgb in zip(cells, images)])),
            "diameter": float(np.median([c.diameter for c in cells])), "n": len(images)}


def make_transform(geometry: str, stain: str, references: dict, cells: CellSet, fill: str
                   ) -> Callable[[str, Image.Image], Image.Image]:
    """The transform of one variant for one set: stain first, on the crop's own pixels (a padded border would weigh
    in the statistics), then geometry."""
    def transform(path: str, image: Image.Image) -> Image.Image:
        if stain == "reinhard":
            image = Image.fromarray(reinhard(np.asarray(image), references["reinhard"]))
        elif stain == "macenko":
            image = Image.fromarray(macenko(np.asarray(image), references["macenko"]))
        if geometry == "zoom":
            image = rescale_frame(image, cells.share / references["share"], fill=fill)
        elif geometry == "frame":
            image = frame_leukocyte(image, references["share"], cells.cells[path], fill=fill)
        return image
    return transform


def prepared_pixels(predictor: Predictor, cells: CellSet, transform: Callable | None) -> torch.Tensor:
    """Every image of a set as model input (N×3×S×S uint8), through a transform or as the Predictor prepares it."""
    pixels = []
    for path, _ in cells.entries:
        if transform is None:
            pixels.append(predictor.load_pixels(cells.root / path))
        else:
            image = transform(path, load_rgb(cells.root / path).image)
            pixels.append(image_to_uint8(image, predictor.img_size, predictor.crop))
    return torch.stack(pixels)


def with_batch_statistics(predictor: Predictor, pixels: torch.Tensor) -> Predictor:
    """The Predictor with its BatchNorm statistics re-estimated on unlabelled cells (AdaBN, Li et al. 2016): the
    weights stay; only each layer's running mean and variance become those of these cells."""
    model = copy.deepcopy(predictor.engine.model)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over every batch, not an exponential one
    model.train()
    meta = predictor.engine.meta
    with torch.no_grad():
        for start in range(0, len(pixels), BATCH):
            model(normalize_batch(pixels[start:start + BATCH], meta["mean"], meta["std"]))
    engine = TorchEngine(model.eval(), meta, predictor.engine.device)
    return Predictor(engine, tta=predictor.tta, policy=predictor.policy, screens=predictor.screens)


def predict(predictor: Predictor, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and out-of-domain flags of a batch of model inputs."""
    probs, flags = [], []
    for start in range(0, len(pixels), BATCH):
        p, s = predictor.probabilities_and_ood(pixels[start:start + BATCH])
        probs.append(p)
        flags.append(predictor.ood.flags(s) if s is not None else np.zeros(len(p), dtype=bool))
    return np.concatenate(probs), np.concatenate(flags)


def score(predictor: Predictor, cells: CellSet, transform: Callable | None, adabn: bool) -> dict:
    """Probabilities, out-of-domain flags and review flags of every image of a set under a transform. With ``adabn``
    the cells are halved at random (no label used) and each half is scored with the statistics of the other."""
    pixels = prepared_pixels(predictor, cells, transform)
    if adabn:
        halves = np.array_split(np.random.default_rng(0).permutation(len(pixels)), 2)
        probs, flags = np.zeros((len(pixels), len(predictor.classes))), np.zeros(len(pixels), dtype=bool)
        for scored, other in (halves, halves[::-1]):
            probs[scored], flags[scored] = predict(with_batch_statistics(predictor, pixels[other]), pixels[scored])
    else:
        probs, flags = predict(predictor, pixels)
    index = {c: i for i, c in enumerate(predictor.classes)}
    labels = np.asarray([index[label] for _, label in cells.entries])
    review = probs.max(1) < predictor.policy.review_threshold
    return {"labels": labels, "probs": probs, "flagged": flags, "review": review}


def share_interval(mask: np.ndarray) -> dict:
    """A share of cells with its 95 % Wilson interval (unlike a bootstrap, it has width at 0 % and 100 %)."""
    mask = np.asarray(mask, dtype=bool)
    low, high = wilson(int(mask.sum()), len(mask))
    return {"share": float(mask.mean()), "low": low, "high": high}


def summarise(result: dict, classes: list[str], present: list[str]) -> dict:
    """Accuracy (with interval), recall of each present class, flagged and wrong-and-unflagged shares."""
    labels, probs = result["labels"], result["probs"]
    intervals = bootstrap_intervals(labels, probs, classes)
    correct = probs.argmax(1) == labels
    recall = {c: float(correct[labels == classes.index(c)].mean()) for c in present}
    return {"n": int(len(labels)), "accuracy": float(correct.mean()),
            "accuracy_interval": intervals.overall.accuracy.to_json(), "recall": recall,
            "flagged": share_interval(result["flagged"]),
            "wrong_unflagged": share_interval(~correct & ~result["flagged"] & ~result["review"])}


def pct(value: float, interval: dict | None = None) -> str:
    text = f"{100 * value:.1f}"
    return text if interval is None else f"{text} [{100 * interval['low']:.1f}, {100 * interval['high']:.1f}]"


def print_table(record: dict) -> None:
    """The record as the markdown table of docs/results.md, after a line saying how it was measured."""
    other, present = Path(record["other"]).name, record["classes_scored"]
    print(f"\n{record['date']}, device CPU ({record['machine']}, torch {record['torch']}), {record['threads']} "
          f"thread(s); references from {record['reference_images']} training images; leukocyte share of the frame "
          f"(median): training {record['reference_share']:.3f}, {other} {record['shares']['other']:.3f} (found in "
          f"{100 * record['found']['other']:.1f} %), own test {record['shares']['test']:.3f}; its stained diameter "
          f"(median, pixels): training {record['reference_diameter_px']:.0f}, {other} "
          f"{record['diameters_px']['other']:.0f}, own test {record['diameters_px']['test']:.0f}; "
          f"fill {record['fill']}\n")
    print(f"| run | variant | {other} accuracy, % | vs first row, points | recall "
          f"{'/'.join(c[:1].upper() for c in present)}, % | flagged out of domain, % | wrong and unflagged, % | "
          "own test accuracy, % | own test flagged, % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in record["rows"]:
        o, t, d = row["other"], row["test"], row["vs_first"]
        recall = " / ".join(f"{100 * o['recall'][c]:.0f}" for c in present)
        print(f"| {Path(row['run']).name} | {row['variant']} | {pct(o['accuracy'], o['accuracy_interval'])} | "
              f"{pct(d['difference'], d['difference_ci95'])} | {recall} | {pct(o['flagged']['share'], o['flagged'])} | "
              f"{pct(o['wrong_unflagged']['share'], o['wrong_unflagged'])} | "
              f"{pct(t['accuracy'], t['accuracy_interval'])} | {pct(t['flagged']['share'], t['flagged'])} |")
    if record["pairs"]:
        print(f"\n| second | minus first | {other}, points | own test, points |\n|---|---|---|---|")
        for pair in record["pairs"]:
            o, t = pair["other"], pair["test"]
            print(f"| {pair['second']} | {pair['first']} | {pct(o['difference'], o['difference_ci95'])} "
                  f"(McNemar p {o['mcnemar_p']:.2g}) | {pct(t['difference'], t['difference_ci95'])} "
                  f"(McNemar p {t['mcnemar_p']:.2g}) |")


def paired(first: dict, second: dict, key: str) -> dict:
    """Second row minus first on the cells of set ``key`` (other or test), paired (neunn.evaluation.paired)."""
    return paired_difference(*({str(i): c for i, c in enumerate(row[key]["correct"])} for row in (first, second)))


def measure_run(run_dir: Path, other_dir: Path, variants: list, args: argparse.Namespace, cache: dict) -> tuple:
    """Every variant's figures for one run, and its references; ``cache`` keeps each image set's leukocytes."""
    run = RunDir(run_dir)
    predictor = Predictor.from_run(run_dir, device="cpu")
    classes = predictor.classes
    split, data_dir = load_split(run.splits), Path(run.read_info()["data_dir"])
    train = [e.path for e in split.splits["train"]]
    reference_paths = sorted(random.Random(0).sample(train, min(args.reference_images, len(train))))
    if ("references", data_dir, tuple(reference_paths)) not in cache:
        cache["references", data_dir, tuple(reference_paths)] = fit_references(data_dir, reference_paths)
    references = cache["references", data_dir, tuple(reference_paths)]
    entries = {"other": (other_dir, [(r.path, r.label) for r in scan_dataset(other_dir).images if r.label in classes]),
               "test": (data_dir, [(e.path, e.label) for e in split.splits["test"]])}
    sets = {}
    for key, (root, items) in entries.items():
        if (root, tuple(items)) not in cache:
            cache[root, tuple(items)] = CellSet(key, root, items)
        sets[key] = cache[root, tuple(items)]
    present = [c for c in classes if any(label == c for _, label in entries["other"][1])]
    rows = []
    for name, geometry, stain, adabn in variants:
        t0 = time.perf_counter()
        row = {"run": str(run_dir), "variant": name}
        for key, cells in sets.items():
            transform = None if (geometry, stain) == ("none", "none") else make_transform(
                geometry, stain, references, cells, args.fill)
            result = score(predictor, cells, transform, adabn)
            row[key] = summarise(result, classes, present)
            row[key]["correct"] = (result["probs"].argmax(1) == result["labels"]).tolist()
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{run_dir.name} {name}: other {pct(row['other']['accuracy'])} %, test {pct(row['test']['accuracy'])} % "
              f"({row['seconds']:.0f} s)", flush=True)
    return rows, references, sets, present


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders trained on one lab (the first is the baseline)")
    parser.add_argument("--other", type=Path, required=True,
                        help="another lab's folder-per-class images (its labels only score)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference-images", type=int, default=600,
                        help="training images (a seeded sample) the stain references and framing share are fitted on")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--fill", choices=FILLS, default="border",
                        help="what pads a frame past the image: its border's median colour, or the image mirrored")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("FIRST", "SECOND"),
                        help="rows to compare, paired on the same cells, each RUN_NAME/VARIANT (e.g. pbc/zoom+adabn "
                             "pbc/zoom+reinhard+adabn); repeatable")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [(v, *parse_variant(v)) for v in args.variants]
    names = [f"{run.name}/{v}" for run in args.runs for v in args.variants]
    unknown = [name for pair in args.pair for name in pair if name not in names]
    if unknown:
        raise SystemExit(f"--pair names no row: {', '.join(unknown)} (rows: {', '.join(names)})")
    started = time.perf_counter()

    rows, cache = [], {}
    for run_dir in args.runs:
        run_rows, references, sets, present = measure_run(run_dir, args.other, variants, args, cache)
        rows += run_rows
    for row in rows:  # paired on the same cells: what the cells share cancels (neunn.evaluation.paired)
        row["vs_first"] = paired(rows[0], row, "other")
    named = {f"{Path(r['run']).name}/{r['variant']}": r for r in rows}
    pairs = [{"first": a, "second": b, **{key: paired(named[a], named[b], key) for key in ("other", "test")}}
             for a, b in args.pair]

    record = {"date": datetime.date.today().isoformat(), "device": "cpu", "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.machine(), "runs": [str(r) for r in args.runs],
              "other": str(args.other), "fill": args.fill, "reference_images": references["n"],
              "reference_share": references["share"], "reference_reinhard": references["reinhard"].__dict__,
              "reference_diameter_px": references["diameter"], "shares": {k: c.share for k, c in sets.items()},
              "diameters_px": {k: c.diameter for k, c in sets.items()}, "found": {k: c.found for k, c in sets.items()},
              "classes_scored": present, "seconds": time.perf_counter() - started, "rows": rows, "pairs": pairs}
    print_table(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=float))


if __name__ == "__main__":
    main()
