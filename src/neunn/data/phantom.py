"""Procedural phantom of the seven neutrophil classes, for NeuNN's demo and tests; always labelled synthetic.

`render_cell(label, seed)` draws one crop in the manner of a CellaVision DM96 May-Grünwald-Giemsa image: a segmented
neutrophil centred on a cream background among red cells, with seeded variation of size, rotation, lobes, stain, light,
focus and noise, plus a small class cue (see docs/phantom.md). `write_phantom_dataset(out, per_class=300)` writes a
folder-per-class PNG tree with manifest.json and SYNTHETIC.md. `cell_seed(label, index)` names each image's seed.

Images are built in optical density (Beer-Lambert): structures paint a per-channel density, and light passing through is
`background * exp(-density)`, so overlaps darken as on a slide. Geometry is in fractions of the image, so every size
shows the same cell. The same seed gives the same cell under every label; only the cue (and granularity) differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from neunn import NEUTROPHIL_CLASSES
from neunn.errors import NeunnError

GENERATOR = "neunn.phantom"
GENERATOR_VERSION = "1"
MIN_SIZE = 32

_WHITE = np.array([252.0, 233.0, 212.0])  # empty-slide colour under the nominal lamp; all targets are relative to it


def _od(rgb: tuple[int, int, int]) -> np.ndarray:
    """Optical density that turns the empty-slide colour into `rgb`."""
    return (-np.log(np.asarray(rgb, dtype=np.float64) / _WHITE)).astype(np.float32)


_WARMTH = np.array([1.0, 0.0, -1.2])  # lamp colour drifts between warmer and cooler, not towards green

_RBC = _od((212, 168, 172))
_CYTOPLASM = _od((228, 200, 212))
_GRANULE = _od((178, 128, 182))
_NUCLEUS = _od((92, 38, 134))
_DOHLE = _od((172, 178, 206))
_HOWELL_JOLLY = _od((80, 30, 112))
_GREEN_BLUE = _od((112, 178, 168))
_BACTERIUM = _od((64, 36, 100))
_VACUOLE = _od((250, 231, 211))
_CRYO = _od((178, 170, 208))


@dataclass(frozen=True)
class _Cell:
    """Geometry of one neutrophil, in pixels."""

    cx: float
    cy: float
    radius: float
    lobes: np.ndarray  # (n, 7): centre x, y, semi-axis along the arc's radius, across it, angle, bulge x, y
    strand_width: float


@dataclass(frozen=True)
class _Look:
    """Nuisance appearance of one image: stain, lamp, focus and noise."""

    eosin: np.ndarray  # (3,) multiplies red-cell and cytoplasm densities
    azure: np.ndarray  # (3,) multiplies nucleus, granule and inclusion densities
    lamp: np.ndarray  # (3,) background colour
    tilt: tuple[float, float]  # illumination gradient along x and y, as a fraction of brightness across the image
    cytoplasm: float  # how deeply the cytoplasm takes the stain, independent of the class
    blur: float  # Gaussian sigma in pixels at 128 px
    noise: float  # pixel noise sigma in 8-bit levels


def _check_label(label: str) -> int:
    if label not in NEUTROPHIL_CLASSES:
        raise NeunnError(f"Unknown neutrophil class {label!r}; expected one of {', '.join(NEUTROPHIL_CLASSES)}.")
    return NEUTROPHIL_CLASSES.index(label)


def _check_whole(value: object, what: str, least: int) -> int:
    """`value` as an int if it is a whole number (not a bool) of at least `least`, else a NeunnError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise NeunnError(f"{what} must be an integer of at least {least}, got {value!r}.")
    return int(value)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _box(size: int, cx: float, cy: float, reach: float) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]] | None:
    """Pixel-centre coordinates (column, row vectors) and slices of the square of half-side `reach` around a point."""
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    return xs, ys, (slice(y0, y1), slice(x0, x1))


def _ellipse(xs, ys, cx, cy, a, b, angle, edge) -> np.ndarray:
    """Soft ellipse mask: 1 inside, 0 outside, a linear ramp about `edge` pixels wide."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(((dx * c + dy * s) / a) ** 2 + ((dy * c - dx * s) / b) ** 2)
    return np.clip((1.0 - rho) * (math.sqrt(a * b) / edge) + 0.5, 0.0, 1.0)


def _segment_distance(xs, ys, p, q) -> np.ndarray:
    """Distance in pixels from each point to the segment from p to q."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    t = np.clip(((xs - p[0]) * dx + (ys - p[1]) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    return np.hypot(xs - p[0] - t * dx, ys - p[1] - t * dy)


def _capsule(xs, ys, p, q, half_width, edge) -> np.ndarray:
    """Soft mask of a segment from p to q thickened to `half_width` pixels."""
    return np.clip((half_width - _segment_distance(xs, ys, p, q)) / edge + 0.5, 0.0, 1.0)


def _paint(od: np.ndarray, where: tuple[slice, slice], mask: np.ndarray, target: np.ndarray, alpha: float = 1.0):
    """Blend the density inside `where` towards `target` in proportion to `mask`."""
    region = od[where]
    region += (alpha * mask)[..., None] * (target - region)


def _draw_look(rng: np.random.Generator) -> _Look:
    # Bounded draws only: a Gaussian tail once in a few thousand images tints a whole slide green.
    strength = rng.uniform(0.8, 1.25)
    hue = rng.uniform(-0.15, 0.15, 3)
    balance = rng.uniform(0.85, 1.2)
    return _Look(
        eosin=(strength * (1.0 + hue + rng.uniform(-0.06, 0.06, 3))).astype(np.float32),
        azure=(strength * balance * (1.0 + hue + rng.uniform(-0.08, 0.08, 3))).astype(np.float32),
        lamp=(_WHITE * (1.0 + rng.uniform(-0.045, 0.045) * _WARMTH + rng.uniform(-0.015, 0.015, 3))
              * rng.uniform(0.95, 1.01)).astype(np.float32),
        tilt=(rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)),
        cytoplasm=rng.uniform(0.75, 1.35),
        blur=rng.uniform(0.35, 1.0),
        noise=rng.uniform(1.5, 5.0),
    )


def _draw_cell(rng: np.random.Generator, size: int) -> _Cell:
    """Cell 55-70 % of the width, near the centre, with 2-5 lobes on an arc joined by thin strands."""
    radius = rng.uniform(0.275, 0.35) * size
    cx, cy = (0.5 + rng.uniform(-0.035, 0.035, 2)) * size
    n = int(rng.choice([2, 3, 4, 5], p=[0.15, 0.4, 0.33, 0.12]))
    arc_radius = rng.uniform(0.36, 0.46) * radius
    ax, ay = cx + rng.normal(0.0, 0.05) * radius, cy + rng.normal(0.0, 0.05) * radius
    step = rng.uniform(1.35, 1.65) if n < 4 else rng.uniform(1.05, 1.2)
    start = rng.uniform(0.0, 2 * math.pi)
    angles = start + step * np.arange(n) + rng.normal(0.0, 0.12, n)
    radial = rng.uniform(0.23, 0.3, n) * radius * (1.14 - 0.06 * n)
    across = radial * rng.uniform(0.6, 0.8, n)
    x, y = ax + arc_radius * np.cos(angles), ay + arc_radius * np.sin(angles)
    # A second, smaller ellipse beside each lobe makes it bean-shaped rather than a perfect oval.
    side = rng.choice([-1.0, 1.0], n) * rng.uniform(0.25, 0.5, n) * across
    outward = rng.uniform(-0.3, 0.3, n) * radial
    bulge_x = x + outward * np.cos(angles) - side * np.sin(angles)
    bulge_y = y + outward * np.sin(angles) + side * np.cos(angles)
    lobes = np.stack([x, y, radial, across, angles + rng.normal(0.0, 0.25, n), bulge_x, bulge_y], axis=1)
    return _Cell(float(cx), float(cy), float(radius), lobes, max(0.7, 0.0075 * size))


def _paint_red_cells(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """Several red cells with a paler centre; some cut by the frame, some partly behind the neutrophil."""
    size = od.shape[0]
    wanted = int(rng.integers(3, 10))
    spots = rng.uniform(-0.1, 1.1, (40, 2)) * size
    shapes = rng.uniform(0.0, 1.0, (40, 4))
    placed = 0
    for (x, y), (r, squash, pallor, turn) in zip(spots, shapes, strict=True):
        if placed == wanted:
            break
        r_px = (0.15 + 0.04 * r) * size
        if math.hypot(x - cell.cx, y - cell.cy) < cell.radius + 0.35 * r_px:
            continue  # would hide behind the neutrophil entirely
        found = _box(size, x, y, r_px * 1.1)
        placed += 1
        if found is None:
            continue
        xs, ys, where = found
        disc = _ellipse(xs, ys, x, y, r_px, r_px * (0.9 + 0.1 * squash), turn * math.pi, 1.2)
        centre = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (0.45 * r_px) ** 2)
        od[where] += (disc * (1.0 - (0.25 + 0.25 * pallor) * centre))[..., None] * (_RBC * look.eosin)


def _cell_mask(cell: _Cell, rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Soft mask of the slightly irregular cell outline, and the part of the image it covers."""
    xs, ys, where = _box(size, cell.cx, cell.cy, cell.radius * 1.13)
    xs, ys = xs - cell.cx, ys - cell.cy
    theta = np.arctan2(ys, xs)
    wobble = 1.0 + sum(rng.uniform(-0.04, 0.04) * np.cos(k * theta + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
    return np.clip((cell.radius * wobble - np.hypot(xs, ys)) / 1.5 + 0.5, 0.0, 1.0), where


def _nucleus_mask(cell: _Cell, size: int) -> np.ndarray:
    """Soft mask of the lobes and the strands joining consecutive lobes."""
    mask = np.zeros((size, size), dtype=np.float32)
    for x, y, radial, across, angle, bulge_x, bulge_y in cell.lobes:
        found = _box(size, x, y, radial * 1.6 + 2)
        if found:
            xs, ys, where = found
            lobe = np.maximum(_ellipse(xs, ys, x, y, radial, across, angle, 1.3),
                              _ellipse(xs, ys, bulge_x, bulge_y, 0.8 * radial, 0.8 * across, angle + 0.5, 1.3))
            np.maximum(mask[where], lobe, out=mask[where])
    for (x0, y0, *_), (x1, y1, *_) in zip(cell.lobes[:-1], cell.lobes[1:], strict=True):
        found = _box(size, (x0 + x1) / 2, (y0 + y1) / 2, math.hypot(x1 - x0, y1 - y0) / 2 + 2)
        if found:
            xs, ys, where = found
            strand = _capsule(xs, ys, (x0, y0), (x1, y1), cell.strand_width, 1.0)
            np.maximum(mask[where], strand, out=mask[where])
    return mask


def _smooth_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """Values in [0, 1) varying smoothly over about size/cells pixels."""
    coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def _granules(rng: np.random.Generator, density: float, size: int) -> np.ndarray:
    """Speckle of granules about one 128-px pixel wide covering roughly `density` of the area, values in [0, 1]."""
    n = min(size, 128)  # granules keep their physical size above 128 px
    draw = rng.random((n, n), dtype=np.float32)
    speckle = np.where(draw < density, 1.0 - draw / (2.0 * density), 0.0).astype(np.float32)
    if n == size:
        return speckle
    return np.asarray(Image.fromarray(speckle, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def _nucleus_gap(cell: _Cell, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Lower bound of each point's distance in pixels to the nucleus."""
    x, y, radial, across, _, bulge_x, bulge_y = (cell.lobes[:, k][None, :] for k in range(7))
    extent = np.maximum(radial, across)
    gap = np.minimum(np.hypot(px[:, None] - x, py[:, None] - y) - extent,
                     np.hypot(px[:, None] - bulge_x, py[:, None] - bulge_y) - 0.8 * extent).min(axis=1)
    for p, q in zip(cell.lobes[:-1, :2], cell.lobes[1:, :2], strict=True):
        gap = np.minimum(gap, _segment_distance(px, py, p, q) - cell.strand_width)
    return gap


def _free_spots(rng: np.random.Generator, cell: _Cell, count: int, reach: tuple[float, float],
                clearance: float, spacing: float) -> list[tuple[float, float]]:
    """Up to `count` cytoplasm points at `reach` (fractions of the radius), `clearance` px off the nucleus and `spacing`
    px apart.

    Always returns at least one point (the one farthest from the nucleus) so that every image carries its class cue.
    """
    r = rng.uniform(*reach, 48) * cell.radius
    theta = rng.uniform(0.0, 2 * math.pi, 48)
    px, py = cell.cx + r * np.cos(theta), cell.cy + r * np.sin(theta)
    gap = _nucleus_gap(cell, px, py)
    spots: list[tuple[float, float]] = []
    for x, y, g in zip(px.tolist(), py.tolist(), gap.tolist(), strict=True):
        if g >= clearance and all(math.hypot(x - sx, y - sy) >= spacing for sx, sy in spots):
            spots.append((x, y))
            if len(spots) == count:
                break
    return spots or [(float(px[gap.argmax()]), float(py[gap.argmax()]))]


def _paint_dohle(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """1-3 pale grey-blue patches near the cell edge, elongated along it."""
    size = od.shape[0]
    for x, y in _free_spots(rng, cell, int(rng.integers(1, 4)), (0.7, 0.84), 0.03 * size, 0.12 * size):
        a = rng.uniform(0.035, 0.055) * size
        along = math.atan2(y - cell.cy, x - cell.cx) + math.pi / 2 + rng.normal(0.0, 0.3)
        xs, ys, where = _box(size, x, y, a + 3)
        mask = _ellipse(xs, ys, x, y, a, a * rng.uniform(0.45, 0.7), along, 2.0)
        _paint(od, where, mask, _DOHLE * look.azure, rng.uniform(0.6, 0.8))


def _paint_howell_jolly(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """One or two small round dense purple dots in the cytoplasm, away from the nucleus."""
    size = od.shape[0]
    for x, y in _free_spots(rng, cell, int(rng.integers(1, 3)), (0.35, 0.8), 0.05 * size, 0.1 * size):
        r = rng.uniform(0.014, 0.022) * size
        xs, ys, where = _box(size, x, y, r + 2)
        _paint(od, where, _ellipse(xs, ys, x, y, r, r * rng.uniform(0.85, 1.0), 0.0, 0.9), _HOWELL_JOLLY * look.azure)


def _paint_green_blue(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """1-4 small green-blue refractile globules, each with a slight bright rim."""
    size = od.shape[0]
    for x, y in _free_spots(rng, cell, int(rng.integers(1, 5)), (0.3, 0.82), 0.03 * size, 0.06 * size):
        r = rng.uniform(0.016, 0.028) * size
        xs, ys, where = _box(size, x, y, r + 3)
        _paint(od, where, _ellipse(xs, ys, x, y, r + 1.0, r + 1.0, 0.0, 1.0), _VACUOLE, 0.7)
        _paint(od, where, _ellipse(xs, ys, x, y, r, r, 0.0, 1.0), _GREEN_BLUE * look.azure, rng.uniform(0.75, 0.95))


def _paint_bacteria(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """Small dark rods or cocci, mostly inside pale clear vacuoles."""
    size = od.shape[0]
    vacuoles = _free_spots(rng, cell, int(rng.integers(1, 4)), (0.35, 0.78), 0.03 * size, 0.1 * size)
    organisms = []
    for x, y in vacuoles:
        r = rng.uniform(0.04, 0.055) * size
        xs, ys, where = _box(size, x, y, r + 2)
        _paint(od, where, _ellipse(xs, ys, x, y, r, r * rng.uniform(0.8, 1.0), rng.uniform(0, math.pi), 1.2),
               _VACUOLE, 0.9)
        for _ in range(int(rng.integers(1, 4))):
            organisms.append((x + rng.normal(0.0, 0.25) * r, y + rng.normal(0.0, 0.25) * r))
    if rng.random() < 0.4:  # now and then one organism lies free in the cytoplasm
        organisms += _free_spots(rng, cell, 1, (0.4, 0.85), 0.02 * size, 0.0)
    half_width = max(0.65, 0.0065 * size)
    for x, y in organisms:
        half_length = rng.uniform(0.0, 0.018) * size if rng.random() < 0.6 else 0.0  # a rod, else a coccus
        turn = rng.uniform(0.0, math.pi)
        p = (x - half_length * math.cos(turn), y - half_length * math.sin(turn))
        q = (x + half_length * math.cos(turn), y + half_length * math.sin(turn))
        xs, ys, where = _box(size, x, y, half_length + half_width + 2)
        _paint(od, where, _capsule(xs, ys, p, q, half_width * 1.2, 0.8), _BACTERIUM * look.azure, 0.9)


def _paint_cryo(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """1-3 pale blue-lilac amorphous deposits: clusters of soft overlapping blobs."""
    size = od.shape[0]
    for x, y in _free_spots(rng, cell, int(rng.integers(1, 4)), (0.35, 0.8), 0.03 * size, 0.1 * size):
        xs, ys, where = _box(size, x, y, 0.08 * size)
        mask = np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
        for bx, by in rng.normal(0.0, 0.02, (int(rng.integers(3, 6)), 2)) * size:
            r = rng.uniform(0.018, 0.032) * size
            np.maximum(mask, _ellipse(xs, ys, x + bx, y + by, r, r * rng.uniform(0.6, 1.0),
                                      rng.uniform(0, math.pi), 2.5), out=mask)
        _paint(od, where, mask, _CRYO * look.azure, rng.uniform(0.55, 0.75))


def _no_inclusion(od: np.ndarray, rng: np.random.Generator, cell: _Cell, look: _Look) -> None:
    """Normal and hypogranulated cells carry no inclusion; their cue is the granularity."""


_CUES = {"NEU": _no_inclusion, "HYP": _no_inclusion, "CRY": _paint_cryo, "DB": _paint_dohle,
         "HJBLI": _paint_howell_jolly, "GBI": _paint_green_blue, "BAC": _paint_bacteria}


def _expose(od: np.ndarray, look: _Look, rng: np.random.Generator) -> np.ndarray:
    """Light through the density under a tilted lamp, then focus blur and sensor noise, as 8-bit RGB."""
    size = od.shape[0]
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    light = 1.0 + look.tilt[0] * ramp[None, :] + look.tilt[1] * ramp[:, None]
    rgb = np.exp(np.negative(od, out=od), out=od)  # in place: this runs on every pixel of every image
    rgb *= look.lamp
    rgb *= light[..., None]
    rgb += 0.5
    image = Image.fromarray(np.clip(rgb, 0, 255, out=rgb).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(look.blur * size / 128))
    noisy = rng.standard_normal((size, size, 3), dtype=np.float32)
    noisy *= look.noise
    noisy += np.asarray(image, dtype=np.float32)
    noisy += 0.5
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def render_cell(label: str, seed: int, size: int = 128) -> np.ndarray:
    """A synthetic size x size x 3 uint8 crop of a neutrophil of class `label`; equal arguments give equal bytes."""
    class_index = _check_label(label)
    size = _check_whole(size, "The phantom image size in pixels", MIN_SIZE)
    seed = _check_whole(seed, "The phantom seed", 0)
    # Separate streams: the cell's shape and look do not depend on the label, and textures may depend on the size.
    shape_rng, texture_rng, cue_rng = _rng(seed, 0), _rng(seed, 1), _rng(seed, 2, class_index)
    look = _draw_look(shape_rng)
    cell = _draw_cell(shape_rng, size)
    od = np.zeros((size, size, 3), dtype=np.float32)
    _paint_red_cells(od, shape_rng, cell, look)
    cell_mask, inside = _cell_mask(cell, shape_rng, size)  # the neutrophil's paint stays inside this box
    mottle = look.cytoplasm * (0.88 + 0.24 * _smooth_noise(texture_rng, 6, size)[inside])
    _paint(od, inside, cell_mask, (_CYTOPLASM * look.eosin) * mottle[..., None], 0.93)
    density, strength = shape_rng.uniform(0.16, 0.3), shape_rng.uniform(0.35, 0.6)  # normal granulation
    if label == "HYP":
        density, strength = cue_rng.uniform(0.015, 0.05), cue_rng.uniform(0.2, 0.35)
    granules = _granules(texture_rng, density, size)[inside]
    _paint(od, inside, cell_mask * granules, _GRANULE * look.azure, strength)
    _CUES[label](od, cue_rng, cell, look)
    chromatin = 0.7 + 0.3 * _smooth_noise(texture_rng, 7, size) + 0.25 * _smooth_noise(texture_rng, 22, size)
    nucleus = _nucleus_mask(cell, size)[inside]
    _paint(od, inside, nucleus, (_NUCLEUS * look.azure) * chromatin[inside][..., None], 0.97)
    return _expose(od, look, texture_rng)


def cell_seed(label: str, index: int, base_seed: int = 0) -> int:
    """The seed of image `index` of class `label` in a phantom set made with `base_seed`, the same on every machine."""
    _check_label(label)
    digest = hashlib.sha256(f"{GENERATOR}/{int(base_seed)}/{label}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _resolve_counts(per_class: int | Mapping[str, int]) -> dict[str, int]:
    """Images per class for all seven classes; a mapping may leave classes out (they get none)."""
    if isinstance(per_class, Mapping):
        for label in per_class:
            _check_label(label)
        counts = {label: per_class.get(label, 0) for label in NEUTROPHIL_CLASSES}
    else:
        counts = dict.fromkeys(NEUTROPHIL_CLASSES, per_class)
    return {label: _check_whole(count, f"The number of {label} phantom images", 0) for label, count in counts.items()}


def _phantom_manifest(root: Path) -> dict | None:
    """The manifest of the phantom set in `root`, or None if `root` holds none."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == GENERATOR else None


def _manifest(counts: dict[str, int], seed: int, size: int, complete: bool) -> dict:
    return {"synthetic": True, "generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "size": size,
            "counts": counts, "complete": complete}


def _synthetic_note(counts: dict[str, int], seed: int, size: int) -> str:
    lines = [f"- {label}: {count}" for label, count in counts.items()]
    return "\n".join([
        "# SYNTHETIC DATA — not real cells",
        "",
        "Every image in this folder is a procedurally generated phantom of a May-Grünwald-Giemsa neutrophil crop,",
        f"drawn by {GENERATOR} version {GENERATOR_VERSION} (NeuNN). It is for demos and tests only: a model trained or",
        "scored on it says nothing about real blood smears.",
        "",
        f"- seed: {seed}",
        f"- size: {size} x {size} px",
        "- images per class:",
        *["  " + line for line in lines],
        "",
        "Image `<CLASS>/phantom_<CLASS>_<index>.png` is",
        f"`neunn.data.phantom.render_cell(CLASS, cell_seed(CLASS, index, {seed}), {size})`.",
        "",
    ])


def _remove_stale(folder: Path, label: str, keep: int) -> None:
    """Delete earlier phantom images of `label` beyond the first `keep`, so the folder matches the manifest."""
    if not folder.is_dir():
        return
    pattern = re.compile(rf"phantom_{re.escape(label)}_(\d+)\.png")
    for path in folder.iterdir():
        found = pattern.fullmatch(path.name)
        if found and int(found.group(1)) >= keep:
            path.unlink()
    if keep == 0 and not any(folder.iterdir()):
        folder.rmdir()


def write_phantom_dataset(out: str | os.PathLike, *, per_class: int | Mapping[str, int], seed: int = 0,
                          size: int = 128, progress: bool = False) -> dict[str, int]:
    """Write a folder-per-class phantom set of lossless PNGs with manifest.json and SYNTHETIC.md; return the counts.

    A folder that already holds the same complete set (same version, seed, size and counts) is left as it is.
    """
    counts = _resolve_counts(per_class)
    size = _check_whole(size, "The phantom image size in pixels", MIN_SIZE)
    seed, root = _check_whole(seed, "The phantom base seed", 0), Path(out)
    if root.exists() and not root.is_dir():
        raise NeunnError(f"Cannot write the phantom dataset to {root}: it exists and is not a folder.")
    existing = _phantom_manifest(root)
    if root.is_dir() and any(root.iterdir()) and existing is None:
        raise NeunnError(f"Refusing to write the phantom into {root}: it is not empty and not a phantom dataset.")
    names = {label: [root / label / f"phantom_{label}_{i:05d}.png" for i in range(n)] for label, n in counts.items()}
    if existing == _manifest(counts, seed, size, True) and all(p.is_file() for paths in names.values() for p in paths):
        return counts  # the same complete set is already there (renders are deterministic)
    root.mkdir(parents=True, exist_ok=True)
    # The manifest goes first, marked incomplete, so that an interrupted run can be resumed into the same folder.
    (root / "manifest.json").write_text(json.dumps(_manifest(counts, seed, size, False), indent=2) + "\n", "utf-8")
    bar = _progress_bar(sum(counts.values())) if progress else None
    for label, paths in names.items():
        _remove_stale(root / label, label, len(paths))
        if paths:
            (root / label).mkdir(exist_ok=True)
        for index, path in enumerate(paths):
            pixels = render_cell(label, cell_seed(label, index, seed), size)
            Image.fromarray(pixels).save(path, format="PNG", compress_level=4)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    (root / "SYNTHETIC.md").write_text(_synthetic_note(counts, seed, size), encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps(_manifest(counts, seed, size, True), indent=2) + "\n", "utf-8")
    return counts


def _progress_bar(total: int):
    from tqdm import tqdm  # imported here: only progress display needs it

    return tqdm(total=total, desc="phantom", unit="img", file=sys.stderr)
