import numpy as np
import pytest
from PIL import Image

from neunn.errors import NeunnError
from neunn.evaluation.perturbations import STANDARD_SUITE, parse_perturbation, parse_perturbations


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    base = np.full((40, 44, 3), (230, 200, 210), dtype=np.uint8)
    base[10:30, 12:32] = (110, 50, 140)  # a purple "nucleus"
    return Image.fromarray(np.clip(base + rng.integers(-10, 10, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("text", STANDARD_SUITE)
def test_each_standard_perturbation_changes_the_image_deterministically(text):
    p = parse_perturbation(text)
    image = _image()
    a, b = np.asarray(p(image)), np.asarray(p(image))
    assert a.shape == np.asarray(image).shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, np.asarray(image))


@pytest.mark.parametrize("text", ["saturation=1", "brightness=1", "stain=1", "hue=0"])
def test_neutral_strengths_leave_the_image_almost_unchanged(text):
    image = _image()
    diff = np.abs(np.asarray(parse_perturbation(text)(image), dtype=int) - np.asarray(image, dtype=int))
    assert diff.max() <= 3  # HSV and optical-density round trips are not bit-exact


def test_stain_factor_darkens_or_lightens():
    image = _image()
    assert np.asarray(parse_perturbation("stain=1.5")(image)).mean() < np.asarray(image).mean()
    assert np.asarray(parse_perturbation("stain=0.6")(image)).mean() > np.asarray(image).mean()


def test_standard_expands_and_bad_names_fail_clearly():
    assert len(parse_perturbations(["standard", "blur=3"])) == len(STANDARD_SUITE) + 1
    with pytest.raises(NeunnError, match="Unknown perturbation 'sharpen=2'"):
        parse_perturbation("sharpen=2")
    with pytest.raises(NeunnError, match="needs a number"):
        parse_perturbation("blur=strong")
