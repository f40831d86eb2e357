"""GAN building blocks on tiny inputs: network shapes and independence of samples, DiffAugment, GAN config."""

from __future__ import annotations

import pytest
import torch

from neunn.errors import NeunnError
from neunn.configfile import list_presets
from neunn.gan.config import GAN_PRESETS, resolve_gan_config
from neunn.gan.diffaug import augment_color, augment_cutout, augment_translation, diff_augment
from neunn.gan.networks import channels_at, create_discriminator, create_generator


@pytest.mark.parametrize("resolution", [32, 64])
def test_generator_and_discriminator_shapes(resolution: int):
    torch.manual_seed(0)
    G = create_generator(resolution=resolution, z_dim=16, n_classes=3, width=8, max_channels=32)
    D = create_discriminator(resolution=resolution, n_classes=3, width=8, max_channels=32)
    labels = torch.tensor([0, 1, 2, 1])
    images = G(torch.randn(4, 16), labels)
    assert images.shape == (4, 3, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert D(images, labels).shape == (4,)


def test_channels_double_per_halving_up_to_the_cap():
    assert [channels_at(r, resolution=64, width=8, max_channels=32) for r in (64, 32, 16, 8, 4)] == [8, 16, 32, 32, 32]


def test_a_generated_image_does_not_depend_on_the_rest_of_its_batch():
    torch.manual_seed(0)
    G = create_generator(resolution=32, z_dim=16, n_classes=1, width=8, max_channels=32).eval()
    z = torch.randn(5, 16)
    labels = torch.zeros(5, dtype=torch.long)
    together = G(z, labels)
    alone = G(z[2:3], labels[2:3])
    # float32 convolutions of another batch size may take another kernel: equal to rounding, not to the bit
    assert torch.allclose(together[2:3], alone, atol=1e-5)


def test_the_class_changes_the_sample_in_conditional_mode():
    torch.manual_seed(0)
    G = create_generator(resolution=32, z_dim=16, n_classes=2, width=8, max_channels=32)
    z = torch.randn(1, 16)
    assert not torch.allclose(G(z, torch.tensor([0])), G(z, torch.tensor([1])))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_diff_augment_is_seeded_and_keeps_gradients():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    a = diff_augment(x, ["color", "translation", "cutout"], _gen(1))
    b = diff_augment(x, ["color", "translation", "cutout"], _gen(1))
    assert torch.equal(a, b) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, [], _gen(1)), x)


def test_translation_moves_the_content_and_pads_with_zeros():
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8).repeat(8, 1, 1, 1)
    out = augment_translation(x, _gen(3), ratio=0.25)
    for image in out:
        # Every image is the input shifted by some (dy, dx) within ±2 px, zero where it left the frame.
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros(8, 8)
                src = x[0, 0, max(0, -dy) : 8 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
                shifted[max(0, dy) : 8 - max(0, -dy), max(0, dx) : 8 - max(0, -dx)] = src
                found |= torch.equal(image[0], shifted)
        assert found


def test_cutout_zeroes_one_square_of_half_the_size():
    out = augment_cutout(torch.ones(16, 3, 8, 8), _gen(4), ratio=0.5)
    zero = (out == 0).all(dim=1)  # the same pixels in every channel
    for mask in zero:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols) and 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
    assert zero.sum(dim=(1, 2)).max() == 16  # an unclipped square is 4×4


def test_color_changes_each_image_differently():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    out = augment_color(x, _gen(5))
    assert not torch.allclose(out, x)
    assert len({round(float((o - i).mean()), 4) for o, i in zip(out, x)}) == 6


def test_gan_presets_resolve_and_overrides_are_typed():
    assert {"gan-128", "gan-256", "gan-cpu"} <= set(list_presets(GAN_PRESETS))
    assert resolve_gan_config().resolution == 128
    cfg = resolve_gan_config(preset="gan-cpu", overrides=["steps=10", "betas=0.5,0.9", "diffaug=color"])
    assert cfg.steps == 10 and cfg.betas == (0.5, 0.9) and cfg.diffaug == "color" and cfg.resolution == 64


@pytest.mark.parametrize("override, message", [
    ("resolution=100", "power of two"), ("colour=1", "Unknown GAN config key"), ("steps=0", "at least 1"),
    ("diffaug=color,blur", "Unknown DiffAugment policy"), ("steps=ten", "expects int"), ("batch_size=1", "at least 2"),
])
def test_bad_gan_config_is_one_sentence(override: str, message: str):
    with pytest.raises(NeunnError, match=message):
        resolve_gan_config(overrides=[override])


def test_unknown_gan_preset_lists_the_available_ones():
    with pytest.raises(NeunnError, match="gan-cpu"):
        resolve_gan_config(preset="gan-huge")
