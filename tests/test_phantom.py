"""Behaviour of the phantom neutrophil renderer and the phantom dataset writer."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neunn import NEUTROPHIL_CLASSES
from neunn.data.phantom import GENERATOR, cell_seed, render_cell, write_phantom_dataset
from neunn.errors import NeunnError

SEEDS = range(20)
CUE_SIZE = 96  # large enough for every cue to cover whole pixels, small enough to keep the file fast


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@functools.cache
def _cue_render(label: str, seed: int) -> np.ndarray:
    return render_cell(label, seed, CUE_SIZE).astype(int)


def _changed(label: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed difference to the normal cell drawn from the same seed, and the mask of clearly changed pixels."""
    diff = _cue_render(label, seed) - _cue_render("NEU", seed)
    return diff, np.abs(diff).max(axis=2) > 12


def test_same_arguments_give_identical_bytes():
    for label in NEUTROPHIL_CLASSES:
        assert _digest(render_cell(label, 7, 64)) == _digest(render_cell(label, 7, 64))


def test_different_seeds_give_different_images():
    digests = {_digest(render_cell("NEU", seed, 64)) for seed in range(10)}
    assert len(digests) == 10


@pytest.mark.parametrize("size", [32, 33, 64, 128, 160])
def test_shape_and_dtype(size):
    image = render_cell("BAC", 3, size)
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8
    assert 20 < image.mean() < 240  # an image, not a blank


def test_every_label_renders_its_own_image_of_the_same_cell():
    images = {label: render_cell(label, 11, 64) for label in NEUTROPHIL_CLASSES}
    assert len({_digest(image) for image in images.values()}) == len(NEUTROPHIL_CLASSES)
    corner = images["NEU"][:6, :6]
    for image in images.values():
        assert np.array_equal(image[:6, :6], corner)  # the label changes the cell, not the smear around it


def test_background_is_pale_and_the_nucleus_dark_purple():
    image = render_cell("NEU", 5, 128).astype(int)
    corners = np.concatenate([image[:4, :4], image[:4, -4:], image[-4:, :4], image[-4:, -4:]]).reshape(-1, 3)
    centre_darkest = image[40:88, 40:88].reshape(-1, 3)[image[40:88, 40:88].sum(axis=2).argsort(axis=None)[:50]]
    assert corners.mean() > 150
    red, green, blue = centre_darkest.mean(axis=0)
    assert red + green + blue < 400 and blue > green and red > green  # purple, not grey or green


@pytest.mark.parametrize("bad", ["neu", "EOS", ""])
def test_unknown_label_is_a_user_error(bad):
    with pytest.raises(NeunnError, match="Unknown neutrophil class"):
        render_cell(bad, 0)


@pytest.mark.parametrize("size", [31, 0, -5, 64.0, True])
def test_bad_size_is_a_user_error(size):
    with pytest.raises(NeunnError, match="size"):
        render_cell("NEU", 0, size)


def test_negative_seed_is_a_user_error():
    with pytest.raises(NeunnError, match="seed"):
        render_cell("NEU", -1)


def test_green_blue_inclusions_add_green_blue_pixels():
    def green_blue_pixels(label: str, seed: int) -> int:
        image = render_cell(label, cell_seed(label, seed), CUE_SIZE).astype(int)
        red, green, blue = image[..., 0], image[..., 1], image[..., 2]
        return int(((green > red + 8) & (blue > red)).sum())

    gbi = np.mean([green_blue_pixels("GBI", seed) for seed in SEEDS])
    neu = np.mean([green_blue_pixels("NEU", seed) for seed in SEEDS])
    assert gbi > 5 * max(neu, 1.0)


def test_hypogranulated_cytoplasm_is_paler_than_normal():
    for seed in SEEDS:
        # Same cell and noise: only the missing granules differ.
        assert _cue_render("HYP", seed).sum() > _cue_render("NEU", seed).sum()


@pytest.mark.parametrize("label", ["CRY", "DB", "HJBLI", "GBI", "BAC"])
def test_inclusion_cues_are_present_and_small(label):
    for seed in SEEDS:
        _, changed = _changed(label, seed)
        assert 5 <= changed.sum() < 0.05 * changed.size, f"seed {seed}: {changed.sum()} changed pixels"


def test_inclusion_cues_shift_colour_the_right_way():
    for seed in SEEDS:
        diff, changed = _changed("HJBLI", seed)
        assert diff[changed].sum(axis=1).mean() < -60  # dense dark dots
        for label in ("DB", "CRY"):
            diff, changed = _changed(label, seed)
            assert (diff[changed][:, 2] - diff[changed][:, 0]).mean() > 5  # towards blue
        diff, changed = _changed("GBI", seed)
        assert (diff[changed][:, 1] - diff[changed][:, 0]).mean() > 10  # towards green
        diff, changed = _changed("BAC", seed)
        brightness = diff[changed].sum(axis=1)
        assert brightness.max() > 30 and brightness.min() < -100  # clear vacuoles holding dark organisms


def test_cell_seed_is_stable_distinct_and_independent_of_python_hashing():
    seeds = {cell_seed(label, index, base) for label in NEUTROPHIL_CLASSES for index in range(20) for base in (0, 1)}
    assert len(seeds) == 7 * 20 * 2
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert cell_seed("GBI", 3, 9) == cell_seed("GBI", 3, 9)
    code = "from neunn.data.phantom import cell_seed; print(cell_seed('DB', 12, 4))"
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(result.stdout.strip())
    assert outputs == {str(cell_seed("DB", 12, 4))}


def test_write_phantom_dataset_layout_manifest_and_pixels(tmp_path):
    out = tmp_path / "phantom"
    counts = write_phantom_dataset(out, per_class=2, seed=5, size=32)
    assert counts == dict.fromkeys(NEUTROPHIL_CLASSES, 2)
    assert sorted(p.name for p in out.iterdir()) == sorted([*NEUTROPHIL_CLASSES, "SYNTHETIC.md", "manifest.json"])
    for label in NEUTROPHIL_CLASSES:
        assert sorted(p.name for p in (out / label).iterdir()) == [f"phantom_{label}_0000{i}.png" for i in (0, 1)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["generator"] == GENERATOR
    assert (manifest["seed"], manifest["size"], manifest["counts"]) == (5, 32, counts)
    assert "version" in manifest
    note = (out / "SYNTHETIC.md").read_text()
    assert "not real cells" in note and "seed: 5" in note
    # Lossless and regenerable by name: the file is exactly the render of its seed.
    stored = np.asarray(Image.open(out / "GBI" / "phantom_GBI_00001.png"))
    assert np.array_equal(stored, render_cell("GBI", cell_seed("GBI", 1, 5), 32))


def test_imbalanced_counts_and_rewriting_a_phantom_folder(tmp_path):
    write_phantom_dataset(tmp_path, per_class=3, size=32)
    counts = write_phantom_dataset(tmp_path, per_class={"NEU": 2, "GBI": 1}, size=32)
    assert counts == {**dict.fromkeys(NEUTROPHIL_CLASSES, 0), "NEU": 2, "GBI": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["GBI", "NEU"]
    assert len(list((tmp_path / "NEU").iterdir())) == 2
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"] == counts


def test_an_identical_complete_set_is_reused_and_a_missing_image_restored(tmp_path):
    write_phantom_dataset(tmp_path, per_class=2, size=32)
    kept, lost = tmp_path / "DB" / "phantom_DB_00000.png", tmp_path / "HYP" / "phantom_HYP_00001.png"
    stamp = kept.stat().st_mtime_ns
    write_phantom_dataset(tmp_path, per_class=2, size=32)
    assert kept.stat().st_mtime_ns == stamp
    lost.unlink()
    write_phantom_dataset(tmp_path, per_class=2, size=32)
    assert np.array_equal(np.asarray(Image.open(lost)), render_cell("HYP", cell_seed("HYP", 1), 32))


def test_refuses_a_foreign_non_empty_folder_and_writes_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NeunnError, match="not a phantom dataset"):
        write_phantom_dataset(tmp_path, per_class=1, size=32)
    (tmp_path / "manifest.json").write_text(json.dumps({"generator": "someone.else"}))
    with pytest.raises(NeunnError, match="not a phantom dataset"):
        write_phantom_dataset(tmp_path, per_class=1, size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "notes.txt"]


@pytest.mark.parametrize("per_class", [-1, {"EOS": 3}, {"NEU": 1.5}])
def test_bad_counts_are_user_errors(tmp_path, per_class):
    with pytest.raises(NeunnError):
        write_phantom_dataset(tmp_path / "out", per_class=per_class, size=32)
    assert not (tmp_path / "out").exists()
