"""Sampling: seed-named images at the dataset's size, bit-identical regeneration, the manifest, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import train_tiny_gan

from neunn.cli import main
from neunn.data.scan import scan_dataset
from neunn.errors import NeunnError
from neunn.gan.sample import sample_images


@pytest.fixture(scope="module")
def gan_dir(phantom_dir: Path, tmp_path_factory) -> Path:
    return train_tiny_gan(phantom_dir, tmp_path_factory.mktemp("gan") / "GBI")


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_samples_are_named_by_seed_at_the_dataset_size_with_a_manifest(gan_dir: Path, tmp_path: Path):
    out = tmp_path / "synthetic"
    result = sample_images(gan_dir, n=4, out=out, seed=10, progress=False)
    names = sorted(p.name for p in (out / "GBI").iterdir())
    assert result.seeds == [10, 11, 12, 13] and names == [f"seed_{s:06d}.png" for s in (10, 11, 12, 13)]
    assert Image.open(out / "GBI" / names[0]).size == (48, 48)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["generator"] == "neunn.gan" and manifest["class"] == "GBI"
    assert manifest["seeds"] == [10, 11, 12, 13] and manifest["image_size"] == [48, 48]
    assert manifest["gan_dir"] == str(gan_dir.resolve())
    assert manifest["checkpoint"] == str((gan_dir / "checkpoints" / "generator.safetensors").resolve())
    scan = scan_dataset(out)  # the folder reads as a one-class dataset, the manifest ignored
    assert scan.classes == ["GBI"] and len(scan.images) == 4 and not scan.bad_files
    assert len({_pixels(out / "GBI" / n).tobytes() for n in names}) == 4  # different seeds, different images


def test_a_sample_regenerates_bit_identically_from_its_seed(gan_dir: Path, tmp_path: Path):
    sample_images(gan_dir, n=5, out=tmp_path / "many", seed=0, progress=False)
    sample_images(gan_dir, n=1, out=tmp_path / "one", seed=3, progress=False)
    assert np.array_equal(_pixels(tmp_path / "many" / "GBI" / "seed_000003.png"),
                          _pixels(tmp_path / "one" / "GBI" / "seed_000003.png"))


def test_an_output_folder_holding_other_files_is_refused_and_left_alone(gan_dir: Path, tmp_path: Path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(NeunnError, match="already holds files"):
        sample_images(gan_dir, n=2, out=out, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no temporary folder left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    sample_images(gan_dir, n=1, out=empty, progress=False)  # an empty folder is fine
    assert (empty / "manifest.json").is_file()


def test_a_missing_or_corrupt_generator_is_one_sentence(gan_dir: Path, tmp_path: Path):
    with pytest.raises(NeunnError, match="holds no trained generator"):
        sample_images(tmp_path, n=1, out=tmp_path / "out", progress=False)
    with pytest.raises(NeunnError, match="does not exist"):
        sample_images(tmp_path / "nowhere", n=1, out=tmp_path / "out", progress=False)
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    data = (gan_dir / "checkpoints" / "generator.safetensors").read_bytes()
    (broken / "checkpoints" / "generator.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(NeunnError, match="corrupt"):
        sample_images(broken, n=1, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_bad_sample_requests(gan_dir: Path, tmp_path: Path):
    with pytest.raises(NeunnError, match="at least 1"):
        sample_images(gan_dir, n=0, out=tmp_path / "out", progress=False)
    with pytest.raises(NeunnError, match="not trained on class 'NEU'"):
        sample_images(gan_dir, n=1, out=tmp_path / "out", class_name="NEU", progress=False)


def test_cli_gan_sample_and_its_one_line_error(gan_dir: Path, tmp_path: Path, capsys):
    assert main(["gan", "sample", str(gan_dir), "-n", "2", "--out", str(tmp_path / "s"), "--seed", "5"]) == 0
    assert "wrote 2 synthetic GBI images (seeds 5-6)" in capsys.readouterr().out
    assert main(["gan", "sample", str(tmp_path / "missing"), "-n", "2", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and err[0].endswith(".")
