"""How the cytoplasm-pallor statistic was chosen, and what choosing it costs: ~100 variants on a folder-per-class set,
each variant's ROC AUC on all cells, and the selection repeated inside each fold on the fold's non-test cells only.

    PYTHONPATH=src python benchmarks/pallor_variants.py ../shared/data/neutro-vac-dev --positive vacuolated \
        --folds /tmp/vacab/crop-only/splits

Variants: the optical density of the cytoplasm (summed over channels, against the crop's background light), raw or
smoothed (sigma 1 or 2 px), over the whole band, its inner part (within 14 px of the nucleus) or the band eroded by
3 px;
its 0.5th, 1st, 2nd or 5th percentile, raw or divided by the median, and the share of pixels under half the median.
A variant and its sign (paler = positive or not) are chosen by ROC AUC on a fold's non-test cells and scored on its
test cells; the pooled test cells then say what the procedure, not one lucky variant, achieves. The shipped
`neunn.data.cytoplasm_pallor` is the variant every fold chose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from neunn.data.cell_regions import background_light, find_cytoplasm, find_nucleus, stand_in_nucleus
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.evaluation.metrics import roc_auc_one_vs_rest
from neunn.evaluation.rare_class import average_precision


def variants(rgb: np.ndarray) -> dict[str, float]:
    light = background_light(rgb)
    nucleus = find_nucleus(rgb)
    if not nucleus.any():
        nucleus = stand_in_nucleus(rgb)
    band = find_cytoplasm(rgb, nucleus, light)
    distance = ndimage.distance_transform_edt(~nucleus)
    od = np.maximum(-np.log(np.maximum(rgb.astype(float), 1) / light), 0).sum(axis=2)
    parts = {"all": band, "inner": band & (distance <= 14), "eroded": ndimage.binary_erosion(band, iterations=3)}
    out = {}
    for sigma in (0, 1.0, 2.0):
        density = ndimage.gaussian_filter(od, sigma) if sigma else od
        for part, mask in parts.items():
            values = density[mask] if mask.sum() > 50 else density[band]
            median = np.median(values)
            for q in (0.5, 1, 2, 5):
                out[f"p{q} s{sigma:g} {part}"] = float(np.percentile(values, q))
                out[f"p{q}/median s{sigma:g} {part}"] = float(np.percentile(values, q) / median)
            out[f"share under median/2 s{sigma:g} {part}"] = float((values < 0.5 * median).mean())
    return out


def interval(fn, scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    rng, values = np.random.default_rng(0), []
    for _ in range(1000):
        draw = rng.integers(0, len(scores), len(scores))
        if positive[draw].any() and not positive[draw].all():
            values.append(fn(scores[draw], positive[draw]))
    return tuple(100 * np.percentile(values, [2.5, 97.5]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--positive", required=True)
    parser.add_argument("--folds", type=Path, required=True, help="a cross-validation's splits/ folder")
    args = parser.parse_args()
    scan = scan_dataset(args.data)
    paths = sorted(r.path for r in scan.images)
    label = {r.path: r.label for r in scan.images}
    rows = [variants(np.asarray(Image.open(args.data / p).convert("RGB"))) for p in paths]
    names = list(rows[0])
    table = np.array([[r[n] for n in names] for r in rows])
    positive = np.array([label[p] == args.positive for p in paths])
    index = {p: i for i, p in enumerate(paths)}

    aucs = [roc_auc_one_vs_rest(table[:, j], positive) for j in range(len(names))]
    print(f"{len(names)} variants on all {len(paths)} cells; the ten furthest from chance (AUC, sign-free):")
    for j in sorted(range(len(names)), key=lambda j: -abs(aucs[j] - 0.5))[:10]:
        print(f"  {names[j]}: {100 * max(aucs[j], 1 - aucs[j]):.1f}")

    pooled = np.zeros(len(paths))
    for fold_file in sorted(args.folds.glob("fold-*.json")):
        test = np.array([index[e.path] for e in load_split(fold_file).splits["test"]])
        rest = np.setdiff1d(np.arange(len(paths)), test)
        fold_aucs = [roc_auc_one_vs_rest(table[rest, j], positive[rest]) for j in range(len(names))]
        j = int(np.argmax([abs(a - 0.5) for a in fold_aucs]))
        sign = 1.0 if fold_aucs[j] > 0.5 else -1.0
        pooled[test] = sign * table[test, j]
        print(f"{fold_file.stem}: chose '{names[j]}' ({'higher' if sign > 0 else 'lower'} = {args.positive}), "
              f"AUC {100 * max(fold_aucs[j], 1 - fold_aucs[j]):.1f} on its non-test cells")
    auc, ap = roc_auc_one_vs_rest(pooled, positive), average_precision(pooled, positive)
    low, high = interval(roc_auc_one_vs_rest, pooled, positive)
    ap_low, ap_high = interval(average_precision, pooled, positive)
    print(f"selection inside each fold, pooled test cells: ROC AUC {100 * auc:.1f} [{low:.1f}, {high:.1f}], "
          f"average precision {100 * ap:.1f} [{ap_low:.1f}, {ap_high:.1f}]")


if __name__ == "__main__":
    main()
