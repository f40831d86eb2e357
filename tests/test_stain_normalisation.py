import numpy as np
import pytest

from neunn.data.stain_normalisation import (LabStats, fit_macenko_reference, fit_reinhard_reference, lab_stats,
                                            lab_to_rgb, macenko, macenko_basis, reinhard, rgb_to_lab)
from neunn.errors import NeunnError

# Unit OD colours of two stains: a blue-purple nuclear stain (absorbs red and green) and a pink one (absorbs green).
NUCLEAR = np.array([0.65, 0.70, 0.29])
PINK = np.array([0.07, 0.99, 0.11])
OTHER_NUCLEAR = np.array([0.80, 0.55, 0.24])
OTHER_PINK = np.array([0.25, 0.90, 0.36])


def _unit(v):
    return v / np.linalg.norm(v)


def _smear(stains, background, seed=0, size=64):
    """An image drawn from the Beer-Lambert model: 30 % background, the rest random mixtures of two stains."""
    rng = np.random.default_rng(seed)
    conc = rng.uniform(0.0, 1.2, size=(size * size, 2)) * rng.uniform(0.2, 1.0, size=(size * size, 1))
    conc[rng.random(size * size) < 0.3] = 0.0
    od = conc @ np.stack([_unit(s) for s in stains])
    rgb = np.asarray(background) * np.exp(-od)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8).reshape(size, size, 3), conc


def test_lab_conversion_matches_reference_values_and_round_trips():
    lab = rgb_to_lab(np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], dtype=np.uint8))[0]
    assert np.allclose(lab[0], [100, 0, 0], atol=0.01)
    assert np.allclose(lab[1], [53.24, 80.09, 67.20], atol=0.02)  # CIELAB of sRGB red, D65
    assert np.allclose(lab[2], [0, 0, 0], atol=0.01)
    rgb = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert np.abs(lab_to_rgb(rgb_to_lab(rgb)).astype(int) - rgb).max() <= 1


def test_reinhard_gives_the_image_the_reference_lab_mean_and_spread():
    rng = np.random.default_rng(1)
    source = rng.integers(60, 200, size=(48, 48, 3), dtype=np.uint8)
    target = LabStats(mean=(70.0, 8.0, 5.0), std=(9.0, 4.0, 6.0))
    out = lab_stats(reinhard(source, target))
    assert np.allclose(out.mean, target.mean, atol=0.3)
    assert np.allclose(out.std, target.std, rtol=0.03)


def test_reinhard_reference_averages_each_images_statistics():
    a = np.full((8, 8, 3), 200, dtype=np.uint8)
    b = np.random.default_rng(2).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    ref = fit_reinhard_reference([a, b])
    sa, sb = lab_stats(a), lab_stats(b)
    assert np.allclose(ref.mean, (np.asarray(sa.mean) + sb.mean) / 2)
    assert np.allclose(ref.std, (np.asarray(sa.std) + sb.std) / 2)
    with pytest.raises(NeunnError):
        fit_reinhard_reference([])


def test_macenko_recovers_the_stain_colours_and_the_background():
    rgb, _ = _smear([NUCLEAR, PINK], background=(250, 235, 210))
    basis = macenko_basis(rgb)
    assert np.allclose(basis.background, (250, 235, 210), atol=1)
    cosines = [float(basis.stains[:, i] @ _unit(v)) for i, v in enumerate([NUCLEAR, PINK])]
    assert min(cosines) > 0.99  # the nuclear (more red-absorbing) stain comes first


def test_macenko_redraws_one_labs_image_in_another_labs_stains():
    # The same cells (concentrations) under two labs' stains and light: normalising the first onto the second's
    # basis gives back the second lab's picture.
    source, _ = _smear([OTHER_NUCLEAR, OTHER_PINK], background=(170, 160, 175), seed=3)
    target, _ = _smear([NUCLEAR, PINK], background=(250, 235, 210), seed=3)
    out = macenko(source, macenko_basis(target))
    assert out.shape == source.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - target).mean() < 4  # 8-bit rounding, 1st-99th percentile stain angles
    assert np.abs(source.astype(int) - target).mean() > 40


def test_macenko_reference_pools_images_and_rejects_blank_ones():
    images = [_smear([NUCLEAR, PINK], background=(250, 235, 210), seed=s)[0] for s in range(3)]
    ref = fit_macenko_reference(images)
    assert float(ref.stains[:, 0] @ _unit(NUCLEAR)) > 0.99
    with pytest.raises(NeunnError):
        macenko_basis(np.full((16, 16, 3), 240, dtype=np.uint8))
    with pytest.raises(NeunnError):
        reinhard(np.zeros((4, 4)), ref)
