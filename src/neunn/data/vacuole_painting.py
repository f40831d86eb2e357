"""Vacuole painting: synthesise vacuolated neutrophils by painting a few pale, round holes into normal ones' cytoplasm.

    painted = paint_vacuoles(rgb, np.random.default_rng(0))   # H×W×3 uint8 copy with 2–6 soft pale vacuoles
    write_painted_folder(normal_paths, Path("painted"), class_name="vacuolated", n=500, seed=0)
    # painted/vacuolated/painted_000000.png ... and painted/manifest.json {"synthetic": true, ...}

A paste-in arm for a rare class: the folder it writes is a synthetic source (``--synthetic painted/``) added to the
training split only. It is calibrated on CellaVision May-Grünwald-Giemsa crops of 360 px, where a vacuole is a pale,
white to faintly bluish, soft-edged round hole of about 3–12 px across in the lilac granular cytoplasm, a few per
cell; every length is a share of the image's side, so other sizes get the same cell.

The nucleus and the cytoplasm are found without a learnt model (`cell_regions`). A vacuole's centre is drawn where the
whole disc fits inside the cytoplasm, so it never touches the nucleus, the background or another vacuole. It is
painted in optical density: the stain inside the disc is scaled down towards the image's own brightest light (slightly
bluish), with a soft edge, a drawn opacity, a trace of grain and sometimes a faint darker rim. Where no nucleus is
found, a nucleus-sized disc at the centre stands in for it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from neunn.data.cell_regions import (
    background_light,
    find_cytoplasm,
    find_nucleus,
    image_scale,
    stand_in_nucleus,
)
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.errors import NeunnError
from neunn.log import say

GENERATOR = "vacuole-painting"
COUNTS = (2, 3, 4, 5, 6)  # vacuoles per cell ...
COUNT_WEIGHTS = (0.22, 0.26, 0.22, 0.17, 0.13)  # ... and how often each count is drawn
RADIUS_MEDIAN = 3.3  # px at REFERENCE_SIDE; radii are log-normal around it ...
RADIUS_SPREAD = 0.4  # ... with this sigma (of the log) ...
RADIUS_RANGE = (1.5, 7.0)  # ... and clipped to this range (3–14 px across)
EDGE_SOFTNESS = (1.0, 2.0)  # px at REFERENCE_SIDE: half-width of the edge's ramp from the hole to the cytoplasm
MIN_RADIUS, MIN_SOFTNESS = 1.0, 0.5  # px, at any size: smaller would not show on a small image
JITTER = 0.5  # px: the most a vacuole's centre moves off its pixel's centre, so small discs vary in shape
ROUNDNESS = (0.8, 1.0)  # short over long axis: a vacuole is round, not a perfect circle
OPACITY = (0.55, 0.85)  # share of the stain that a vacuole takes away at its centre
BLUE_TINT = (0.0, 0.04)  # how much redder light a vacuole loses (a faint blue cast); the blue and green stay
RIM_CHANCE = 0.4  # share of vacuoles with a faint darker rim ...
RIM_DENSITY = (0.03, 0.08)  # ... whose extra optical density (on every channel) is drawn from this range
GRAIN = 1.5  # standard deviation (8-bit levels) of the grain left inside a vacuole
NUCLEUS_GAP = 1.0  # px at REFERENCE_SIDE: the least cytoplasm kept between a vacuole's outer edge and the nucleus
PLACEMENT_TRIES = 3  # a vacuole that does not fit is shrunk (to 0.7 of its radius) and tried again, this often


def paint_vacuoles(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """H×W×3 uint8 in, a copy with 2–6 pale round vacuoles (count drawn by COUNT_WEIGHTS, radii log-normal) painted
    into the cytoplasm; fewer only where the cytoplasm has no room left for one."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise NeunnError(f"Vacuoles are painted on H×W×3 uint8 images, got {rgb.dtype} of shape {rgb.shape}.")
    scale = image_scale(rgb)
    light = background_light(rgb)
    nucleus = find_nucleus(rgb)
    if not nucleus.any():
        nucleus = stand_in_nucleus(rgb)
    # Distance from each pixel to the nearest place a vacuole must not reach: the nucleus, background, red cells.
    room = ndimage.distance_transform_edt(find_cytoplasm(rgb, nucleus, light))
    gap = NUCLEUS_GAP * scale + JITTER  # the centre may move by up to JITTER px (under one pixel's diagonal)

    out = rgb.astype(np.float64)
    count = int(rng.choice(COUNTS, p=COUNT_WEIGHTS))
    low, high = RADIUS_RANGE
    for _ in range(count):
        radius = max(MIN_RADIUS, float(np.clip(RADIUS_MEDIAN * np.exp(rng.normal(0.0, RADIUS_SPREAD)), low, high))
                     * scale)
        soft = max(MIN_SOFTNESS, rng.uniform(*EDGE_SOFTNESS) * scale)
        for _ in range(PLACEMENT_TRIES):
            fits = np.flatnonzero(room >= radius + soft + gap)
            if fits.size:
                break
            radius = max(MIN_RADIUS, low * scale, radius * 0.7)
        else:
            continue
        cy, cx = np.unravel_index(fits[rng.integers(fits.size)], room.shape)
        _paint_one(out, float(cy), float(cx), radius, soft, light, rng, scale)
        # No later vacuole overlaps this one: the room around it shrinks to its distance from the disc's edge.
        yy, xx = np.ogrid[:room.shape[0], :room.shape[1]]
        room = np.minimum(room, np.maximum(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - radius - soft, 0.0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _paint_one(out: np.ndarray, cy: float, cx: float, radius: float, soft: float, light: np.ndarray,
               rng: np.random.Generator, scale: float) -> None:
    """Paint one soft-edged vacuole centred at (cy, cx) into ``out`` (float H×W×3, changed in place)."""
    reach = int(np.ceil(radius + soft)) + 1
    top, left = max(0, int(cy) - reach), max(0, int(cx) - reach)
    bottom, right = min(out.shape[0], int(cy) + reach + 1), min(out.shape[1], int(cx) + reach + 1)
    patch = out[top:bottom, left:right]
    yy, xx = np.mgrid[top:bottom, left:right]
    # The centre is jittered within its pixel so that small discs are not all the same nine pixels.
    jy, jx = rng.uniform(-JITTER, JITTER, 2) / np.sqrt(2)
    # An ellipse at a drawn angle: its long semi-axis is the radius (so it stays inside the room it was placed in).
    dy, dx = yy - cy - jy, xx - cx - jx
    angle, roundness = rng.uniform(0.0, np.pi), rng.uniform(*ROUNDNESS)
    along, across = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
    r = np.hypot(along, across / roundness)
    t = np.clip((radius + soft - r) / (2 * soft), 0.0, 1.0)
    alpha = rng.uniform(*OPACITY) * t * t * (3 - 2 * t)  # smoothstep: full inside, nothing past radius + soft
    hole = light * np.array([1.0 - rng.uniform(*BLUE_TINT), 1.0, 1.0])
    od = -np.log(np.clip(patch, 1.0, None) / hole)
    od = od * (1.0 - alpha[..., None])
    if rng.random() < RIM_CHANCE:
        ring = np.exp(-0.5 * ((r - radius - 0.3 * soft) / (0.6 * scale + 0.4 * soft)) ** 2) * (alpha > 0)
        od = od + rng.uniform(*RIM_DENSITY) * ring[..., None]
    painted = hole * np.exp(-od) + rng.normal(0.0, GRAIN, patch.shape) * alpha[..., None]
    inside = alpha > 0
    patch[inside] = painted[inside]


def write_painted_folder(sources: list[Path], out: Path, *, class_name: str, n: int, seed: int = 0) -> Path:
    """Write n painted images (cycling over sources in a seeded random order) as OUT/<class_name>/painted_000000.png ...
    and OUT/manifest.json {"synthetic": true, "generator": "vacuole-painting", "class": class_name, "n": n,
    "seed": seed, "sources": [str paths]}; returns OUT. Written into a temporary sibling folder then renamed (atomic);
    if OUT/manifest.json already exists, return OUT untouched (resumable). Unreadable/corrupt source images are skipped
    and named once, and if none is readable NeunnError is raised."""
    out = Path(out)
    if (out / "manifest.json").is_file():
        return out
    if not class_name or class_name in (".", "..") or "/" in class_name or os.sep in class_name:
        raise NeunnError(f"The class of painted images must be a plain folder name, got '{class_name}'.")
    if n < 1:
        raise NeunnError(f"The number of painted images must be at least 1, got {n}.")
    sources = [Path(s) for s in sources]
    if not sources:
        raise NeunnError("There are no source images to paint vacuoles into.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NeunnError(f"Refusing to write painted images to {out}: it exists and is not a painted folder "
                         "(it has no manifest.json).")
    order = np.random.default_rng(seed).permutation(len(sources))
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / class_name).mkdir(parents=True)
        unreadable: set[int] = set()
        written, turn = 0, 0
        while written < n:
            if len(unreadable) == len(sources):
                raise NeunnError(f"None of the {len(sources)} source image(s) to paint vacuoles into is readable.")
            index = int(order[turn % len(order)])
            turn += 1
            if index in unreadable:
                continue
            try:
                rgb = np.asarray(load_rgb(sources[index]).image)
            except UnreadableImage as exc:
                unreadable.add(index)
                say(f"  skipped {sources[index]}: {exc}")
                continue
            painted = paint_vacuoles(rgb, np.random.default_rng([seed, written]))
            Image.fromarray(painted).save(tmp / class_name / f"painted_{written:06d}.png", format="PNG",
                                          compress_level=4)
            written += 1
        manifest = {"synthetic": True, "generator": GENERATOR, "class": class_name, "n": n, "seed": seed,
                    "sources": [str(s) for s in sources]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (checked above): the rename needs the name free
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
