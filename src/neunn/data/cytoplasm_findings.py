"""Findings located in a leukocyte's cytoplasm at the image's own resolution, found without a learnt model: objects
with a position, a size, a contrast and a shape, as a haematologist points at them.

    regions = find_regions(rgb)                      # nucleus, cytoplasm and its optical density (cell_regions)
    spots = find_vacuoles(rgb, regions)              # [Finding("vacuole", y, x, radius, contrast, eccentricity)]
    features = vacuole_features(spots, regions)      # count, largest radius, strongest contrast, area share, pallor

Vacuoles are round, clear holes with a sharp edge: in optical density (OD, summed over the channels against the crop's
own background light) they are round spots paler than the cytoplasm around them. The cytoplasm is found as in
`cell_regions`; each pixel's pallor is 1 − its OD over the cytoplasm's median OD (so how strongly a cell is stained
cancels), and scale-space blob detection (scikit-image's Laplacian of Gaussian) finds round pale spots of a
vacuole's size in it. A spot is kept when its centre lies inside the cytoplasm (not on its rim, where the background
is as pale) and its mean pallor reaches ``MIN_CONTRAST``; its shape is the eccentricity of the pale region around it.
Every length is given for CellaVision's 360 px crops and scaled with the image's side; the work is done on the cell's
bounding box only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import blob_log
from skimage.measure import label, regionprops

from neunn.data.cell_regions import Regions, find_regions, region_outlines
from neunn.data.cytoplasm_pallor import regions_pallor

MIN_SIGMA, MAX_SIGMA, N_SIGMA = 1.5, 5.0, 5  # px at 360 px: blob scales (radius ≈ 1.4 σ: 2–7 px, 0.2–0.7 µm)
LOG_THRESHOLD = 0.04  # least scale-normalised LoG response of a spot, in pallor units
MIN_CONTRAST = 0.3  # least mean pallor inside a spot: at most 70 % of the cytoplasm's median OD
SMOOTHING = 0.7  # px at 360 px: Gaussian sigma of the pallor map, against JPEG and granule noise
FEATURES = ("n_spots", "largest_radius", "strongest_contrast", "spot_area_share", "pallor")


@dataclass(frozen=True)
class Finding:
    """One object found in the cytoplasm: its kind, centre (row, column, px), radius (px), contrast and shape."""

    kind: str
    y: float
    x: float
    radius: float
    contrast: float  # mean pallor inside: 1 − (its OD / the cytoplasm's median OD)
    eccentricity: float  # 0 for a circle, towards 1 for a line

    def as_dict(self) -> dict[str, float | str]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def enclosed(mask: np.ndarray, nucleus: np.ndarray) -> np.ndarray:
    """``mask`` with the holes it encloses (with the nucleus) filled: a vacuole clear enough to fall out of the stained
    cytoplasm is still inside the cell."""
    return ndimage.binary_fill_holes(mask | nucleus) & ~nucleus


def pallor_map(regions: Regions, cytoplasm: np.ndarray | None = None) -> np.ndarray:
    """Each pixel's pallor against the cytoplasm's median OD, in [0, 1], smoothed; 0 outside the cytoplasm (with the
    holes it encloses)."""
    if regions.median_od <= 0:
        return np.zeros_like(regions.od)
    cytoplasm = enclosed(regions.cytoplasm, regions.nucleus) if cytoplasm is None else cytoplasm
    pale = np.clip(1.0 - regions.od / regions.median_od, 0.0, 1.0)
    pale = ndimage.gaussian_filter(pale, max(0.5, SMOOTHING * regions.scale))
    return np.where(cytoplasm, pale, 0.0).astype(np.float32)


def _box(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask)
    return (slice(max(0, rows.min() - margin), rows.max() + margin + 1),
            slice(max(0, cols.min() - margin), cols.max() + margin + 1))


def find_vacuoles(rgb: np.ndarray, regions: Regions | None = None) -> list[Finding]:
    """Round pale spots of a vacuole's size inside the cytoplasm, strongest first."""
    regions = regions if regions is not None else find_regions(np.asarray(rgb))
    if not regions.inner.any() or regions.median_od <= 0:
        return []
    scale = regions.scale
    box = _box(regions.cytoplasm, round(2 * MAX_SIGMA * scale))
    pale = pallor_map(regions)[box]
    inner = enclosed(regions.inner, regions.nucleus)[box]
    blobs = blob_log(pale, min_sigma=MIN_SIGMA * scale, max_sigma=MAX_SIGMA * scale, num_sigma=N_SIGMA,
                     threshold=LOG_THRESHOLD, exclude_border=False)
    yy, xx = np.ogrid[:pale.shape[0], :pale.shape[1]]
    found = []
    for y, x, sigma in blobs:
        if not inner[int(y), int(x)]:
            continue
        radius = float(sigma * np.sqrt(2))
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= radius * radius
        contrast = float(pale[disc].mean())
        if contrast < MIN_CONTRAST:
            continue
        found.append(Finding("vacuole", float(y + box[0].start), float(x + box[1].start), radius, contrast,
                             _eccentricity(pale, disc, int(y), int(x), contrast)))
    return sorted(found, key=lambda f: -f.contrast)


def _eccentricity(pale: np.ndarray, disc: np.ndarray, y: int, x: int, contrast: float) -> float:
    """The eccentricity of the pale region (over half the spot's contrast) that holds the spot's centre."""
    grown = ndimage.binary_dilation(disc, iterations=2)
    labelled = label((pale >= contrast / 2) & grown)
    if labelled[y, x] == 0:
        return 0.0
    props = regionprops((labelled == labelled[y, x]).astype(np.uint8))
    return float(props[0].eccentricity) if props else 0.0


def vacuole_features(spots: list[Finding], regions: Regions) -> dict[str, float]:
    """What a per-cell score is made of: the spots' count, the largest radius (px at 360 px), the strongest contrast,
    the share of the cytoplasm they cover, and the cytoplasm's pallor (as `cytoplasm_pallor` measures it)."""
    area = float(regions.cytoplasm.sum()) or 1.0
    return {"n_spots": float(len(spots)),
            "largest_radius": max((s.radius for s in spots), default=0.0) / regions.scale,
            "strongest_contrast": max((s.contrast for s in spots), default=0.0),
            "spot_area_share": sum(np.pi * s.radius ** 2 for s in spots) / area,
            "pallor": regions_pallor(regions)}


def measure_vacuoles(rgb: np.ndarray) -> tuple[dict[str, float], list[Finding]]:
    """A crop's vacuole features and the spots they were measured from, its regions found once."""
    features, spots, _ = measure_cell(rgb)
    return features, spots


def measure_cell(rgb: np.ndarray, regions: Regions | None = None
                 ) -> tuple[dict[str, float], list[Finding], dict[str, list[list[float]]]]:
    """The vacuole features, the spots and the outlines of the cell and its nucleus (for the tile), the regions found
    once (or given, when something else found them already)."""
    regions = regions if regions is not None else find_regions(np.asarray(rgb))
    spots = find_vacuoles(rgb, regions)
    return vacuole_features(spots, regions), spots, region_outlines(regions)
