"""Sample-quality metrics as small pure functions on feature (or pixel) arrays, one N×D float array per image set.

    fid = frechet_distance(real, fake)                       # Fréchet distance of Gaussian fits (Heusel et al. 2017)
    kid, kid_sd = kernel_distance(real, fake)                 # unbiased polynomial-kernel MMD² (Bińkowski et al. 2018)
    prdc = precision_recall_density_coverage(real, fake, k=5) # Kynkäänniemi et al. 2019; Naeem et al. 2020
    nearest, dist = nearest_owner(queries, references, owners)
    spacing = nearest_other_distance(references, owners)     # each real image's distance to its nearest other real one

Which features (a NeuNN classifier's penultimate layer, Inception, raw pixels) is the caller's choice. FID is biased
upwards for small sets, so it is only comparable between sets of equal sizes; KID is unbiased, hence the better number
for a rare class with a few dozen held-out images.
"""

from __future__ import annotations

import numpy as np


def _float64(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"expected an N×D array with N ≥ 2, got shape {a.shape}")
    return a


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """‖μr − μf‖² + Tr(Σr + Σf − 2(Σr Σf)^½), with the trace term from a symmetric eigendecomposition (stable)."""
    real, fake = _float64(real), _float64(fake)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root_r = _sqrt_psd(cov_r)
    # Tr((Σr Σf)^½) = Tr((Σr^½ Σf Σr^½)^½): the second matrix is symmetric PSD, so its eigenvalues are safe to root.
    middle = root_r @ cov_f @ root_r
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + np.trace(cov_r) + np.trace(cov_f) - 2 * trace_root)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d, m, n = x.shape[1], len(x), len(y)
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    return float((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                 - 2 * k_xy.mean())


def kernel_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation over random subsets of the unbiased MMD² with kernel (x·y/d + 1)³."""
    real, fake = _float64(real), _float64(fake)
    if len(real) <= subset_size and len(fake) <= subset_size:
        return _mmd2_unbiased(real, fake), 0.0  # small sets: the exact value on all of both, no subsets
    size = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    values = [_mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                             fake[rng.choice(len(fake), size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radius(points: np.ndarray, k: int) -> np.ndarray:
    distances = pairwise_distances(points, points)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def precision_recall_density_coverage(real: np.ndarray, fake: np.ndarray, *, k: int = 5) -> dict[str, float]:
    """Precision, recall (k-NN manifolds) and density, coverage (real k-NN balls) of ``fake`` against ``real``."""
    real, fake = _float64(real), _float64(fake)
    k = min(k, len(real) - 1, len(fake) - 1)
    real_radius, fake_radius = _kth_neighbour_radius(real, k), _kth_neighbour_radius(fake, k)
    d = pairwise_distances(real, fake)  # real × fake
    inside_real = d < real_radius[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_radius[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < real_radius).mean()),
        "k": k,
    }


def nearest_owner(queries: np.ndarray, references: np.ndarray, owners: np.ndarray | None = None,
                  n_owners: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the nearest reference image and its distance; ``owners`` maps several reference rows
    (e.g. the 8 flips/rotations of one image) to one image index."""
    d = pairwise_distances(queries, references)
    if owners is not None:
        d = _min_per_owner(d, owners, n_owners or int(owners.max()) + 1)
    return d.argmin(axis=1), d.min(axis=1)


def _min_per_owner(d: np.ndarray, owners: np.ndarray, n_owners: int) -> np.ndarray:
    out = np.full((d.shape[0], n_owners), np.inf)
    for column, owner in enumerate(owners):
        np.minimum(out[:, owner], d[:, column], out=out[:, owner])
    return out


def nearest_other_distance(images: np.ndarray, references: np.ndarray | None = None,
                           owners: np.ndarray | None = None) -> np.ndarray:
    """Each image's distance to its nearest *other* image (through any of its reference variants).

    Exact duplicates (distance 0) are skipped, so a duplicated photo does not make its twin's spacing zero.
    """
    references = images if references is None else references
    d = pairwise_distances(images, references)
    if owners is not None:
        d = _min_per_owner(d, owners, len(images))
    np.fill_diagonal(d, np.inf)
    d[d <= 1e-12] = np.inf
    spacing = d.min(axis=1)
    return np.where(np.isfinite(spacing), spacing, 0.0)


def copy_ratios(nearest: np.ndarray, distance: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance of each query to its nearest real image, divided by that real image's distance to its own nearest
    neighbour; a ratio well below 1 means the query is closer to a training image than any other real cell is."""
    base = spacing[nearest]
    return np.where(base > 0, distance / np.where(base > 0, base, 1.0), np.inf)
