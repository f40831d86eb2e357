"""Run folders, the unit users keep: a classifier's run (every downstream command needs only it) and, on the same
base, a GAN's folder (:class:`neunn.gan.folder.GanDir`).

    RUN_DIR/config.yaml   RUN_DIR/splits.json   RUN_DIR/run.json   RUN_DIR/log.jsonl
    RUN_DIR/checkpoints/{best,last}.{safetensors,json}
    RUN_DIR/eval/<split>[-variant]/   one evaluation (EvalDir): metrics.json, predictions.csv, report.html, and when
                          asked robustness.json (--perturb) and val_predictions.csv (a threshold chosen on val)
    RUN_DIR/checkpoints/{best,last}.ood.{safetensors,json}   the out-of-domain screen fitted on that checkpoint
    RUN_DIR/gate.json     (optional) the run's cell-type gate: another run's path, its weights' hash, the scope
    RUN_DIR/pallor.json   (optional) the run's pallor screen: finding, threshold and what it was chosen on
    RUN_DIR/vacuoles.json (optional) the run's vacuole finder: its linear model, threshold, what it was fitted on
    RUN_DIR/conformal.json (optional) the run's conformal prediction sets: α, thresholds, calibration counts
    RUN_DIR/export/{best,last}.onnx, .int8.onnx   the ONNX exports for --backend onnx and onnx-int8
    RUN_DIR/adapt.json    (a run made by `neunn adapt`) the source run, the shots and the scores

    run = RunDir(Path("runs/b7")); run.check_can_open(resume=False)   # a new run refuses a folder holding another
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neunn.atomic import write_text_atomic
from neunn.errors import NeunnError


@dataclass(frozen=True)
class EvalDir:
    """One evaluation's folder, the same wherever it is (a run's eval/<split>, a cross-validation's pooled/)."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def robustness(self) -> Path:
        """The perturbation table (--perturb)."""
        return self.root / "robustness.json"

    @property
    def val_predictions(self) -> Path:
        """The validation cells a rare-class threshold was chosen on, scored by the same predictor."""
        return self.root / "val_predictions.csv"


def pooled_evaluation(folder: Path) -> EvalDir:
    """The pooled out-of-fold evaluation of a cross-validation folder (``neunn experiment cv``)."""
    return EvalDir(Path(folder) / "pooled")


@dataclass(frozen=True)
class RunFolder:
    """What every NeuNN run folder has: a saved config, a facts file, a JSONL log and checkpoints."""

    root: Path
    kind = "run"  # how errors name the folder
    config_name = "config.yaml"
    info_name = "run.json"

    @property
    def config(self) -> Path:
        return self.root / self.config_name

    @property
    def info(self) -> Path:
        return self.root / self.info_name

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def has_run(self) -> bool:
        """Whether the folder already holds (the start of) a run."""
        return self.config.is_file() or self.checkpoints.is_dir()

    def check_can_open(self, *, resume: bool) -> None:
        """Check that the folder can take a new run (empty or absent), or holds one to resume; writes nothing."""
        if resume and not self.has_run():
            raise NeunnError(f"There is no {self.kind} to resume in {self.root}; start one without --resume.")
        if not resume and self.has_run():
            raise NeunnError(f"{self.root} already holds a {self.kind}; continue it with --resume or choose another "
                             "--out.")
        if not resume and self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise NeunnError(f"Output folder {self.root} is not empty; choose a new or empty folder for --out.")

    def read_info(self) -> dict[str, Any]:
        """The run's recorded facts (dataset folder, version, command), or {} when absent."""
        try:
            return json.loads(self.info.read_text()) if self.info.is_file() else {}
        except (OSError, ValueError):
            raise NeunnError(f"{self.info} is not valid JSON; the {self.kind} folder is damaged.") from None

    def read_log(self) -> list[dict[str, Any]]:
        """Records from log.jsonl (a torn last line from a killed run is ignored)."""
        if not self.log.is_file():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def trim_log(self, key: str, last: int) -> None:
        """On resume: keep only the log records whose ``key`` (epoch, step) is at most ``last``, the checkpoint's."""
        write_text_atomic(self.log, "".join(json.dumps(r) + "\n" for r in self.read_log() if r.get(key, 0) <= last))

    def append_log(self, row: dict[str, Any]) -> None:
        with open(self.log, "a") as fh:
            fh.write(json.dumps(row) + "\n")


@dataclass(frozen=True)
class RunDir(RunFolder):
    """Paths inside one classifier run folder."""

    def checkpoint(self, which: str = "best") -> Path:
        """Stem of a checkpoint (``best`` or ``last``); add .safetensors/.json for the files."""
        return self.checkpoints / which

    def ood_file(self, which: str = "best", suffix: str = ".safetensors") -> Path:
        """The out-of-domain screen fitted on a checkpoint (its tensors; ``suffix=".json"``: a copy to read)."""
        return self.checkpoints / f"{which}.ood{suffix}"

    @property
    def gate_file(self) -> Path:
        """The cell-type gate's record: the gate run's path, its weights' SHA-256 and the scope."""
        return self.root / "gate.json"

    @property
    def pallor_file(self) -> Path:
        """The pallor screen: its finding, threshold and what it was chosen on."""
        return self.root / "pallor.json"

    @property
    def vacuole_file(self) -> Path:
        """The vacuole finder: its model (coefficients, means, scales), threshold and what it was fitted on."""
        return self.root / "vacuoles.json"

    @property
    def conformal_file(self) -> Path:
        """The conformal prediction sets: level α, per-class thresholds, the calibration cells' counts."""
        return self.root / "conformal.json"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def onnx_file(self, which: str = "best", *, int8: bool = False) -> Path:
        """The ONNX export of a checkpoint for ``--backend onnx`` (``int8``: the quantized one, ``onnx-int8``)."""
        return self.export_dir / f"{which}{'.int8' if int8 else ''}.onnx"

    @property
    def adapt_file(self) -> Path:
        """What `neunn adapt` recorded: the source run, the lab's cells, the shots and the scores."""
        return self.root / "adapt.json"

    def evaluation(self, split: str, backend: str = "torch", *, checkpoint: str = "best", tta: bool = False) -> EvalDir:
        """Where evaluation of a split writes: eval/<split> for the best checkpoint through PyTorch, with -last,
        -<backend> and -tta appended for the last checkpoint, another engine and test-time augmentation, so that no
        evaluation overwrites another (eval/test, eval/test-tta, eval/test-onnx-int8, eval/test-last-onnx-tta...)."""
        variant = ["last"] * (checkpoint == "last") + [backend] * (backend != "torch") + ["tta"] * tta
        return EvalDir(self.root / "eval" / "-".join([split, *variant]))

    def require_trained(self) -> None:
        """Raise a clear error unless this folder holds a finished or running NeuNN run with a best checkpoint."""
        if not self.root.is_dir():
            raise NeunnError(f"Run folder {self.root} does not exist.")
        if not self.checkpoint("best").with_suffix(".safetensors").is_file():
            raise NeunnError(f"{self.root} is not a trained NeuNN run (no checkpoints/best.safetensors).")
