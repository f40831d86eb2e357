"""The pallor of a leukocyte's cytoplasm: how pale its palest pixels are against its own median. A label-free measure
of pale holes in the cytoplasm, such as vacuoles.

    score = cytoplasm_pallor(rgb)      # in [0, 1]: 0 when the palest cytoplasm is as stained as its median

The cytoplasm is found as in `cell_regions` (the stained, lilac band around the nucleus) and eroded by a few pixels, so
that its edge against the background and the nucleus does not count. Its optical density, summed over the channels and
taken against the crop's own background light, has a median (the cytoplasm's stain) and a 1st percentile (its palest
pixels); the pallor is 1 less their ratio. Dividing by the median takes out how strongly a cell, or a slide, is
stained. Measured on neutro-vac-dev (docs/results.md, section 6), it ranks vacuolated neutrophils above normal ones
better than the CNN recipes trained on the same cells (it was designed on those cells), and pbc-dev's vacuolated
monocytes at chance: a measure for neutrophils.
"""

from __future__ import annotations

import numpy as np

from neunn.data.cell_regions import Regions, find_regions

MIN_PIXELS = 50  # fewer inner cytoplasm pixels than this, and the band is used whole
PERCENTILE = 1.0  # the palest pixels: a few vacuoles cover about this share of the cytoplasm


def cytoplasm_pallor(rgb: np.ndarray) -> float:
    """1 − (1st percentile / median) of the optical density of the cytoplasm of an H×W×3 uint8 crop."""
    return regions_pallor(find_regions(np.asarray(rgb)))


def regions_pallor(regions: Regions) -> float:
    """The pallor of a crop whose regions were already found (the cytoplasm without its rim, or whole when that
    leaves too few pixels)."""
    region = regions.inner if regions.inner.sum() >= MIN_PIXELS else regions.cytoplasm
    if not region.any():
        return 0.0
    od = regions.od[region]
    median = float(np.median(od))
    if median <= 0:
        return 0.0
    return float(np.clip(1.0 - np.percentile(od, PERCENTILE) / median, 0.0, 1.0))
