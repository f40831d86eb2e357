"""The run folder, the unit users keep: every downstream command (evaluate, predict, export, serve) needs only it.

    RUN_DIR/config.yaml   RUN_DIR/splits.json   RUN_DIR/run.json   RUN_DIR/log.jsonl
    RUN_DIR/checkpoints/{best,last}.{safetensors,json}   RUN_DIR/eval/<split>[-variant]/{metrics.json,...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neunn.atomic import write_text_atomic
from neunn.errors import NeunnError


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        """Stem of a checkpoint (``best`` or ``last``); add .safetensors/.json for the files."""
        return self.checkpoints / which

    def eval_dir(self, split: str, backend: str = "torch", *, checkpoint: str = "best", tta: bool = False) -> Path:
        """Where evaluation of a split writes: eval/<split> for the best checkpoint through PyTorch, with -last,
        -<backend> and -tta appended for the last checkpoint, another engine and test-time augmentation, so that no
        evaluation overwrites another (eval/test, eval/test-tta, eval/test-onnx-int8, eval/test-last-onnx-tta...)."""
        variant = ["last"] * (checkpoint == "last") + [backend] * (backend != "torch") + ["tta"] * tta
        return self.root / "eval" / "-".join([split, *variant])

    def require_trained(self) -> None:
        """Raise a clear error unless this folder holds a finished or running NeuNN run with a best checkpoint."""
        if not self.root.is_dir():
            raise NeunnError(f"Run folder {self.root} does not exist.")
        if not self.checkpoint("best").with_suffix(".safetensors").is_file():
            raise NeunnError(f"{self.root} is not a trained NeuNN run (no checkpoints/best.safetensors).")

    def read_info(self) -> dict[str, Any]:
        """The run's recorded facts (dataset folder, version, command), or {} when absent."""
        return json.loads(self.info.read_text()) if self.info.is_file() else {}

    def read_log(self) -> list[dict[str, Any]]:
        """Per-epoch records from log.jsonl (a torn last line from a killed run is ignored)."""
        if not self.log.is_file():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def rewrite_log(self, rows: list[dict[str, Any]]) -> None:
        """Replace log.jsonl atomically (used on resume to drop epochs after the last checkpoint)."""
        write_text_atomic(self.log, "".join(json.dumps(r) + "\n" for r in rows))

    def append_log(self, row: dict[str, Any]) -> None:
        with open(self.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")

