"""The one preprocessing path from a decoded RGB image to model input, shared by training, evaluation and prediction.

    pixels = load_pixels("cell.jpg", size, jpeg_draft=True)   # 3×size×size uint8 tensor (what the cache keeps)
    pixels = image_to_uint8(loaded.image, size)              # the same from an image already decoded
    x = normalize_batch(pixels_batch, mean, std)             # float tensor for the model, on any device

Cells are centred in near-square CellaVision crops (360×363), so the whole crop is resized to a square: nothing is cut off,
and the tiny change of aspect ratio is the same at training and at prediction time. ``crop`` < 1 keeps only the central
fraction of each side first (the cell, without most of the red cells around it): the same pixels then show a subtle
cytoplasmic finding (a vacuole a few pixels across) at a higher resolution. Runs record their crop in the checkpoint. Runs record in their checkpoint
whether their JPEGs were decoded in draft mode (DCT scaling to at least the model's size, then the same resize), so a
model always sees its input prepared the way it was trained.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from neunn.data.image_io import load_rgb


def central_crop(image: Image.Image, crop: float) -> Image.Image:
    """The central ``crop`` fraction of each side of an image (the whole image when ``crop`` is 1)."""
    if crop >= 1.0:
        return image
    width, height = image.size
    w, h = max(1, round(width * crop)), max(1, round(height * crop))
    left, top = (width - w) // 2, (height - h) // 2
    return image.crop((left, top, left + w, top + h))


def image_to_uint8(image: Image.Image, size: int, crop: float = 1.0) -> torch.Tensor:
    """Crop the central ``crop`` of an RGB image, resize it to size×size (bilinear) and return a 3×H×W uint8 tensor."""
    image = central_crop(image, crop)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_pixels(source: str | os.PathLike | bytes, size: int, *, jpeg_draft: bool, crop: float = 1.0) -> torch.Tensor:
    """Decode an image file (or its bytes) straight to a 3×size×size uint8 tensor; raises UnreadableImage.

    In draft mode a JPEG is decoded at reduced DCT scale, never below what the crop still needs for ``size``.
    """
    draft_size = math.ceil(size / crop) if jpeg_draft else None
    return image_to_uint8(load_rgb(source, draft_size=draft_size).image, size, crop)


def normalize_batch(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Turn an N×3×H×W uint8 (or 0–1 float) batch into normalised float32 model input."""
    x = pixels.float()
    if pixels.dtype == torch.uint8:
        x = x / 255.0
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
