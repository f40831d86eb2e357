"""``neunn predict``: classify image files and folders with a trained run, streaming rows to CSV or JSON.

    summary = predict_to_file("runs/b7", ["cells/"], out=Path("preds.csv"), fmt="csv")
    summary.counts, summary.critical, summary.failed

    torchrun --nproc_per_node=4 -m neunn predict runs/b7 cells/ --out preds.csv --device cuda   # 4 GPUs share the files

Folders are walked recursively in sorted order; an unreadable file becomes a row with an error and the rest still run.
Rows are written as they are produced, so memory stays flat for any number of files.

Under torchrun, file i goes to rank i % world_size; each rank streams its rows to ``<out>.part-<rank>-of-<world>``,
and after a barrier rank 0 merges the parts round-robin into ``out`` (atomically, in the one-process file order and
byte for byte the one-process output, but for the last digit or so of ``ood_score``, a distance that amplifies the
float rounding of other batches and thread counts), removes them and returns the summary of all ranks; the other ranks
return an empty summary. ``--out`` is required there, on a filesystem every rank can reach; ``cuda`` and ``auto`` mean
``cuda:<local rank>`` on a GPU machine. A failed run leaves its part files; a rerun overwrites them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any, TypeVar

import torch

from neunn.atomic import write_atomic
from neunn.distributed import Distributed, init_distributed, local_gpu, shutdown
from neunn.errors import NeunnError
from neunn.inference.policy import DecisionPolicy
from neunn.inference.predictor import Prediction, Predictor
from neunn.inference.screens import SCREENS, csv_columns
from neunn.log import progress

FORMATS = ("csv", "json")
# review_threshold: the decision policy in force for the row (the model's default or --review-threshold).
# out_of_domain: "yes" when the cell is unlike the run's training cells; it and ood_score are empty for a run (or an
# older ONNX file) without a fitted out-of-domain score. cell_type: the class of the run's cell-type gate (`neunn screen
# fit cell-type-gate`), empty without one; a cell whose gate class is not one the run is for is out of domain too.
# pallor: the cytoplasm's pallor when the run has a pallor screen (`neunn screen fit pallor`); a pale cell not called
# the finding goes to review. One column per kind of screen (neunn.inference.screens: ood_score, cell_type, pallor...), empty without it.
CSV_HEADER = ["path", "pred", "probability", "top1", "top2", "top3", "critical", "needs_review", "out_of_domain",
              *csv_columns(), "review_threshold", "error"]
SHARD_BARRIER_TIMEOUT = timedelta(days=7)  # how long finished ranks wait for the slowest one before giving up

T = TypeVar("T")


@dataclass
class PredictSummary:
    """What a prediction run found: cells per class, the cells with a critical finding, cells out of domain, and
    failures."""

    counts: Counter = field(default_factory=Counter)
    critical: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    out_of_domain: list[str] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return sum(self.counts.values())

    def add(self, p: Prediction) -> None:
        if p.error is not None:
            self.failed.append(p.path)
            return
        self.counts[p.label] += 1
        if p.critical:
            self.critical.append(p.path)
        if p.out_of_domain:
            self.out_of_domain.append(p.path)


def iter_input_files(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """Files named directly, then every non-hidden file under each named folder (recursively, sorted)."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                    yield child
        elif path.exists():
            yield path
        else:
            raise NeunnError(f"Input {path} does not exist.")


def count_input_files(inputs: Iterable[str | Path]) -> int:
    """How many files :func:`iter_input_files` will give (a walk of the folders, no file opened): for progress."""
    return sum(1 for _ in iter_input_files(inputs))


def shard(items: Iterable[T], rank: int, world_size: int) -> Iterator[T]:
    """This rank's share of ``items``, lazily: item i goes to rank i % world_size."""
    return islice(items, rank, None, world_size)


def part_path(out: Path, rank: int, world_size: int) -> Path:
    """Where a rank streams its rows before rank 0 merges them: beside ``out``."""
    return out.with_name(f"{out.name}.part-{rank}-of-{world_size}")


def rank_device(device: str, ctx: Distributed) -> str:
    """Under torchrun, ``cuda`` (or ``auto`` on a GPU machine) becomes this rank's own GPU; other devices stay as given."""
    if not (ctx.enabled and device in ("cuda", "auto") and torch.cuda.is_available()):
        return device
    return f"cuda:{local_gpu(ctx)}"


@contextmanager
def _output(out: Path | None) -> Iterator[IO[str]]:
    if out is None:
        yield sys.stdout
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        yield fh


def _csv_row(p: Prediction, policy: DecisionPolicy) -> list[str]:
    top = [f"{c}:{prob:.4f}" for c, prob in p.top] + [""] * (3 - len(p.top))
    prob = "" if p.probability is None else f"{p.probability:.6f}"
    screens = [kind.csv_value(p.screens.get(name)) for name, kind in SCREENS.items() if kind.csv_column]
    return [p.path, p.label or "", prob, *top, "yes" if p.critical else "", "yes" if p.needs_review else "",
            "yes" if p.out_of_domain else "", *screens, f"{policy.review_threshold:g}", p.error or ""]


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(fields)
    return buffer.getvalue()


def format_record(p: Prediction, fmt: str, policy: DecisionPolicy, classes: list[str]) -> str:
    """One prediction as its text in the output: a CSV line (with its line end) or a JSON object (the per-cell record,
    :mod:`neunn.inference.cell_record`), each with the review threshold and critical classes that shaped it."""
    if fmt == "csv":
        return _csv_line(_csv_row(p, policy))
    return json.dumps({**p.as_dict(classes), "review_threshold": policy.review_threshold,
                       "critical_classes": list(policy.critical_classes)})


class RecordWriter:
    """Writes formatted records as a CSV file with its header, or as one JSON array."""

    def __init__(self, fh: IO[str], fmt: str) -> None:
        self.fh, self.fmt, self.n = fh, fmt, 0
        fh.write(_csv_line(CSV_HEADER) if fmt == "csv" else "[\n")

    def write(self, record: str) -> None:
        self.fh.write(record if self.fmt == "csv" or self.n == 0 else ",\n" + record)
        self.n += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.fh.write("\n]\n")


def predict_to_file(
    run_dir: str | Path, inputs: list[str | Path], *, out: Path | None = None, fmt: str = "csv",
    device: str = "cpu", batch_size: int = 64, workers: int = 2, backend: str = "torch",
    review_threshold: float | None = None, critical: str | None = None, show_progress: bool = True,
) -> PredictSummary:
    """Predict every input file into ``out`` (stdout when None) and summarise what was found.

    ``review_threshold`` and ``critical`` override the model's decision policy (each row records the one in force).
    Launched by torchrun (WORLD_SIZE > 1), the ranks share the files and rank 0 merges them; see the module docstring.
    """
    policy = {"review_threshold": review_threshold, "critical": critical}
    if fmt not in FORMATS:
        raise NeunnError(f"Unknown format '{fmt}'; use csv or json.")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if out is None:
            raise NeunnError("neunn predict needs --out when launched with torchrun, since each process writes "
                             "its share to a part file beside it before they are merged.")
        return _predict_sharded(run_dir, inputs, out=Path(out), fmt=fmt, device=device, batch_size=batch_size,
                                workers=workers, backend=backend, policy=policy, show_progress=show_progress)
    predictor = Predictor.from_run(run_dir, device=device, backend=backend, **policy)
    total = count_input_files(inputs) if show_progress else None
    summary = PredictSummary()
    with _output(out) as fh:
        writer = RecordWriter(fh, fmt)
        predictions = predictor.predict_files(iter_input_files(inputs), batch_size=batch_size, workers=workers)
        for p in progress(predictions, total=total, desc="predict", enabled=show_progress):
            writer.write(format_record(p, fmt, predictor.policy, predictor.classes))
            summary.add(p)
        writer.close()
    return summary


def _predict_sharded(
    run_dir: str | Path, inputs: list[str | Path], *, out: Path, fmt: str, device: str, batch_size: int,
    workers: int, backend: str, policy: dict[str, Any], show_progress: bool,
) -> PredictSummary:
    """This rank predicts its share into its part file; after a barrier rank 0 merges all parts into ``out``."""
    # Gloo: the barrier is the only collective, and it needs no GPU. It waits for the slowest rank, for up to a week
    # (Gloo's default gives up after 30 minutes); a rank that dies makes torchrun stop the others.
    ctx = init_distributed("cpu", timeout=SHARD_BARRIER_TIMEOUT)
    try:
        predictor = Predictor.from_run(run_dir, device=rank_device(device, ctx), backend=backend, **policy)
        files = shard(iter_input_files(inputs), ctx.rank, ctx.world_size)
        # Rank 0 shows its own share's progress: the ranks advance at about the same pace.
        total = -(-count_input_files(inputs) // ctx.world_size) if show_progress else None
        predictions = progress(predictor.predict_files(files, batch_size=batch_size, workers=workers), total=total,
                               desc=f"predict (rank 0 of {ctx.world_size})", enabled=show_progress)
        write_part(predictions, part_path(out, ctx.rank, ctx.world_size), fmt, predictor.policy, predictor.classes)
        ctx.barrier()
    finally:
        shutdown(ctx)
    if not ctx.is_main:
        return PredictSummary()
    return merge_parts([part_path(out, rank, ctx.world_size) for rank in range(ctx.world_size)], out, fmt)


def write_part(predictions: Iterable[Prediction], part: Path, fmt: str, policy: DecisionPolicy,
               classes: list[str]) -> None:
    """Stream one rank's predictions to its part file: a JSON line per file with its output text and summary fields."""
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("w", encoding="utf-8") as fh:
        for p in predictions:
            fh.write(json.dumps({"record": format_record(p, fmt, policy, classes), "path": p.path, "label": p.label,
                                 "critical": p.critical, "out_of_domain": p.out_of_domain, "error": p.error}) + "\n")


def _interleave_lines(parts: list[IO[str]]) -> Iterator[str]:
    """Lines taken round-robin from the parts, which hold items i % len(parts) of one sequence."""
    while True:
        for fh in parts:
            line = fh.readline()
            if not line:  # the first exhausted part ends the sequence: every part must be exhausted now
                if any(other.readline() for other in parts):
                    raise NeunnError("The prediction part files beside the output hold uneven shares; "
                                     "run the prediction again.")
                return
            yield line


def merge_parts(parts: list[Path], out: Path, fmt: str) -> PredictSummary:
    """Merge the ranks' part files round-robin into ``out`` (atomically), remove them, and summarise all rows."""
    summary = PredictSummary()

    def write(tmp: Path) -> None:
        handles = [part.open(encoding="utf-8") for part in parts]
        try:
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                writer = RecordWriter(fh, fmt)
                for line in _interleave_lines(handles):
                    row = json.loads(line)
                    writer.write(row["record"])
                    summary.add(Prediction(path=row["path"], label=row["label"], critical=row["critical"],
                                           out_of_domain=row.get("out_of_domain"), error=row["error"]))
                writer.close()
        finally:
            for handle in handles:
                handle.close()

    write_atomic(out, write)
    for part in parts:
        part.unlink()
    return summary
