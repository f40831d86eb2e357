"""The GAN quality metrics against reference formulas and hand-built cases: FID, KID, PRDC, nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from neunn.gan.quality import (
    copy_ratios,
    frechet_distance,
    kernel_distance,
    nearest_other_distance,
    nearest_owner,
    precision_recall_density_coverage,
)


def _fid_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm, as in the reference implementations."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_frechet_distance_matches_the_scipy_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    b = rng.normal(size=(150, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 1.0
    assert frechet_distance(a, b) == pytest.approx(_fid_scipy(a, b), rel=1e-6)


def test_frechet_distance_of_a_shift_is_its_squared_length():
    a = np.random.default_rng(1).normal(size=(100, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + np.array([3.0, 0, 0, 4.0, 0])) == pytest.approx(25.0, rel=1e-9)


def _mmd_loop(x: np.ndarray, y: np.ndarray) -> float:
    def k(u, v):
        return (u @ v / len(u) + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_distance_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(9, 4)) + 0.7
    mean, sd = kernel_distance(x, y)  # sets smaller than a subset: one exact value
    assert mean == pytest.approx(_mmd_loop(x, y), rel=1e-9) and sd == 0.0


def test_kernel_distance_is_near_zero_for_one_distribution_and_not_for_two():
    rng = np.random.default_rng(3)
    same, _ = kernel_distance(rng.normal(size=(400, 6)), rng.normal(size=(400, 6)), subset_size=100, subsets=50)
    other, _ = kernel_distance(rng.normal(size=(400, 6)), rng.normal(size=(400, 6)) + 1.0, subset_size=100, subsets=50)
    assert abs(same) < 0.05 < other


def _prdc_loop(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    def dist(a, b):
        return float(np.sqrt(((a - b) ** 2).sum()))

    def radius(points):
        return [sorted(dist(p, q) for q in points)[k] for p in points]

    r_real, r_fake = radius(real), radius(fake)
    precision = np.mean([any(dist(f, r) < rr for r, rr in zip(real, r_real)) for f in fake])
    recall = np.mean([any(dist(r, f) < rf for f, rf in zip(fake, r_fake)) for r in real])
    density = np.mean([sum(dist(f, r) < rr for r, rr in zip(real, r_real)) for f in fake]) / k
    coverage = np.mean([min(dist(r, f) for f in fake) < rr for r, rr in zip(real, r_real)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_matches_a_direct_implementation_of_the_definitions():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(30, 3)), rng.normal(size=(25, 3)) * 1.5 + 0.5
    got = precision_recall_density_coverage(real, fake, k=3)
    want = _prdc_loop(real, fake, 3)
    assert {k: got[k] for k in want} == pytest.approx(want)
    assert got["k"] == 3


def test_prdc_extremes():
    real = np.random.default_rng(5).normal(size=(40, 2))
    same = precision_recall_density_coverage(real, real.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = precision_recall_density_coverage(real, real + 100.0, k=5)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0


def test_nearest_owner_takes_the_closest_variant_of_each_image():
    references = np.array([[10.0, 0], [0, 10.0], [5.0, 5.0], [-3.0, 0]])  # image 0: rows 0 and 3; image 1: rows 1, 2
    owners = np.array([0, 1, 1, 0])
    nearest, distance = nearest_owner(np.array([[-2.0, 0], [4.0, 5.0]]), references, owners, 2)
    assert nearest.tolist() == [0, 1]
    assert distance == pytest.approx([1.0, 1.0])


def test_spacing_skips_the_image_itself_and_exact_duplicates():
    images = np.array([[0.0, 0], [0.0, 0], [3.0, 0], [3.0, 4.0]])  # rows 0 and 1 are the same photo
    assert nearest_other_distance(images).tolist() == pytest.approx([3.0, 3.0, 3.0, 4.0])


def test_copy_ratios_flag_a_copy_and_not_a_new_image():
    train = np.array([[0.0, 0], [4.0, 0], [0.0, 8.0]])
    spacing = nearest_other_distance(train)  # 4, 4, 8
    queries = np.array([[0.1, 0], [2.0, 2.0]])  # a near-copy of image 0, and a point between images
    nearest, distance = nearest_owner(queries, train)
    ratios = copy_ratios(nearest, distance, spacing)
    assert ratios[0] == pytest.approx(0.1 / 4) and ratios[1] > 0.5
