"""``neunn demo``: the whole pipeline on phantom (synthetic) neutrophils, on a CPU, in minutes, with nothing downloaded.

    metrics = run_demo(Path("neunn-demo"))   # phantom data → train cpu-small → evaluate → report

Running it again in the same folder reuses the phantom images and resumes (or simply re-reports) the run, so an
interrupted demo loses nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neunn.config import resolve_config
from neunn.data.phantom import write_phantom_dataset
from neunn.evaluate import evaluate_run
from neunn.rundir import RunDir
from neunn.run_setup import say
from neunn.train import train

DEMO_PER_CLASS = 160
DEMO_IMAGE_SIZE = 128


def run_demo(out: Path, *, per_class: int | None = None, overrides: list[str] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Generate phantom data in ``out/phantom``, train ``out/run`` with the cpu-small preset and evaluate its test split."""
    data_dir, run = out / "phantom", RunDir(out / "run")
    per_class = per_class or DEMO_PER_CLASS
    say(f"[1/3] rendering {per_class} phantom cells per class (synthetic images, not real cells) into {data_dir}")
    write_phantom_dataset(data_dir, per_class=per_class, seed=0, size=DEMO_IMAGE_SIZE, progress=progress)
    resume = run.checkpoint("last").with_suffix(".safetensors").is_file()
    say(f"[2/3] training the cpu-small preset into {run.root}" + (" (resuming)" if resume else ""))
    cfg = None if resume else resolve_config(preset="cpu-small", overrides=overrides)
    train(data_dir, run.root, cfg=cfg, resume=resume, progress=progress)
    say("[3/3] evaluating the best checkpoint on the held-out test split")
    return evaluate_run(run.root, data_dir=data_dir, split="test")
