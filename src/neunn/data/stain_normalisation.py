"""Stain normalisation: map a smear image's colours onto a reference laboratory's, without labels (Reinhard, Macenko).

    reference = fit_reinhard_reference(training_images)        # LAB means and spreads of the reference lab's cells
    pixels = reinhard(rgb, reference)                          # H×W×3 uint8 with the reference's LAB statistics
    basis = fit_macenko_reference(training_images)             # two stain colours, their strengths, the background
    pixels = macenko(rgb, basis)                               # the image's own two stains redrawn in the reference's

Both take and return H×W×3 uint8 arrays (RGB) and are written in numpy from the papers; nothing is downloaded.

* Reinhard et al. 2001, "Color transfer between images": each CIELAB channel is shifted and scaled so that its mean
  and standard deviation over the image are the reference's. It moves whatever the image holds: a crop that is mostly
  leukocyte gets the statistics of a reference that is mostly background and red cells, and is paled to match.
* Macenko et al. 2009, "A method for normalizing histology slides for quantitative analysis": the optical density
  (OD) of the stained pixels spans a plane; the two extreme directions in that plane are the stains (in a
  May-Grünwald-Giemsa smear, the blue-purple azure/methylene blue of nuclei and the pink eosin of red cells), each
  pixel's concentrations come from least squares, and the image is redrawn with the reference's stain colours and
  concentration scale.

A blood smear's background is not white (PBC's is cream; another lab's may be grey), so Macenko's light intensity
``background`` is estimated per image (a high percentile of each channel) instead of the usual fixed 240: the OD is
then relative to the image's own background, and the redrawn image takes the reference's background colour.

Measured on another lab's cells (docs/results.md, section 5): neither helped a PBC model on its own; Reinhard helped
only together with the lab's framing and BatchNorm statistics, and Macenko's two-stain model also damaged PBC's own
cells (a May-Grünwald-Giemsa smear has more colours than two: eosinophil and basophil granules).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from neunn.errors import NeunnError

# sRGB (D65) to CIE XYZ, and the D65 white point: the standard constants of IEC 61966-2-1 and CIE 15.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27

BACKGROUND_PERCENTILE = 99.0  # of each channel: the image's brightest light, taken as its background
OD_THRESHOLD = 0.15  # Macenko's beta: pixels with less OD in some channel are background, left out of the fit
ANGLE_PERCENTILE = 1.0  # Macenko's alpha: robust extremes of the stain angles
MAX_PERCENTILE = 99.0  # a stain's "full strength" concentration in an image


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise NeunnError(f"Stain normalisation needs an H×W×3 RGB image, got an array of shape {rgb.shape}.")
    return rgb


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an H×W×3 uint8 sRGB image, float64 (L in 0–100)."""
    c = _as_rgb(rgb).astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """The H×W×3 uint8 sRGB image of CIELAB (D65) values; colours outside sRGB are clipped."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f ** 3 > _EPSILON, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    c = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(np.round(c * 255), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class LabStats:
    """Mean and standard deviation of each CIELAB channel: what Reinhard's method matches."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def lab_stats(rgb: np.ndarray) -> LabStats:
    """The CIELAB mean and standard deviation of every pixel of an image."""
    lab = rgb_to_lab(rgb).reshape(-1, 3)
    return LabStats(tuple(lab.mean(0).tolist()), tuple(lab.std(0).tolist()))


def fit_reinhard_reference(images: Iterable[np.ndarray]) -> LabStats:
    """The reference statistics of a laboratory: the average over its images of each image's LAB mean and std."""
    stats = [lab_stats(image) for image in images]
    if not stats:
        raise NeunnError("A Reinhard reference needs at least one image.")
    return LabStats(tuple(np.mean([s.mean for s in stats], 0).tolist()),
                    tuple(np.mean([s.std for s in stats], 0).tolist()))


def reinhard(rgb: np.ndarray, reference: LabStats) -> np.ndarray:
    """The image with each CIELAB channel moved to the reference's mean and standard deviation (uint8 RGB)."""
    lab = rgb_to_lab(rgb)
    mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    scale = np.asarray(reference.std) / np.maximum(std, 1e-6)  # a flat channel keeps its (zero) spread
    return lab_to_rgb((lab - mean) * scale + np.asarray(reference.mean))


@dataclass(frozen=True)
class StainBasis:
    """A lab's two stains as unit OD colours (columns: the bluer, nuclear stain first), their full-strength
    concentrations and the background light of its images."""

    stains: np.ndarray  # 3×2
    max_concentrations: tuple[float, float]
    background: tuple[float, float, float]


def background_light(rgb: np.ndarray) -> np.ndarray:
    """The image's background light per channel: a high percentile of each channel, at least 1."""
    flat = _as_rgb(rgb).reshape(-1, 3).astype(np.float64)
    return np.maximum(np.percentile(flat, BACKGROUND_PERCENTILE, axis=0), 1.0)


def optical_density(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per-pixel OD, −log(I / background), N×3 (clipped at 0: pixels brighter than the background absorb nothing)."""
    flat = _as_rgb(rgb).reshape(-1, 3).astype(np.float64)
    return np.maximum(-np.log(np.maximum(flat, 1.0) / np.asarray(background)), 0.0)


def stain_vectors(od: np.ndarray) -> np.ndarray:
    """Macenko's two stain directions (3×2 unit OD colours, the one absorbing more red first) from stained pixels."""
    stained = od[np.all(od > OD_THRESHOLD, axis=1)]
    if len(stained) < 10:
        raise NeunnError("Too few stained pixels to estimate stain colours (is the image blank?).")
    _, eigenvectors = np.linalg.eigh(np.cov(stained.T))
    plane = eigenvectors[:, [2, 1]]  # the two largest eigenvectors (eigh sorts ascending) span the stain plane
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # an eigenvector's sign is arbitrary: point into OD
    projected = stained @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    vectors = [plane @ np.array([np.cos(a), np.sin(a)]) for a in (low, high)]
    vectors = [v * np.sign(v.sum()) / np.linalg.norm(v) for v in vectors]
    vectors.sort(key=lambda v: -v[0])
    return np.stack(vectors, axis=1)


def concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Each pixel's two stain concentrations (N×2), by least squares on its OD."""
    return np.linalg.lstsq(stains, od.T, rcond=None)[0].T


def macenko_basis(rgb: np.ndarray) -> StainBasis:
    """One image's stain basis: its stain colours, full-strength concentrations and background light."""
    background = background_light(rgb)
    od = optical_density(rgb, background)
    stains = stain_vectors(od)
    top = np.percentile(concentrations(od, stains), MAX_PERCENTILE, axis=0)
    return StainBasis(stains, (float(top[0]), float(top[1])), tuple(background.tolist()))


def fit_macenko_reference(images: Iterable[np.ndarray], *, pixels_per_image: int = 2000, seed: int = 0) -> StainBasis:
    """A laboratory's stain basis: stain colours from a sample of every image's stained pixels pooled, and the median
    of the images' full-strength concentrations and background light."""
    rng = np.random.default_rng(seed)
    samples, backgrounds = [], []
    for image in images:
        background = background_light(image)
        od = optical_density(image, background)
        samples.append(od[rng.choice(len(od), size=min(pixels_per_image, len(od)), replace=False)])
        backgrounds.append(background)
    if not samples:
        raise NeunnError("A Macenko reference needs at least one image.")
    stains = stain_vectors(np.concatenate(samples))
    tops = [np.percentile(concentrations(od, stains), MAX_PERCENTILE, axis=0) for od in samples]
    top, background = np.median(tops, axis=0), np.median(backgrounds, axis=0)
    return StainBasis(stains, (float(top[0]), float(top[1])), tuple(background.tolist()))


def macenko(rgb: np.ndarray, reference: StainBasis) -> np.ndarray:
    """The image redrawn with the reference's stain colours, concentration scale and background (uint8 RGB)."""
    rgb = _as_rgb(rgb)
    source = macenko_basis(rgb)
    od = optical_density(rgb, np.asarray(source.background))
    scale = np.asarray(reference.max_concentrations) / np.maximum(np.asarray(source.max_concentrations), 1e-6)
    redrawn_od = (concentrations(od, source.stains) * scale) @ reference.stains.T
    redrawn = np.asarray(reference.background) * np.exp(-redrawn_od)
    return np.clip(np.round(redrawn), 0, 255).astype(np.uint8).reshape(rgb.shape)
