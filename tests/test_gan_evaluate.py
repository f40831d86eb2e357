"""`neunn gan evaluate` on a tiny GAN and classifier: the report's content, the features, and the memorisation check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_tiny_gan

from neunn.checkpoint import read_checkpoint
from neunn.errors import NeunnError
from neunn.gan.evaluate import _memorisation, classifier_features, evaluate_gan
from neunn.model import classifier_from_checkpoint


@pytest.fixture(scope="module")
def gan_dir(phantom_dir: Path, tmp_path_factory) -> Path:
    return train_tiny_gan(phantom_dir, tmp_path_factory.mktemp("gan") / "GBI")


@pytest.fixture(scope="module")
def quality(gan_dir: Path, trained_run: Path) -> dict:
    return evaluate_gan(gan_dir, classifier_run=trained_run, n_samples=12)


def test_report_holds_every_measure_with_a_real_reference(quality: dict, gan_dir: Path):
    r = quality["classes"]["GBI"]
    assert r["n_synthetic"] == 12 and r["n_train"] == 9 and r["n_heldout"] == 3 and r["seeds"] == [0, 11]
    assert r["fid"] > 0 and np.isfinite(r["kid"])
    assert set(r["prdc"]) == {"precision", "recall", "density", "coverage", "k"}
    assert 0 <= r["agreement"] <= 1 and sum(r["predicted_as"].values()) == 12
    assert set(r["reference"]) == {"fid", "kid", "kid_sd", "prdc", "agreement"}
    assert quality["same_split"] is True  # the GAN and the classifier share the default split
    for who, n in (("synthetic", 12), ("heldout", 3)):
        for space in ("pixel", "feature"):
            memo = r["memorisation"][who][space]
            assert len(memo["nearest"]) == len(memo["ratio"]) == n
            assert memo["near_copies"] == sum(v < 0.5 for v in memo["ratio"])
    assert r["inception"]["fid"] is None  # no local Inception weights given
    saved = json.loads((gan_dir / "quality" / "quality.json").read_text())
    assert saved["classes"]["GBI"]["fid"] == pytest.approx(r["fid"])
    html = (gan_dir / "quality" / "quality.html").read_text()
    assert "GAN quality: GBI" in html and "Near-copies (pixel space)" in html and "data:image/png;base64," in html
    for name in ("samples_GBI.png", "closest_pairs_GBI.png", "history.jsonl"):
        assert (gan_dir / "quality" / name).is_file()


def test_features_and_logits_are_the_classifiers_own(trained_run: Path):
    tensors, meta = read_checkpoint(trained_run / "checkpoints" / "best")
    model = classifier_from_checkpoint(tensors, meta)
    pixels = torch.randint(0, 256, (3, 3, meta["img_size"], meta["img_size"]), dtype=torch.uint8)
    feats, logits = classifier_features(model, pixels, mean=meta["mean"], std=meta["std"], device=torch.device("cpu"))
    with torch.inference_mode():
        x = (pixels.float() / 255 - torch.tensor(meta["mean"]).view(1, 3, 1, 1)) / torch.tensor(meta["std"]).view(1, 3, 1, 1)
        expected = model(x).numpy()
    assert feats.shape == (3, model.num_features) and np.allclose(logits, expected, atol=1e-5)


def test_memorisation_flags_copies_of_training_images_even_rotated():
    rng = np.random.default_rng(0)
    train = rng.random((10, 3, 8, 8))
    import neunn.gan.evaluate as ev

    small = torch.from_numpy((train * 255).astype(np.uint8))
    variants, owners = ev._dihedral_variants(small)
    copies = torch.rot90(small[:4], 1, dims=(-2, -1))  # rotated copies of four training images
    fresh = torch.from_numpy((rng.random((4, 3, 8, 8)) * 255).astype(np.uint8))
    feats = rng.random((10, 5))
    result = _memorisation({"copies": (ev._flat(copies), feats[:4] + 1e-4), "fresh": (ev._flat(fresh), rng.random((4, 5)))},
                           ((ev._flat(variants), owners), feats), 0.5)
    assert result["copies"]["pixel"]["near_copies"] == 4 and result["copies"]["pixel"]["nearest"] == [0, 1, 2, 3]
    assert result["copies"]["feature"]["near_copies"] == 4
    assert result["fresh"]["pixel"]["near_copies"] == 0


def test_evaluate_errors_are_one_sentence(gan_dir: Path, trained_run: Path, tmp_path: Path):
    with pytest.raises(NeunnError, match="not a trained NeuNN run"):
        evaluate_gan(gan_dir, classifier_run=tmp_path)
    with pytest.raises(NeunnError, match="holds no trained generator"):
        evaluate_gan(tmp_path, classifier_run=trained_run)
    with pytest.raises(NeunnError, match="at least 2 samples"):
        evaluate_gan(gan_dir, classifier_run=trained_run, n_samples=1)


def test_a_classifier_that_misses_real_cells_is_flagged_as_no_judge():
    from neunn.gan.report import _judge_note

    assert "only 20% of the held-out real GBI" in _judge_note("GBI", {"reference": {"agreement": 0.2}})
    assert _judge_note("GBI", {"reference": {"agreement": 0.9}}) is None
    assert _judge_note("GBI", {}) is None
