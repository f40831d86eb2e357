"""``neunn predict``: classify image files and folders with a trained run, streaming rows to CSV or JSON.

    summary = predict_to_file("runs/b7", ["cells/"], out=Path("preds.csv"), fmt="csv")
    summary.counts, summary.critical, summary.failed

Folders are walked recursively in sorted order; an unreadable file becomes a row with an error and the rest still run.
Rows are written as they are produced, so memory stays flat for any number of files.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from neunn.errors import NeunnError
from neunn.predictor import Prediction, Predictor

FORMATS = ("csv", "json")


@dataclass
class PredictSummary:
    """What a prediction run found: cells per class, the cells with a critical finding, and failures."""

    counts: Counter = field(default_factory=Counter)
    critical: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

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


@contextmanager
def _output(out: Path | None) -> Iterator[IO[str]]:
    if out is None:
        yield sys.stdout
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        yield fh


def _csv_row(p: Prediction) -> list[str]:
    top = [f"{c}:{prob:.4f}" for c, prob in p.top] + [""] * (3 - len(p.top))
    prob = "" if p.probability is None else f"{p.probability:.6f}"
    return [p.path, p.label or "", prob, *top, "yes" if p.critical else "", "yes" if p.needs_review else "",
            p.error or ""]


def predict_to_file(
    run_dir: str | Path, inputs: list[str | Path], *, out: Path | None = None, fmt: str = "csv",
    device: str = "cpu", batch_size: int = 64, workers: int = 2, backend: str = "torch",
) -> PredictSummary:
    """Predict every input file into ``out`` (stdout when None) and summarise what was found."""
    if fmt not in FORMATS:
        raise NeunnError(f"Unknown format '{fmt}'; use csv or json.")
    predictor = Predictor.from_run(run_dir, device=device, backend=backend)
    files = iter_input_files(inputs)
    summary = PredictSummary()
    with _output(out) as fh:
        writer = csv.writer(fh) if fmt == "csv" else None
        if writer:
            writer.writerow(["path", "pred", "probability", "top1", "top2", "top3", "critical", "needs_review", "error"])
        else:
            fh.write("[\n")
        for p in predictor.predict_files(files, batch_size=batch_size, workers=workers):
            if writer:
                writer.writerow(_csv_row(p))
            else:
                fh.write(("" if summary.n_ok + len(summary.failed) == 0 else ",\n") + json.dumps(p.as_dict()))
            summary.add(p)
        if not writer:
            fh.write("\n]\n")
    return summary
