"""Out-of-domain scores compared on one run: in-domain test cells against another laboratory's cells.

    python benchmarks/ood_methods.py RUN OTHER_DATA [--threads 1]

Each method (:mod:`neunn.inference.out_of_domain`) is fitted on the run's training split, thresholded at the 95th
percentile of its validation split, and scored on its test split (in domain) and on every image of OTHER_DATA whose
class the model knows (out of domain). Printed per method, with 95 % Wilson intervals: the share of in-domain test
cells flagged, the accuracy on unflagged in-domain cells (neither flagged nor under the review threshold), the share of
the other lab's cells flagged, the share of them wrong and unflagged, and the AUROC of in-domain against other cells.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from neunn.data.decoded import decode_images
from neunn.data.scan import scan_dataset
from neunn.data.split import load_split
from neunn.inference.engines import load_torch_engine
from neunn.inference.out_of_domain import fit_scorer
from neunn.inference.policy import DecisionPolicy
from neunn.rundir import RunDir

CANDIDATES = [("mahalanobis", {}), ("knn", {"k": 1}), ("knn", {"k": 10}), ("knn", {"k": 50}), ("energy", {}),
              ("max_logit", {})]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return (centre - half, centre + half)


def share(mask: np.ndarray) -> dict:
    k, n = int(mask.sum()), len(mask)
    low, high = wilson(k, n)
    return {"k": k, "n": n, "share": k / n if n else math.nan, "low": low, "high": high}


def outputs(engine, root: Path, entries, classes, meta) -> dict:
    images = decode_images(root, entries, classes, size=int(meta["img_size"]), jpeg_draft=bool(meta.get("jpeg_draft")),
                           crop=float(meta.get("crop", 1.0)), workers=2)
    logits, features = engine.outputs(images.pixels)
    return {"logits": logits, "features": features, "labels": images.labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = RunDir(args.run)
    engine = load_torch_engine(run)
    meta, classes = engine.meta, list(engine.meta["classes"])
    temperature, policy = float(meta.get("temperature", 1.0)), DecisionPolicy.of_model(meta)
    split, data_dir = load_split(run.splits), Path(run.read_info()["data_dir"])
    sets = {name: outputs(engine, data_dir, split.splits[name], classes, meta) for name in ("train", "val", "test")}
    other = [r for r in scan_dataset(args.other).images if r.label in classes]
    sets["other"] = outputs(engine, args.other, other, classes, meta)
    for s in sets.values():
        probs = torch.softmax(s["logits"] / temperature, 1)
        s["correct"] = (probs.argmax(1) == s["labels"]).numpy()
        s["review"] = (probs.max(1).values < policy.review_threshold).numpy()
    results = []
    for method, kwargs in CANDIDATES:
        scorer = fit_scorer(method, sets["train"]["features"], sets["train"]["labels"], **kwargs)
        scores = {name: scorer.score(s["logits"], s["features"]) for name, s in sets.items()}
        scorer = scorer.with_threshold(scores["val"])
        flag = {name: scorer.flags(v) for name, v in scores.items()}
        test, oth = sets["test"], sets["other"]
        unflagged_test = ~flag["test"] & ~test["review"]
        results.append({
            "method": method + (f" k={kwargs['k']}" if kwargs else ""),
            "test_flagged": share(flag["test"]),
            "test_accuracy_unflagged": share(test["correct"][unflagged_test]),
            "other_flagged": share(flag["other"]),
            "other_wrong_unflagged": share(~oth["correct"] & ~flag["other"] & ~oth["review"]),
            "auroc": float(roc_auc_score(np.r_[np.zeros(len(scores["test"])), np.ones(len(scores["other"]))],
                                         np.r_[scores["test"], scores["other"]])),
        })
    base = {"test_accuracy": share(sets["test"]["correct"]), "other_accuracy": share(sets["other"]["correct"]),
            "other_review": share(sets["other"]["review"])}
    print(json.dumps({"baseline": base, "methods": results}, indent=1))
    pct = lambda d: f"{100 * d['share']:.1f} [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"  # noqa: E731
    print("| method | in-domain test flagged | accuracy unflagged (test) | other lab flagged | other lab wrong & "
          "unflagged | AUROC |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {pct(r['test_flagged'])} | {pct(r['test_accuracy_unflagged'])} | "
              f"{pct(r['other_flagged'])} | {pct(r['other_wrong_unflagged'])} | {r['auroc']:.3f} |")


if __name__ == "__main__":
    main()
