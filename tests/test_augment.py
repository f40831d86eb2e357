import torch

from neunn.training.augment import augment_batch


def _batch(n=6, size=16, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_disabled_augmentation_is_the_identity_scaled_to_unit_range():
    x = _batch()
    out = augment_batch(x, torch.Generator().manual_seed(0), flip=False, rot90=False, affine=0, color=0)
    assert out.dtype == torch.float32
    assert torch.equal(out, x.float() / 255)


def test_flips_and_rotations_are_exact_symmetries_of_each_image():
    x = _batch()
    out = augment_batch(x, torch.Generator().manual_seed(1), flip=True, rot90=True)
    for i in range(len(x)):
        img = x[i].float() / 255
        variants = [torch.rot90(v, k, dims=(-2, -1)) for v in (img, img.flip(-1)) for k in range(4)]
        assert any(torch.equal(out[i], v) for v in variants)


def test_same_generator_seed_gives_same_batch_and_values_stay_in_range():
    x = _batch(size=24)
    kw = dict(flip=True, rot90=True, affine=0.2, color=0.3)
    a = augment_batch(x, torch.Generator().manual_seed(5), **kw)
    b = augment_batch(x, torch.Generator().manual_seed(5), **kw)
    c = augment_batch(x, torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == (6, 3, 24, 24)


def test_colour_jitter_changes_colour_but_not_geometry():
    # A left-half/right-half image: colour jitter must keep the edge where it is.
    x = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    x[..., :8] = 200
    x[..., 0, :, :8] = 120
    out = augment_batch(x, torch.Generator().manual_seed(2), flip=False, rot90=False, color=0.3)
    assert not torch.allclose(out, x.float() / 255)
    left, right = out[..., :8].mean(dim=(1, 2, 3)), out[..., 8:].mean(dim=(1, 2, 3))
    assert bool((left > right).all())
