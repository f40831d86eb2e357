"""Test helpers that write small image files, good and deliberately broken, for the loader and scanner tests.

    reasons = write_broken_corpus(tmp_path / "BAC")   # {"zero_bytes.jpg": "empty file", ...}
    notes = write_convertible_corpus(tmp_path / "NEU")  # {"cmyk.jpg": "CMYK", ...}

Every file is built in memory in milliseconds; the "decompression bomb" is a 1x1 PNG whose header is
rewritten to claim 50000x50000 pixels, so nothing large is ever allocated.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIXTEEN_BIT_VALUES = np.array([[0, 255, 256, 1000], [32768, 40000, 65280, 65535]], dtype=np.uint16)


def noise_rgb(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """A reproducible random RGB image (noise, so that JPEGs of different seeds never coincide)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """The bytes of `image` saved in `image_format`."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def jpeg_bytes(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    """A valid baseline JPEG of random content."""
    return encode(noise_rgb(width, height, seed), "JPEG", quality=90)


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is rewritten (with a correct CRC) to claim width x height pixels."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr_start = 8  # after the PNG signature: length (4), "IHDR" (4), then width and height
    assert data[ihdr_start + 4 : ihdr_start + 8] == b"IHDR"
    body = data[ihdr_start + 4 : ihdr_start + 8 + 13]
    struct.pack_into(">II", body, 4, width, height)
    crc = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    data[ihdr_start + 4 : ihdr_start + 8 + 13 + 4] = bytes(body) + crc
    return bytes(data)


def corrupt_png_bytes() -> bytes:
    """A PNG whose compressed pixel data (IDAT) is overwritten with garbage, so decoding it fails."""
    data = bytearray(encode(noise_rgb(64, 64, seed=7), "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    start = idat + 4 + 2  # keep the 2-byte zlib header so the damage is in the deflate stream itself
    garbage = np.random.default_rng(3).integers(0, 256, size=min(400, length - 8), dtype=np.uint8)
    data[start : start + garbage.size] = garbage.tobytes()
    return bytes(data)


def write_broken_corpus(directory: str | Path) -> dict[str, str]:
    """Write unreadable files into `directory`; return {relative path: substring of the expected reason}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    good_jpeg = jpeg_bytes(64, 64, seed=11)
    good_png = encode(noise_rgb(32, 32, seed=12), "PNG")
    files = {
        "zero_bytes.jpg": (b"", "empty file"),
        "text_named.jpg": (b"Patient notes: not an image at all.\n" * 4, "not an image file"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "truncated or corrupt JPEG"),
        "truncated.png": (good_png[: len(good_png) // 2], "truncated or corrupt PNG"),
        "corrupt_idat.png": (corrupt_png_bytes(), "truncated or corrupt PNG"),
        "bomb.png": (png_with_claimed_size(50_000, 50_000), "decompression bomb"),
    }
    for name, (content, _) in files.items():
        (directory / name).write_bytes(content)
    return {name: reason for name, (_, reason) in files.items()}


def write_convertible_corpus(directory: str | Path) -> dict[str, str]:
    """Write readable files that need converting to RGB; return {relative path: substring of the note}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    files = {
        "cmyk.jpg": (encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"), "CMYK"),
        "sixteen_bit.png": (encode(Image.fromarray(SIXTEEN_BIT_VALUES), "PNG"), "16-bit"),
        "palette_transparent.png": (encode(palette, "PNG", transparency=0), "composited on white"),
        "rgba.png": (encode(rgba, "PNG"), "composited on white"),
        "gray.png": (encode(Image.new("L", (8, 8), 77), "PNG"), "grayscale"),
    }
    for name, (content, _) in files.items():
        (directory / name).write_bytes(content)
    return {name: note for name, (_, note) in files.items()}
