"""GAN training on tiny phantom data: the folder contract, train-split-only data, exact resume, one-sentence errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import neunn.gan.train as gan_train
from neunn.checkpoint import read_checkpoint_meta
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split, save_split, stratified_split
from neunn.errors import NeunnError
from neunn.gan.train import train_gan

from conftest import tiny_gan_config, train_tiny_gan

# 32 px, a few thin layers and a handful of steps: a whole GAN run takes about a second on one core.
@pytest.fixture(scope="module")
def gan_dir(phantom_dir: Path, tmp_path_factory) -> Path:
    return train_tiny_gan(phantom_dir, tmp_path_factory.mktemp("gan") / "GBI")


def test_gan_folder_follows_the_contract(gan_dir: Path):
    for name in ("gan.yaml", "gan.json", "splits.json", "log.jsonl", "checkpoints/last.safetensors",
                 "checkpoints/generator.safetensors", "checkpoints/generator.json", "samples/step_000003.png",
                 "samples/step_000006.png"):
        assert (gan_dir / name).is_file(), name
    meta = read_checkpoint_meta(gan_dir / "checkpoints" / "generator")
    assert meta["kind"] == "gan_generator" and meta["step"] == 6 and meta["classes"] == ["GBI"]
    assert meta["resolution"] == 32 and meta["image_size"] == [48, 48]  # the phantom set's size, not the GAN's
    log = [json.loads(line) for line in (gan_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6] and {"loss_d", "loss_g", "d_real", "d_fake"} <= set(log[0])


def test_only_training_split_images_of_the_class_reach_the_gan(phantom_dir: Path, tmp_path: Path, monkeypatch):
    decoded = []
    real_decode = gan_train.decode_images
    monkeypatch.setattr(gan_train, "decode_images",
                        lambda root, entries, *a, **k: decoded.extend(e.path for e in entries) or
                        real_decode(root, entries, *a, **k))
    out = tmp_path / "gan"
    train_gan(phantom_dir, out, class_names="GBI", cfg=tiny_gan_config("steps=1"), progress=False)
    split = load_split(out / "splits.json")
    train = {e.path for e in split.splits["train"] if e.label == "GBI"}
    held_out = {e.path for name in ("val", "test") for e in split.splits[name]}
    assert set(decoded) == train and not set(decoded) & held_out
    info = json.loads((out / "gan.json").read_text())
    assert {p for p, _, _ in info["training_images"]} == train and info["images_per_class"] == {"GBI": len(train)}


def test_the_default_split_is_the_one_neunn_train_makes(gan_dir: Path, trained_run: Path):
    assert load_split(gan_dir / "splits.json").digest() == load_split(trained_run / "splits.json").digest()


def test_a_given_split_file_is_used_and_copied(phantom_dir: Path, tmp_path: Path):
    split = stratified_split(scan_dataset(phantom_dir).images, seed=7)
    save_split(split, tmp_path / "splits.json")
    train_gan(phantom_dir, tmp_path / "gan", class_names="GBI", cfg=tiny_gan_config("steps=1"),
              split_file=tmp_path / "splits.json", progress=False)
    assert load_split(tmp_path / "gan" / "splits.json").digest() == split.digest()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "checkpoints" / "last.safetensors"))


def test_resume_equals_an_uninterrupted_run(phantom_dir: Path, tmp_path: Path):
    exact = ("checkpoint_every=4", "r1_gamma=1", "r1_every=2", "d_steps=2", "device=cpu")  # bit-exact on the CPU
    train_gan(phantom_dir, tmp_path / "whole", class_names="GBI", cfg=tiny_gan_config("steps=8", *exact),
              progress=False)
    stopped = tmp_path / "stopped"
    train_gan(phantom_dir, stopped, class_names="GBI", cfg=tiny_gan_config("steps=4", *exact), progress=False)
    result = train_gan(phantom_dir, stopped, resume=True, steps=8, progress=False)
    assert result.steps == 8
    whole, resumed = _weights(tmp_path / "whole"), _weights(stopped)
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    log = [json.loads(line) for line in (stopped / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8]


def test_class_conditional_gan_over_two_classes(phantom_dir: Path, tmp_path: Path):
    train_gan(phantom_dir, tmp_path / "gan", class_names=["GBI", "BAC"], cfg=tiny_gan_config("steps=2"),
              progress=False)
    meta = read_checkpoint_meta(tmp_path / "gan" / "checkpoints" / "generator")
    assert meta["classes"] == ["GBI", "BAC"] and set(meta["images_per_class"]) == {"GBI", "BAC"}


@pytest.mark.parametrize("kwargs, message", [
    ({"class_names": "XYZ"}, "Class 'XYZ' is not in dataset"),
    ({"class_names": "GBI", "cfg_extra": ["min_images=50"]},
     "Class GBI has only 9 training-split images; a GAN needs at least 50"),
    ({"class_names": []}, "Name at least one class"),
])
def test_bad_input_is_refused_before_anything_is_written(phantom_dir: Path, tmp_path: Path, kwargs, message):
    out = tmp_path / "gan"
    cfg = tiny_gan_config(*kwargs.pop("cfg_extra", []))
    with pytest.raises(NeunnError, match=message):
        train_gan(phantom_dir, out, cfg=cfg, progress=False, **kwargs)
    assert not out.exists()


def test_an_occupied_output_folder_or_a_missing_run_is_refused(phantom_dir: Path, tmp_path: Path, gan_dir: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(NeunnError, match="not empty"):
        train_gan(phantom_dir, tmp_path / "busy", class_names="GBI", cfg=tiny_gan_config(), progress=False)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    with pytest.raises(NeunnError, match="already holds a GAN run"):
        train_gan(phantom_dir, gan_dir, class_names="GBI", cfg=tiny_gan_config(), progress=False)
    with pytest.raises(NeunnError, match="no GAN run to resume"):
        train_gan(phantom_dir, tmp_path / "nothing", resume=True, progress=False)
    with pytest.raises(NeunnError, match="already trained 6 steps"):
        train_gan(phantom_dir, gan_dir, resume=True, steps=3, progress=False)


def test_cli_gan_train_prints_one_sentence_on_bad_input(phantom_dir: Path, tmp_path: Path, capsys):
    from neunn.cli import main

    code = main(["gan", "train", str(phantom_dir), "--class", "XYZ", "--out", str(tmp_path / "g"), "--preset", "gan-cpu",
                 "min_images=5"])
    err = capsys.readouterr().err  # the scan's progress bar comes first
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: Class 'XYZ' is not in dataset")
    assert not (tmp_path / "g").exists()
