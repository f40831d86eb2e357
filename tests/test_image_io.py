"""Tests for neunn.data.image_io: the one image loader (reasons for broken files, conversions to RGB, bombs)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from broken_images import (
    SIXTEEN_BIT_VALUES,
    encode,
    jpeg_bytes,
    noise_rgb,
    png_with_claimed_size,
    write_broken_corpus,
    write_convertible_corpus,
)
from neunn.data import image_io
from neunn.data.image_io import MAX_IMAGE_PIXELS, LoadedImage, UnreadableImage, load_rgb
from neunn.errors import NeunnError


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("broken")
    return directory, write_broken_corpus(directory)


@pytest.fixture(scope="module")
def convertible(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("convertible")
    return directory, write_convertible_corpus(directory)


def test_every_broken_file_is_refused_with_its_reason_from_path_and_from_bytes(broken):
    directory, reasons = broken
    assert len(reasons) == 6
    for name, expected in reasons.items():
        for source in (directory / name, str(directory / name), (directory / name).read_bytes()):
            for draft_size in (None, 16):  # a draft (reduced-scale) decode still reads every byte
                with pytest.raises(UnreadableImage) as caught:
                    load_rgb(source, draft_size=draft_size)
                assert expected in str(caught.value), name
            assert isinstance(caught.value, NeunnError)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_rgb_jpeg_is_returned_unchanged_without_note(tmp_path):
    path = tmp_path / "cell.jpg"
    path.write_bytes(jpeg_bytes(36, 30, seed=1))
    loaded = load_rgb(path)
    assert isinstance(loaded, LoadedImage)
    assert (loaded.original_mode, loaded.original_format, loaded.note) == ("RGB", "JPEG", None)
    assert loaded.image.mode == "RGB" and loaded.image.size == (36, 30)
    with Image.open(path) as reference:
        assert np.array_equal(np.asarray(loaded.image), np.asarray(reference.convert("RGB")))


def test_draft_decodes_a_jpeg_at_reduced_scale_never_below_the_size_asked(tmp_path):
    path = tmp_path / "cell.jpg"
    path.write_bytes(jpeg_bytes(360, 363, seed=2))
    assert load_rgb(path, draft_size=128).image.size == (180, 182)  # 1/2 scale: 1/4 would fall under 128
    assert load_rgb(path, draft_size=40).image.size == (45, 46)  # 1/8 scale, rounded up
    assert load_rgb(path, draft_size=200).image.size == (360, 363)
    full = np.asarray(load_rgb(path).image.resize((90, 90)), dtype=float)
    draft = np.asarray(load_rgb(path, draft_size=90).image.resize((90, 90)), dtype=float)
    assert np.abs(full - draft).mean() < 8  # the same picture, only decoded smaller
    png = tmp_path / "cell.png"
    png.write_bytes(encode(noise_rgb(64, 64, seed=3), "PNG"))
    assert load_rgb(png, draft_size=16).image.size == (64, 64)  # only JPEG has a draft mode


def test_content_decides_the_format_not_the_extension(tmp_path):
    path = tmp_path / "actually_a_png.jpg"
    path.write_bytes(encode(noise_rgb(10, 12), "PNG"))
    loaded = load_rgb(path)
    assert loaded.original_format == "PNG"
    assert np.array_equal(np.asarray(loaded.image), np.asarray(noise_rgb(10, 12)))


def test_exif_orientation_is_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise" — must be ignored
    path = tmp_path / "oriented.jpg"
    path.write_bytes(encode(noise_rgb(40, 20), "JPEG", exif=exif.tobytes()))
    assert load_rgb(path).image.size == (40, 20)


def test_conversions_are_reported_in_the_note(convertible):
    directory, notes = convertible
    modes = {}
    for name, expected in notes.items():
        loaded = load_rgb(directory / name)
        assert loaded.image.mode == "RGB", name
        assert loaded.note is not None and expected in loaded.note, (name, loaded.note)
        modes[name] = loaded.original_mode
    assert modes == {
        "cmyk.jpg": "CMYK",
        "sixteen_bit.png": "I;16",
        "palette_transparent.png": "P",
        "rgba.png": "RGBA",
        "gray.png": "L",
    }


def test_sixteen_bit_is_scaled_to_eight_bit_not_clipped(convertible):
    directory, _ = convertible
    pixels = np.asarray(load_rgb(directory / "sixteen_bit.png").image)
    expected = np.rint(SIXTEEN_BIT_VALUES / 257.0).astype(np.uint8)
    assert expected.tolist() == [[0, 1, 1, 4], [128, 156, 254, 255]]
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], expected)


def test_transparent_pixels_become_white(convertible):
    directory, _ = convertible
    palette = np.asarray(load_rgb(directory / "palette_transparent.png").image)
    assert palette[0, 0].tolist() == [255, 255, 255]  # index 0 (red) is the transparent one
    assert palette[3, 3].tolist() == [0, 0, 255]
    rgba = np.asarray(load_rgb(directory / "rgba.png").image)
    assert rgba[0, 0].tolist() == [0, 0, 255]  # opaque blue stays blue
    assert rgba[5, 5].tolist() == [255, 255, 255]  # fully transparent red becomes white


def test_half_transparent_pixels_are_blended_with_white():
    image = Image.new("LA", (2, 2), (0, 128))
    loaded = load_rgb(encode(image, "PNG"))
    assert loaded.original_mode == "LA"
    assert np.asarray(loaded.image)[0, 0].tolist() == [127, 127, 127]


def test_grayscale_cmyk_and_bilevel_convert_to_matching_rgb(convertible):
    directory, _ = convertible
    assert np.asarray(load_rgb(directory / "gray.png").image)[0, 0].tolist() == [77, 77, 77]
    cmyk = np.asarray(load_rgb(directory / "cmyk.jpg").image).astype(int)
    assert np.abs(cmyk[8, 8] - [255, 0, 0]).max() <= 3  # C=0, M=Y=100% is red (up to JPEG rounding)
    bilevel = Image.new("1", (3, 1), 0)
    bilevel.putpixel((1, 0), 1)
    loaded = load_rgb(encode(bilevel, "PNG"))
    assert loaded.original_mode == "1" and "black-and-white" in loaded.note
    assert np.asarray(loaded.image)[0, :, 0].tolist() == [0, 255, 0]


def test_32_bit_integer_images_are_scaled_from_their_range():
    sixteen_bit_range = np.array([[0, 65535]], dtype=np.int32)
    loaded = load_rgb(encode(Image.fromarray(sixteen_bit_range), "TIFF"))
    assert loaded.original_mode == "I"
    assert np.asarray(loaded.image)[0, :, 0].tolist() == [0, 255]
    beyond = np.array([[-100, 100_000, 49_950]], dtype=np.int32)
    stretched = load_rgb(encode(Image.fromarray(beyond), "TIFF"))
    assert np.asarray(stretched.image)[0, :, 0].tolist() == [0, 255, 128]


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (6, 6), (255, 0, 0)), Image.new("RGB", (6, 6), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = load_rgb(data)
    assert loaded.original_format == "GIF"
    assert np.asarray(loaded.image)[0, 0].tolist() == [255, 0, 0]


def test_header_size_above_limit_is_refused_before_decoding():
    side = int(MAX_IMAGE_PIXELS**0.5) + 100  # above our limit, below Pillow's own warning threshold
    with pytest.raises(UnreadableImage, match=rf"{side}x{side} pixels.*decompression bomb"):
        load_rgb(png_with_claimed_size(side, side))


def test_bomb_is_refused_even_when_pillow_limit_is_disabled(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(UnreadableImage, match="50000x50000 pixels"):
        load_rgb(png_with_claimed_size(50_000, 50_000))


def test_pillow_bomb_warning_raised_as_error_is_reported_as_bomb():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnreadableImage, match="decompression bomb"):
            load_rgb(png_with_claimed_size(10_000, 10_000))  # 1e8 pixels: Pillow warns, not errors


def test_file_system_problems_become_reasons(tmp_path, monkeypatch):
    with pytest.raises(UnreadableImage, match="file not found"):
        load_rgb(tmp_path / "missing.jpg")
    with pytest.raises(UnreadableImage, match="is a folder"):
        load_rgb(tmp_path)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(image_io, "open", deny, raising=False)
    with pytest.raises(UnreadableImage, match="permission denied"):
        load_rgb(tmp_path / "secret.jpg")


def test_random_bytes_are_not_an_image():
    garbage = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(UnreadableImage, match="^not an image file$"):
        load_rgb(garbage)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_no_file_handle_is_left_open(tmp_path, broken, convertible):
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), (i * 40, 0, 0)) for i in range(3)]
    gif.write_bytes(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    paths = [gif, *(d / name for d, names in (broken, convertible) for name in names)]
    before = len(os.listdir("/proc/self/fd"))
    kept = []
    for path in paths * 3:
        try:
            kept.append(load_rgb(path))
        except UnreadableImage:
            pass
    assert len(os.listdir("/proc/self/fd")) == before
    assert len(kept) == 3 * 6


def test_result_is_a_plain_in_memory_image_not_tied_to_the_file(tmp_path):
    path = tmp_path / "cell.png"
    path.write_bytes(encode(noise_rgb(8, 8, seed=5), "PNG"))
    loaded = load_rgb(path)
    path.unlink()
    assert type(loaded.image) is Image.Image
    assert np.array_equal(np.asarray(loaded.image), np.asarray(noise_rgb(8, 8, seed=5)))
