"""The one image loader: every part of NeuNN that decodes an image file goes through `load_rgb`.

The scanner, the training dataset, the predictor and the HTTP server all call

    loaded = load_rgb("GBI/img_001.jpg")        # or load_rgb(raw_bytes)
    loaded.image                                 # PIL image, mode "RGB", fully decoded
    loaded.note                                  # e.g. "converted from CMYK to RGB", or None

so that every image is recognised by its content (never its extension), checked against decompression
bombs before decoding, decoded completely (which is the only way to notice a truncated file) and turned
into 8-bit RGB the same way everywhere. A file that cannot be used raises `UnreadableImage`, whose
message is a short reason such as "truncated or corrupt JPEG".

EXIF orientation is deliberately ignored: microscope crops carry none, and transposing would make the
pixels differ from what the analyser saved.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from neunn.errors import NeunnError

MAX_IMAGE_PIXELS: int = 40_000_000

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255)

# Magic numbers, used only to word the reason when Pillow cannot even parse the header of a damaged file.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class UnreadableImage(NeunnError):
    """An image file that cannot be used; the message is the reason, e.g. "truncated or corrupt JPEG"."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image in mode RGB, with what it was before conversion."""

    image: Image.Image
    original_mode: str
    original_format: str
    note: str | None


def load_rgb(source: str | os.PathLike | bytes, *, draft_size: int | None = None) -> LoadedImage:
    """Decode an image file (path) or its bytes into a fully loaded RGB image, or raise UnreadableImage.

    ``draft_size`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (DCT scaling, much faster) while both sides stay at least
    that many pixels: for a model that resizes to ``draft_size`` anyway. Every byte is still decoded, so a truncated
    file is noticed just the same.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_stream(io.BytesIO(source), draft_size)
    try:
        # Opening the file ourselves (not handing Pillow the path) guarantees it is closed on return,
        # even for multi-frame formats, and keeps Pillow from memory-mapping it.
        with open(source, "rb") as stream:
            return _load_stream(stream, draft_size)
    except OSError as exc:
        raise UnreadableImage(describe_os_error(exc)) from exc


def describe_os_error(exc: OSError) -> str:
    """Word an error from reading a file as a short reason, e.g. "permission denied"."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    return f"cannot read the file ({exc.strerror or exc})"


def _load_stream(stream: IO[bytes], draft_size: int | None = None) -> LoadedImage:
    """Identify, size-check, decode and convert the image in an open binary stream."""
    if _is_empty(stream):
        raise UnreadableImage("empty file")
    try:
        image = Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own limit (raised as a warning only when warnings are turned into errors).
        raise UnreadableImage(_bomb_reason(None)) from exc
    except UnidentifiedImageError as exc:
        kind = _sniff_format(stream)
        raise UnreadableImage(f"truncated or corrupt {kind}" if kind else "not an image file") from exc
    except Exception as exc:
        raise UnreadableImage(_open_failure_reason(exc, stream)) from exc

    image_format = image.format or _sniff_format(stream) or "image"
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise UnreadableImage(_bomb_reason((width, height)))
    if draft_size and image.format == "JPEG":
        image.draft(image.mode, (draft_size, draft_size))
    try:
        image.load()  # multi-frame files (GIF, TIFF pages) stay on frame 0
    except Exception as exc:
        raise UnreadableImage(_open_failure_reason(exc, stream, image_format)) from exc
    return _to_rgb(image, image_format)


def _open_failure_reason(exc: Exception, stream: IO[bytes], image_format: str | None = None) -> str:
    """Word a failure to parse or decode: a real read error of the file, else a damaged file."""
    # Pillow signals damaged data with OSErrors that carry no errno; the operating system always sets one.
    if isinstance(exc, OSError) and exc.errno is not None:
        return describe_os_error(exc)
    return f"truncated or corrupt {image_format or _sniff_format(stream) or 'image file'}"


def _is_empty(stream: IO[bytes]) -> bool:
    """Whether the stream holds no bytes at all; leaves it at the start."""
    empty = stream.read(1) == b""
    stream.seek(0)
    return empty


def _sniff_format(stream: IO[bytes]) -> str | None:
    """The format named by the file's magic number, or None."""
    stream.seek(0)
    head = stream.read(16)
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _bomb_reason(size: tuple[int, int] | None) -> str:
    """The reason given for an image whose header claims too many pixels."""
    dims = f"{size[0]}x{size[1]} pixels, " if size else ""
    return f"image too large ({dims}over the {MAX_IMAGE_PIXELS:,}-pixel limit), refused as a decompression bomb"


def _to_rgb(image: Image.Image, image_format: str) -> LoadedImage:
    """Convert a loaded image of any mode to a fresh 8-bit RGB image, saying what was done."""
    mode = image.mode
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    try:
        if has_alpha:
            rgb = _composite_on_white(image)
            note = f"converted from {_describe_mode(mode)} to RGB, transparent pixels composited on white"
        elif mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
            rgb = _wide_gray_to_rgb(image)
            note = f"scaled from {_describe_wide_mode(mode)} to 8-bit RGB"
        else:
            # For an RGB image this is a copy, so the result never holds on to the decoder or the stream.
            rgb = image.convert("RGB")
            note = None if mode == "RGB" else f"converted from {_describe_mode(mode)} to RGB"
    except Exception as exc:
        raise UnreadableImage(f"unsupported {image_format} image mode {mode}") from exc
    return LoadedImage(image=rgb, original_mode=mode, original_format=image_format, note=note)


def _describe_mode(mode: str) -> str:
    """Name a Pillow mode for a conversion note."""
    names = {"L": "grayscale (L)", "1": "black-and-white (1)", "P": "palette (P)"}
    return names.get(mode, mode)


def _describe_wide_mode(mode: str) -> str:
    """Name a 16-bit, 32-bit integer or float mode for a conversion note."""
    if mode in _SIXTEEN_BIT_MODES:
        return f"16-bit grayscale ({mode})"
    return f"32-bit {'float' if mode == 'F' else 'integer'} grayscale ({mode})"


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten an image with alpha (or a transparent palette/colour key) onto a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return background


def _wide_gray_to_rgb(image: Image.Image) -> Image.Image:
    """Scale a 16-bit/32-bit grayscale image to 8 bits (Pillow's own convert would clip at 255)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode in _SIXTEEN_BIT_MODES:
        low, high = 0.0, 65535.0
    elif image.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
        low, high = 0.0, 65535.0  # mode I almost always carries 16-bit data (older Pillow, TIFF)
    elif image.mode == "F" and values.size and values.min() >= 0 and values.max() <= 1:
        low, high = 0.0, 1.0
    else:
        low = float(values.min()) if values.size else 0.0
        high = float(values.max()) if values.size else 1.0
    span = high - low if high > low else 1.0
    gray = np.rint((values - low) * (255.0 / span)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB")
