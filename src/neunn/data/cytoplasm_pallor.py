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
from scipy import ndimage

from neunn.data.cell_regions import background_light, find_cytoplasm, find_nucleus, image_scale, stand_in_nucleus

EROSION = 3  # px at 360 px: the cytoplasm's rim left out
PERCENTILE = 1.0  # the palest pixels: a few vacuoles cover about this share of the cytoplasm
MIN_PIXELS = 50  # fewer eroded cytoplasm pixels than this, and the band is used whole


def cytoplasm_pallor(rgb: np.ndarray) -> float:
    """1 − (1st percentile / median) of the optical density of the cytoplasm of an H×W×3 uint8 crop."""
    rgb = np.asarray(rgb)
    light = background_light(rgb)
    nucleus = find_nucleus(rgb)
    if not nucleus.any():
        nucleus = stand_in_nucleus(rgb)
    band = find_cytoplasm(rgb, nucleus, light)
    inner = ndimage.binary_erosion(band, iterations=max(1, round(EROSION * image_scale(rgb))))
    region = inner if inner.sum() >= MIN_PIXELS else band
    if not region.any():
        return 0.0
    od = np.maximum(-np.log(np.maximum(rgb.astype(np.float64), 1.0) / light), 0.0).sum(axis=2)[region]
    median = float(np.median(od))
    if median <= 0:
        return 0.0
    return float(np.clip(1.0 - np.percentile(od, PERCENTILE) / median, 0.0, 1.0))
