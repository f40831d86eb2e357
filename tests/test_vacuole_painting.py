"""Vacuole painting: pale holes go into the cytoplasm only (never the nucleus, never the background), seeded, and the
painted folder is a resumable, atomic synthetic source that the scanner reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from neunn.data.cell_regions import CYTOPLASM_REACH, REFERENCE_SIDE, find_nucleus
from neunn.data.phantom import render_cell
from neunn.data.scan import scan_dataset
from neunn.data.split import DatasetSplit
from neunn.data.vacuole_painting import paint_vacuoles, write_painted_folder
from neunn.errors import NeunnError
from neunn.training.extra_images import SYNTHETIC, scan_extra_images

from conftest import phantom_neutrophils, real_neutrophils

def test_vacuoles_are_pale_spots_in_the_cytoplasm_only(neutrophil_crops):
    for seed, rgb in enumerate(neutrophil_crops):
        before = rgb.copy()
        painted = paint_vacuoles(rgb, np.random.default_rng(seed))
        assert np.array_equal(rgb, before), "the input is left as it was"
        assert painted.shape == rgb.shape and painted.dtype == np.uint8

        nucleus = find_nucleus(rgb)
        assert nucleus.any(), "the nucleus of a neutrophil crop is found"
        changed = np.any(painted != rgb, axis=2)
        assert changed.any()
        assert not (changed & nucleus).any(), "no vacuole touches the nucleus"
        reach = CYTOPLASM_REACH * max(rgb.shape[:2]) / REFERENCE_SIDE
        distance = ndimage.distance_transform_edt(~nucleus)
        assert distance[changed].max() <= reach + 1, "vacuoles stay in the band of cytoplasm around the nucleus"
        outside = distance > reach + 1
        assert np.array_equal(painted[outside], rgb[outside]), "the rest (background, red cells) is as it was"

        gain = painted[changed].astype(float).mean() - rgb[changed].astype(float).mean()
        assert gain > 5, "the changed pixels got paler"
        _, spots = ndimage.label(ndimage.binary_dilation(changed))
        assert 1 <= spots <= 6


def test_real_vacuoles_are_a_few_small_spots():
    rgb = real_neutrophils(1)[0]
    for seed in range(8):
        changed = np.any(paint_vacuoles(rgb, np.random.default_rng(seed)) != rgb, axis=2)
        _, spots = ndimage.label(ndimage.binary_dilation(changed))
        assert 2 <= spots <= 6  # at this size every drawn vacuole fits, and they do not touch
        assert 10 <= changed.sum() <= 6 * np.pi * 8**2  # each at most about 12 px across plus its soft edge


def test_the_same_seed_paints_the_same_vacuoles():
    rgb = phantom_neutrophils(1)[0]
    first = paint_vacuoles(rgb, np.random.default_rng(5))
    assert np.array_equal(first, paint_vacuoles(rgb, np.random.default_rng(5)))
    assert not np.array_equal(first, paint_vacuoles(rgb, np.random.default_rng(6)))


def test_a_crop_without_a_nucleus_is_painted_without_error():
    flat = np.full((80, 90, 3), (240, 225, 210), dtype=np.uint8)
    assert not find_nucleus(flat).any()
    painted = paint_vacuoles(flat, np.random.default_rng(0))
    assert painted.shape == flat.shape and painted.dtype == np.uint8
    with pytest.raises(NeunnError, match="uint8"):
        paint_vacuoles(flat.astype(np.float32), np.random.default_rng(0))


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    """Three small phantom neutrophils as PNG files and one corrupt .jpg among them."""
    folder = tmp_path / "normal"
    folder.mkdir()
    paths = []
    for seed in range(3):
        path = folder / f"cell_{seed}.png"
        Image.fromarray(render_cell("NEU", seed, 64)).save(path)
        paths.append(path)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 these are not the bytes of a picture")
    return [paths[0], corrupt, paths[1], paths[2]]


def test_painted_folder_is_written_once_and_names_a_corrupt_source_once(sources, tmp_path, capsys):
    out = tmp_path / "painted"
    assert write_painted_folder(sources, out, class_name="vacuolated", n=7, seed=3) == out
    files = sorted((out / "vacuolated").iterdir())
    assert [f.name for f in files] == [f"painted_{i:06d}.png" for i in range(7)]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "vacuolated"]
    assert all(np.asarray(Image.open(f)).shape == (64, 64, 3) for f in files)
    assert json.loads((out / "manifest.json").read_text()) == {
        "synthetic": True, "generator": "vacuole-painting", "class": "vacuolated", "n": 7, "seed": 3,
        "sources": [str(s) for s in sources]}
    assert capsys.readouterr().err.count(f"skipped {sources[1]}") == 1  # seven images cycle twice over the sources
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary folder is left"

    stamps = {f: f.stat().st_mtime_ns for f in [out / "manifest.json", *files]}
    assert write_painted_folder(sources[:1], out, class_name="other", n=2, seed=9) == out
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps and not (out / "other").exists()


def test_the_same_seed_writes_the_same_images(sources, tmp_path):
    first = write_painted_folder(sources, tmp_path / "a", class_name="vacuolated", n=3, seed=1)
    second = write_painted_folder(sources, tmp_path / "b", class_name="vacuolated", n=3, seed=1)
    for name in ("painted_000000.png", "painted_000002.png"):
        assert (first / "vacuolated" / name).read_bytes() == (second / "vacuolated" / name).read_bytes()


def test_no_readable_source_is_one_clear_error(sources, tmp_path):
    out = tmp_path / "painted"
    with pytest.raises(NeunnError, match="None of the 2 source image"):
        write_painted_folder([sources[1], tmp_path / "missing.png"], out, class_name="vacuolated", n=2)
    assert not out.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    with pytest.raises(NeunnError, match="no source images"):
        write_painted_folder([], out, class_name="vacuolated", n=2)


def test_a_folder_that_is_not_a_painted_one_is_refused(sources, tmp_path):
    out = tmp_path / "painted"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NeunnError, match="not a painted folder"):
        write_painted_folder(sources, out, class_name="vacuolated", n=1)
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_the_painted_folder_is_a_synthetic_source(sources, tmp_path):
    out = write_painted_folder(sources, tmp_path / "painted", class_name="vacuolated", n=4)
    scan = scan_dataset(out)
    assert scan.classes == ["vacuolated"] and len(scan.images) == 4 and not scan.bad_files
    split = DatasetSplit(classes=["normal", "vacuolated"], seed=0, fractions=(0.6, 0.2, 0.2),
                         splits={"train": [], "val": [], "test": []})
    extra = scan_extra_images(str(out), split, kind=SYNTHETIC)
    assert extra.counts() == {"vacuolated": 4}
