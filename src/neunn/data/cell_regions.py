"""Where the nucleus and the cytoplasm of a leukocyte are in a crop, found without a learnt model.

    nucleus = find_nucleus(rgb)                       # H×W bool; all False when no nucleus is found
    light = background_light(rgb)                     # the crop's brightest light per channel (its empty background)
    cytoplasm = find_cytoplasm(rgb, nucleus, light)   # H×W bool: the stained, lilac band around the nucleus
    regions = find_regions(rgb)                       # all of it at once, with the cytoplasm's inner part and its OD

The nucleus is by far the most stained thing in a May-Grünwald-Giemsa crop: the stain map of `leukocyte_framing`
(red OD less half the blue) is smoothed and thresholded (Otsu), and the largest region near the centre is taken, its
holes filled. The cytoplasm is the band out to ``CYTOPLASM_REACH`` around it that is stained (not the cream
background) and lilac rather than pink (red cells absorb blue about as much as red; the cytoplasm less). Every length
is given for CellaVision's 360 px crops and scaled with the image's side. Used to paint vacuoles into cells
(`vacuole_painting`) and to measure the cytoplasm's pallor (`cytoplasm_pallor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

from neunn.data.leukocyte_framing import disk, otsu_threshold, stain_map

REFERENCE_SIDE = 360  # the crops the sizes below were measured on (CellaVision, 360×363)
CYTOPLASM_REACH = 28  # px at REFERENCE_SIDE: how far the cytoplasm band reaches out from the nucleus
SMOOTHING = 1.5  # px at REFERENCE_SIDE: Gaussian sigma of the stain map the nucleus is thresholded on
COLOUR_SMOOTHING = 3.0  # px at REFERENCE_SIDE: sigma of the optical densities the cytoplasm is told apart on
STAINED = 0.4  # a cytoplasm pixel has at least this share of the median optical density next to the nucleus
RED_CELL_BLUE_RATIO = 0.9  # blue OD / red OD at or above which a pixel is a red cell's (pink), not cytoplasm (lilac)
MIN_CONTRAST = 0.2  # least range of the smoothed stain map, in OD, for there to be a nucleus to find
MIN_NUCLEUS_SHARE = 0.004  # a nucleus covers at least this share of the image ...
CENTRE_REACH = 0.3  # ... and its centroid lies within this share of the side from the centre
STAND_IN_RADIUS = 0.11  # radius (share of the side) of the disc that stands in for a nucleus not found
RIM = 3  # px at 360 px: the cytoplasm's rim (against the background and the nucleus), left out of its inner part


def image_scale(rgb: np.ndarray) -> float:
    """The image's longer side over REFERENCE_SIDE: every length here is given at 360 px and scaled by this."""
    return max(rgb.shape[:2]) / REFERENCE_SIDE


def background_light(rgb: np.ndarray) -> np.ndarray:
    """The image's brightest light per channel (99th percentile): its empty background, the colour of a hole."""
    return np.maximum(np.percentile(rgb.reshape(-1, 3), 99.0, axis=0), 1.0)


def find_nucleus(rgb: np.ndarray) -> np.ndarray:
    """H×W bool mask of the leukocyte's nucleus (all False when none is found): the largest strongly stained region
    near the centre of the smoothed stain map, its holes filled."""
    rgb = np.asarray(rgb)
    height, width = rgb.shape[:2]
    scale = image_scale(rgb)
    stain = ndimage.gaussian_filter(stain_map(rgb), max(0.5, SMOOTHING * scale))
    none = np.zeros((height, width), dtype=bool)
    if np.ptp(stain) < MIN_CONTRAST:
        return none
    mask = stain > otsu_threshold(stain)
    mask = ndimage.binary_opening(mask, structure=disk(max(1, round(2 * scale))))  # specks and thin rims go
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if not n:
        return none
    index = np.arange(1, n + 1)
    areas = ndimage.sum_labels(mask, labels, index)
    centres = np.asarray(ndimage.center_of_mass(mask, labels, index)).reshape(-1, 2)
    near = np.hypot(centres[:, 0] - (height - 1) / 2, centres[:, 1] - (width - 1) / 2) <= CENTRE_REACH * max(
        height, width)
    usable = near & (areas >= MIN_NUCLEUS_SHARE * height * width)
    if not usable.any():
        return none
    return labels == int(np.argmax(np.where(usable, areas, -1))) + 1


def stand_in_nucleus(rgb: np.ndarray) -> np.ndarray:
    """A nucleus-sized disc at the image's centre, for a crop whose nucleus was not found."""
    height, width = rgb.shape[:2]
    yy, xx = np.ogrid[:height, :width]
    radius = STAND_IN_RADIUS * max(height, width)
    return (yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2 <= radius * radius


def find_cytoplasm(rgb: np.ndarray, nucleus: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Where a vacuole may lie: the band around the nucleus, kept to its stained, lilac pixels where enough are."""
    scale = image_scale(rgb)
    distance = ndimage.distance_transform_edt(~nucleus)
    band = (distance > 0) & (distance <= CYTOPLASM_REACH * scale)
    od = np.maximum(-np.log(np.maximum(rgb.astype(np.float64), 1.0) / light), 0.0)
    od = ndimage.gaussian_filter(od, (COLOUR_SMOOTHING * scale, COLOUR_SMOOTHING * scale, 0))
    total = od.sum(axis=2)
    inner = band & (distance <= CYTOPLASM_REACH * scale / 3)
    level = float(np.median(total[inner])) if inner.any() else 0.0
    stained = total >= STAINED * level
    lilac = od[..., 2] < RED_CELL_BLUE_RATIO * od[..., 0]
    for keep in (stained & lilac, stained):
        if (band & keep).sum() >= 0.25 * band.sum():  # the filter leaves a plausible cytoplasm
            return band & keep
    return band


@dataclass(frozen=True)
class Regions:
    """A crop's nucleus and cytoplasm (H×W bool), the cytoplasm without its rim, and the OD map and its median."""

    nucleus: np.ndarray
    cytoplasm: np.ndarray
    inner: np.ndarray
    od: np.ndarray  # H×W summed optical density
    median_od: float
    scale: float  # the image's side over 360 px


def find_regions(rgb: np.ndarray) -> Regions:
    """The nucleus and cytoplasm of an H×W×3 uint8 crop at its own resolution (a stand-in disc for a nucleus not
    found), the cytoplasm's inner part and its optical density."""
    rgb = np.asarray(rgb)
    scale = image_scale(rgb)
    light = background_light(rgb)
    nucleus = find_nucleus(rgb)
    if not nucleus.any():
        nucleus = stand_in_nucleus(rgb)
    cytoplasm = find_cytoplasm(rgb, nucleus, light)
    inner = ndimage.binary_erosion(cytoplasm, iterations=max(1, round(RIM * scale)))
    od = np.maximum(-np.log(np.maximum(rgb.astype(np.float64), 1.0) / light), 0.0).sum(axis=2)
    region = inner if inner.any() else cytoplasm
    median = float(np.median(od[region])) if region.any() else 0.0
    return Regions(nucleus, cytoplasm, inner, od, median, scale)


OUTLINE_POINTS = 48  # points per outline: smooth enough on a tile, small enough to keep with every cell


def _outline(mask: np.ndarray, points: int) -> list[list[float]]:
    """The longest boundary of ``mask`` as about ``points`` [x, y] pixel positions (empty when there is none)."""
    if not mask.any():
        return []
    padded = np.pad(mask.astype(np.float64), 1)  # a region touching the border still gets a closed outline
    contour = max(find_contours(padded, 0.5), key=len) - 1.0
    step = max(1, len(contour) // points)
    return [[round(float(x), 1), round(float(y), 1)] for y, x in contour[::step]]


def region_outlines(regions: Regions, points: int = OUTLINE_POINTS) -> dict[str, list[list[float]]]:
    """The cell's and the nucleus's outlines, in the image's pixels, for the page to draw on the tile."""
    return {"cell": _outline(regions.cytoplasm | regions.nucleus, points), "nucleus": _outline(regions.nucleus, points)}


class FullImage:
    """A decoded cell at its full size, shared by everything that measures it: the image as decoded (a PIL image, or
    None when nothing needed it), its pixels and, found once on first use, its regions — so the pallor screen and the
    vacuole finder segment a cell once between them."""

    def __init__(self, image: Any | None) -> None:
        self.image = image

    @cached_property
    def rgb(self) -> np.ndarray:
        return np.asarray(self.image)

    @cached_property
    def regions(self) -> Regions:
        return find_regions(self.rgb)
