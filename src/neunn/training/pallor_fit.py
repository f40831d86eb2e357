"""Fit a run's pallor screen (neunn.inference.pallor_screen) on its own training and validation cells.

    screen = fit_pallor_screen("runs/vacuoles", finding="vacuolated", target_sensitivity=0.9)
    # runs/vacuoles/pallor.json: the highest pallor threshold that flags at least 90 % of those cells of the finding

The pallor is measured, not learnt, so the run's training cells are as fair a ground for its threshold as its
validation cells, and there are more of them: a rare finding has few cells in either. Unreadable cells are skipped and
named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neunn.data.cytoplasm_pallor import cytoplasm_pallor
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.evaluation.rare_class import choose_threshold
from neunn.inference.pallor_screen import PallorScreen, write_pallor_screen
from neunn.log import progress, say
from neunn.rundir import RunDir


def fit_pallor_screen(run_dir: str | Path, *, finding: str, target_sensitivity: float = 0.9,
                      show_progress: bool = True) -> PallorScreen:
    """Choose the pallor threshold for ``target_sensitivity`` on the run's train and val cells; write pallor.json."""
    run = RunDir(Path(run_dir))
    run.require_trained()
    if not 0.0 < target_sensitivity <= 1.0:
        raise NeunnError(f"The target sensitivity must be in (0, 1], got {target_sensitivity}.")
    split = load_split(run.splits)
    if finding not in split.classes:
        raise NeunnError(f"'{finding}' is not a class of {run.root}; its classes are {', '.join(split.classes)}.")
    data_dir = run.read_info().get("data_dir")
    if not data_dir or not Path(data_dir).is_dir():
        raise NeunnError(f"The pallor threshold is chosen on the run's training images, and its dataset {data_dir} "
                         "is not available; run it where the data is.")
    entries = [e for name in ("train", "val") for e in split.splits[name]]
    scores, positive = [], []
    for entry in progress(entries, total=len(entries), desc="pallor", enabled=show_progress):
        try:
            rgb = np.asarray(load_rgb(Path(data_dir) / entry.path).image)
        except UnreadableImage as exc:
            say(f"  skipped {entry.path}: {exc}")
            continue
        scores.append(cytoplasm_pallor(rgb))
        positive.append(entry.label == finding)
    if not any(positive):
        raise NeunnError(f"The run's training and validation splits hold no readable '{finding}' cell to choose a "
                         "threshold on.")
    choice = choose_threshold(np.array(scores), np.array(positive), target_sensitivity,
                              chosen_on="the run's training and validation cells")
    screen = PallorScreen(finding, choice["threshold"], target_sensitivity, choice["validation"])
    write_pallor_screen(run, screen)
    return screen
