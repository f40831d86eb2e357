"""Fit a run's pallor screen (neunn.inference.screens.pallor) on its own training and validation cells.

    screen = fit_pallor_screen("runs/vacuoles", finding="vacuolated", target_sensitivity=0.9)
    # runs/vacuoles/pallor.json: the highest pallor threshold that flags at least 90 % of those cells of the finding

The pallor is measured, not learnt, so the run's training cells are as fair a ground for its threshold as its
validation cells, and there are more of them: a rare finding has few cells in either. Unreadable cells are skipped and
named.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neunn.data.cytoplasm_pallor import cytoplasm_pallor
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.evaluation.rare_class import choose_threshold
from neunn.inference.screens.pallor import PallorScreen
from neunn.log import progress, say
from neunn.rundir import RunDir


def fit_pallor_screen(run_dir: str | Path, *, finding: str, target_sensitivity: float = 0.9, workers: int = 2,
                      show_progress: bool = True) -> PallorScreen:
    """Choose the pallor threshold for ``target_sensitivity`` on the run's train and val cells; write pallor.json.

    ``workers`` threads decode and measure cells side by side (image decoding and most of the measure release the GIL).
    """
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

    def measure(entry) -> float | str:
        try:
            return cytoplasm_pallor(np.asarray(load_rgb(Path(data_dir) / entry.path).image))
        except UnreadableImage as exc:
            return str(exc)

    scores, positive = [], []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        measured = progress(pool.map(measure, entries), total=len(entries), desc="pallor", enabled=show_progress)
        for entry, score in zip(entries, measured):
            if isinstance(score, str):
                say(f"  skipped {entry.path}: {score}")
                continue
            scores.append(score)
            positive.append(entry.label == finding)
    if not any(positive):
        raise NeunnError(f"The run's training and validation splits hold no readable '{finding}' cell to choose a "
                         "threshold on.")
    choice = choose_threshold(np.array(scores), np.array(positive), target_sensitivity,
                              chosen_on="the run's training and validation cells")
    screen = PallorScreen(finding, choice["threshold"], target_sensitivity, choice["validation"])
    screen.write(run)
    return screen
