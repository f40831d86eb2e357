"""The experiment folder: its settings saved once, and checked when the experiment is continued.

    open_experiment(Path("exp/cv"), asdict(settings), what="cross-validation")   # OUT/experiment.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neunn.atomic import write_text_atomic
from neunn.errors import NeunnError
from neunn.log import say


def open_experiment(out: Path, settings: dict[str, Any], *, what: str = "experiment") -> None:
    """Start the experiment folder ``out``, or check that the one there was made with the same settings."""
    saved = out / "experiment.json"
    if saved.is_file():
        before = json.loads(saved.read_text())
        changed = [key for key, value in settings.items() if before.get(key) != value]
        if changed:
            raise NeunnError(f"{out} holds a {what} with other settings ({', '.join(changed)}); use the same ones "
                             "to continue it, or choose another --out.")
        say(f"continuing the {what} in {out}")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NeunnError(f"Output folder {out} is not empty; choose a new or empty folder for --out.")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved, json.dumps(settings, indent=1))
