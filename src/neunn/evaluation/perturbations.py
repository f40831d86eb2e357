"""Deterministic image perturbations that mimic other labs, stains and scanners, for robustness evaluation.

    image = apply_perturbation(image, parse_perturbation("hue=0.05"))
    neunn evaluate RUN_DIR --perturb standard            # the suite below, one accuracy per perturbation

Each perturbation is a fixed transformation (no randomness), so a robustness table is reproducible exactly.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from neunn.errors import NeunnError


def _hue(image: Image.Image, amount: float) -> Image.Image:
    """Rotate the hue by ``amount`` of a full turn (0.05 = 18°)."""
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(amount * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _saturation(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Color(image).enhance(factor)


def _brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def _stain(image: Image.Image, factor: float) -> Image.Image:
    """Scale optical density, as a stronger or weaker stain (or a longer or shorter staining time) would."""
    od = -np.log((np.asarray(image, dtype=np.float32) + 1.0) / 256.0)
    rgb = 256.0 * np.exp(-od * factor) - 1.0
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))


def _blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def _jpeg(image: Image.Image, quality: float) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _scale(image: Image.Image, factor: float) -> Image.Image:
    """Down- (or up-) sample by ``factor`` and back: a scanner of another resolution."""
    w, h = image.size
    small = image.resize((max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.BILINEAR)


PERTURBATIONS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "hue": _hue, "saturation": _saturation, "brightness": _brightness, "stain": _stain, "blur": _blur,
    "jpeg": _jpeg, "scale": _scale,
}

# Moderate shifts (the "within 2 points" target is about these colour ones) and a few stronger ones.
STANDARD_SUITE = (
    "hue=0.03", "hue=0.06", "saturation=0.7", "saturation=1.3", "brightness=0.85", "brightness=1.15",
    "stain=0.8", "stain=1.25", "blur=1.0", "blur=2.0", "jpeg=50", "jpeg=20", "scale=0.75", "scale=0.5",
)


@dataclass(frozen=True)
class Perturbation:
    """One named transformation with its strength, e.g. ``blur=1.5``."""

    name: str
    value: float

    def __str__(self) -> str:
        return f"{self.name}={self.value:g}"

    def __call__(self, image: Image.Image) -> Image.Image:
        return PERTURBATIONS[self.name](image, self.value)


def parse_perturbation(text: str) -> Perturbation:
    """Read ``name=value``, e.g. ``hue=0.05``, ``jpeg=30`` or ``scale=0.5``."""
    name, sep, value = text.partition("=")
    if name not in PERTURBATIONS or not sep:
        raise NeunnError(f"Unknown perturbation '{text}'; use name=value with a name among "
                         f"{', '.join(PERTURBATIONS)}, or 'standard'.")
    try:
        return Perturbation(name, float(value))
    except ValueError:
        raise NeunnError(f"Perturbation '{text}' needs a number after '='.") from None


def parse_perturbations(items: list[str]) -> list[Perturbation]:
    """Expand ``standard`` into the standard suite and parse everything else."""
    texts = [t for item in items for t in (STANDARD_SUITE if item == "standard" else (item,))]
    return [parse_perturbation(t) for t in texts]
