"""Leukocyte framing: find the white cell in a crop, then centre it and scale it to a fixed share of the frame.

    cell = find_leukocyte(rgb)                        # centre (x, y) and diameter in pixels of the stained cell
    framed = frame_leukocyte(image, fraction=0.3)     # PIL image: the cell centred, its diameter 0.3 of the side
    share = cell.diameter / max(rgb.shape[:2])        # how much of the frame the cell fills (a lab's framing)
    wider = rescale_frame(image, 2.0)                 # one factor for all of a lab's crops: the cell at half the share

Laboratories frame their crops differently: PBC's CellaVision crops show the leukocyte at about a quarter to a third of
the side among red cells, while a crop cut from a labelled box fills most of the frame with the cell. A model sees
pixels, not micrometres, so the same cell at twice the size is a different picture to it; framing every crop the same
way is meant to take that difference out. Measured on another lab's cells (docs/results.md, section 5), it did not make
a PBC model transfer on its own: the framing was not what stopped it.

The cell is found without labels or a learnt model: the nucleus and the stained cytoplasm absorb red light, which the
pink red cells and the background mostly pass, so the optical density of the red channel, less half the blue channel's
(which takes out grey, unstained edges such as red cells' refraction rims), is thresholded (Otsu), opened (thin rims
go), closed (the lobes of a neutrophil's nucleus join), and the largest region near the centre is taken. Its diameter
is that of a disc of the same area, so it is the stained part of the cell: mostly the nucleus where the cytoplasm is
pale. A crop where nothing is found is framed as it is (centre of the image, its own size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from neunn.errors import NeunnError

WORK_SIDE = 128  # segmentation runs on a copy this size (longest side): fast, and enough for a cell's outline
SMOOTHING = 1 / 100  # Gaussian sigma, a share of the side: grain and granules average out
OPENING = 1 / 40  # radius of the opening, a share of the side: thinner stained lines (red-cell rims) are removed
CLOSING = 1 / 25  # radius of the closing: gaps between nuclear lobes close
CENTRE_REACH = 0.25  # a region counts when its centroid lies within this share of the side from the centre
MIN_CONTRAST = 0.05  # least range of the (smoothed) stain map, in OD, for there to be a cell to find
FILLS = ("border", "reflect")


@dataclass(frozen=True)
class Leukocyte:
    """Where the white cell is in an image: its centre (x, y) and the diameter of its stained part, in pixels."""

    x: float
    y: float
    diameter: float
    found: bool


def disk(radius: int) -> np.ndarray:
    """A boolean disc of the given radius (at least 1 px): a structuring element."""
    r = max(1, int(round(radius)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return xx * xx + yy * yy <= r * r


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a set of values (256 bins)."""
    counts, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)
    above = below[-1] - below
    mass = np.cumsum(counts * centres)
    mean_below = mass / np.maximum(below, 1)
    mean_above = (mass[-1] - mass) / np.maximum(above, 1)
    return float(centres[np.argmax(below * above * (mean_below - mean_above) ** 2)])


def stain_map(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel stain of the white cell: OD of the red channel less half that of the blue, relative to the image's
    brightest light (so a grey or cream background is zero)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    light = np.maximum(np.percentile(rgb.reshape(-1, 3), 99.0, axis=0), 1.0)
    od = np.maximum(-np.log(np.maximum(rgb, 1.0) / light), 0.0)
    return od[..., 0] - 0.5 * od[..., 2]


def find_leukocyte(rgb: np.ndarray) -> Leukocyte:
    """The white cell of an H×W×3 uint8 crop (found=False, the image's centre and side, where none is found)."""
    rgb = np.asarray(rgb)
    height, width = rgb.shape[:2]
    side = max(height, width)
    factor = min(1.0, WORK_SIDE / side)
    small = rgb if factor == 1.0 else np.asarray(Image.fromarray(rgb).resize(
        (max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BILINEAR))
    h, w = small.shape[:2]
    s = max(h, w)
    stain = ndimage.gaussian_filter(stain_map(small), max(0.5, SMOOTHING * s))
    if np.ptp(stain) < MIN_CONTRAST:  # a flat field: Otsu would split noise
        return Leukocyte(x=(width - 1) / 2, y=(height - 1) / 2, diameter=float(side), found=False)
    mask = stain > otsu_threshold(stain)
    mask = ndimage.binary_opening(mask, structure=disk(OPENING * s))
    margin = round(CLOSING * s) + 1  # closing near the edge would erode what it cannot see past it
    mask = ndimage.binary_closing(np.pad(mask, margin), structure=disk(CLOSING * s))[margin:-margin, margin:-margin]
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n:
        index = np.arange(1, n + 1)
        areas = ndimage.sum_labels(mask, labels, index)
        centres = np.asarray(ndimage.center_of_mass(mask, labels, index)).reshape(-1, 2)
        near = np.hypot(centres[:, 0] - (h - 1) / 2, centres[:, 1] - (w - 1) / 2) <= CENTRE_REACH * s
        if near.any():
            best = int(np.argmax(np.where(near, areas, -1)))
            cy, cx = centres[best]
            return Leukocyte(x=(cx + 0.5) / factor - 0.5, y=(cy + 0.5) / factor - 0.5,
                             diameter=2 * np.sqrt(areas[best] / np.pi) / factor, found=True)
    return Leukocyte(x=(width - 1) / 2, y=(height - 1) / 2, diameter=float(side), found=False)


def border_colour(rgb: np.ndarray) -> np.ndarray:
    """The median colour of an image's outermost ring of pixels: its smear background, as a fill."""
    rgb = np.asarray(rgb)
    ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(ring, axis=0).astype(rgb.dtype)


def square_crop(rgb: np.ndarray, x: float, y: float, side: int, *, fill: str = "border") -> np.ndarray:
    """The side×side square of an H×W×3 array centred on (x, y); where it reaches past the image it is filled with
    the border's median colour (``fill="border"``) or by mirroring the image (``"reflect"``)."""
    if fill not in FILLS:
        raise NeunnError(f"Unknown fill '{fill}'; use one of {', '.join(FILLS)}.")
    rgb = np.asarray(rgb)
    side = max(1, int(side))
    left, top = int(round(x - side / 2 + 0.5)), int(round(y - side / 2 + 0.5))
    height, width = rgb.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        if fill == "reflect":
            padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
        else:
            padded = np.empty((height + 2 * pad, width + 2 * pad, 3), dtype=rgb.dtype)
            padded[...] = border_colour(rgb)
            padded[pad:pad + height, pad:pad + width] = rgb
        rgb, left, top = padded, left + pad, top + pad
    return np.ascontiguousarray(rgb[top:top + side, left:left + side])


def frame_leukocyte(image: Image.Image, fraction: float, cell: Leukocyte | None = None, *,
                    fill: str = "border") -> Image.Image:
    """A square crop centred on the white cell whose side is its diameter / ``fraction`` (the image unchanged when no
    cell is found); its size in pixels is the crop's, to be resized to the model's input after."""
    if not 0.0 < fraction <= 1.0:
        raise NeunnError(f"The leukocyte's share of the frame must be in (0, 1], got {fraction}.")
    rgb = np.asarray(image.convert("RGB"))
    cell = cell or find_leukocyte(rgb)
    if not cell.found:
        return image
    side = max(2, int(round(cell.diameter / fraction)))
    return Image.fromarray(square_crop(rgb, cell.x, cell.y, side, fill=fill))


def rescale_frame(image: Image.Image, scale: float, *, fill: str = "border") -> Image.Image:
    """The image's central square with its side ``scale`` times the image's longest side: above 1 it is padded (the
    content shrinks in the frame, once resized), below 1 it is cropped. One lab's framing to another's, with one
    ``scale`` for all its images (the ratio of the labs' median leukocyte shares of the frame)."""
    if scale <= 0:
        raise NeunnError(f"The frame scale must be positive, got {scale}.")
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    side = max(1, int(round(max(height, width) * scale)))
    return Image.fromarray(square_crop(rgb, (width - 1) / 2, (height - 1) / 2, side, fill=fill))
