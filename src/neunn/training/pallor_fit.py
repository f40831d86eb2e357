"""Fit a run's pallor screen (neunn.inference.screens.pallor) on its own training and validation cells.

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
from neunn.evaluation.rare_class import choose_threshold
from neunn.inference.screens.pallor import PallorScreen
from neunn.rundir import RunDir
from neunn.training.finding_fit import check_target, measure_run_cells


def fit_pallor_screen(run_dir: str | Path, *, finding: str, target_sensitivity: float = 0.9, workers: int = 2,
                      show_progress: bool = True) -> PallorScreen:
    """Choose the pallor threshold for ``target_sensitivity`` on the run's train and val cells; write pallor.json.

    ``workers`` threads decode and measure cells side by side (image decoding and most of the measure release the GIL).
    """
    run = RunDir(Path(run_dir))
    run.require_trained()
    check_target(target_sensitivity)
    cells = measure_run_cells(run, finding, cytoplasm_pallor, workers=workers, desc="pallor",
                              show_progress=show_progress)
    choice = choose_threshold(np.array(cells.values), cells.positive, target_sensitivity,
                              chosen_on="the run's training and validation cells")
    screen = PallorScreen(finding, choice["threshold"], target_sensitivity, choice["validation"])
    screen.write(run)
    return screen
