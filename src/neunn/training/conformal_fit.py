"""Fit a run's conformal prediction sets (neunn.inference.screens.conformal) on its validation cells, scored by the
run's own Predictor exactly as in use.

    sets = fit_conformal("runs/b7", alpha=0.05)                          # RUN/conformal.json, one threshold
    sets = fit_conformal("runs/b7", alpha=0.05, class_conditional=True)   # one per class
    sets = fit_conformal("runs/b7", alpha=0.05, data_dir=Path("our_lab"), split="all")   # a lab's own labelled cells

The validation cells chose the best epoch and the temperature, so they are not quite fresh: the guarantee is nearly,
not exactly, split-conformal on them; a laboratory recalibrates on its own labelled cells (``data_dir``), which the
model never saw, and then the guarantee is for cells like those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.inference.predictor import Predictor
from neunn.inference.screens.conformal import ConformalSets, conformal_threshold
from neunn.rundir import RunDir


def fit_conformal(run_dir: str | Path, *, alpha: float = 0.05, class_conditional: bool = False,
                  data_dir: Path | None = None, device: str = "cpu") -> ConformalSets:
    """Choose the sets' thresholds for level ``alpha`` on the run's validation cells (or every cell of ``data_dir``,
    folder per class with the model's classes); write RUN/conformal.json."""
    run = RunDir(Path(run_dir))
    run.require_trained()
    if not 0.0 < alpha < 1.0:
        raise NeunnError(f"α must be between 0 and 1, got {alpha}.")
    predictor = Predictor.from_run(run.root, device=device, gate=False)
    classes = predictor.classes
    if data_dir is None:
        root = run.read_info().get("data_dir")
        if not root or not Path(root).is_dir():
            raise NeunnError(f"The sets are fitted on the run's validation images, and its dataset {root} is not "
                             "available; run it where the data is, or give the lab's own labelled cells.")
        entries = [(Path(root) / e.path, e.label) for e in load_split(run.splits).splits["val"]]
        source = "the run's validation split"
    else:
        scan = scan_dataset(Path(data_dir))
        unknown = sorted({r.label for r in scan.images} - set(classes))
        if unknown:
            raise NeunnError(f"{data_dir} has class folders the model does not know ({', '.join(unknown)}); its "
                             f"classes are {', '.join(classes)}.")
        entries = [(Path(data_dir) / r.path, r.label) for r in scan.images]
        source = str(data_dir)
    labels = {str(path): label for path, label in entries}
    scores, truth = [], []
    for p in predictor.predict_files([path for path, _ in entries], workers=1):
        if p.error is None:
            index = classes.index(labels[p.path])
            scores.append(1.0 - p.probs[index])
            truth.append(index)
    if not scores:
        raise NeunnError("There is no readable calibration cell to fit the sets on.")
    scores, truth = np.asarray(scores), np.asarray(truth)
    if class_conditional:
        thresholds = tuple(conformal_threshold(scores[truth == i], alpha) for i in range(len(classes)))
    else:
        thresholds = (conformal_threshold(scores, alpha),) * len(classes)
    sets = ConformalSets(alpha, class_conditional, tuple(classes), thresholds,
                         {"source": source, "n": int(len(scores)),
                          "per_class": {c: int((truth == i).sum()) for i, c in enumerate(classes)}})
    sets.write(run)
    return sets
