"""``neunn gan evaluate``: how good and how new a GAN's samples are, with nothing downloaded.

    report = evaluate_gan("gan/GBI", classifier_run="runs/b7")     # → GAN_DIR/quality/quality.json + quality.html

For each class of the GAN it draws ``n`` samples (seeds ``seed``…, exactly the images `neunn gan sample` writes) and
compares them with the real training images the GAN saw, in the penultimate-layer feature space of a trained NeuNN
classifier: FID, KID, precision/recall and density/coverage; the classifier's agreement (share of samples classified
as the intended class); and a memorisation check: each sample's nearest training image in feature space and in pixel
space (over the 8 flips/rotations), as a ratio to that training image's distance to its own nearest real neighbour.
Held-out real images of the class (the split's val + test) go through the very same measurements, so every number has
a real-vs-real reference beside it. Inception-feature FID is added when local Inception-v3 weights are given.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neunn import __version__
from neunn.atomic import write_text_atomic
from neunn.data.image_io import UnreadableImage, load_rgb
from neunn.data.preprocess import image_to_uint8
from neunn.data.split import load_split
from neunn.errors import NeunnError
from neunn.gan.folder import GanDir
from neunn.gan.quality import (
    copy_ratios,
    frechet_distance,
    kernel_distance,
    nearest_other_distance,
    nearest_owner,
    precision_recall_density_coverage,
)
from neunn.gan.sample import generate_images, load_generator, pick_class, to_image
from neunn.inference.engines import load_torch_engine
from neunn.inference.forward import batched_outputs
from neunn.inference.tta import dihedral_views
from neunn.log import say
from neunn.rundir import RunDir
from neunn.runtime import resolve_device

PIXEL_SIZE = 64  # pixel-space memorisation is measured on 64×64 thumbnails (or the GAN's size when smaller)
NEAR_COPY_RATIO = 0.5


def classifier_features(model: torch.nn.Module, pixels: torch.Tensor, *, mean, std, device: torch.device,
                        batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate-layer features and logits of a timm classifier for an N×3×S×S uint8 batch (float64)."""
    logits, features = batched_outputs(model.to(device), pixels, mean=mean, std=std, device=device,
                                       batch_size=batch_size)
    return features.numpy().astype(np.float64), logits.numpy().astype(np.float64)


def _dihedral_variants(pixels: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """The 8 flips/rotations of each image, and the index of the image each variant came from."""
    variants = dihedral_views(pixels)
    owners = np.tile(np.arange(len(pixels)), len(variants))
    return torch.cat(variants), owners


def _flat(pixels: torch.Tensor) -> np.ndarray:
    """uint8 images as rows of floats in [0, 1], scaled so that distances are RMS pixel differences."""
    x = pixels.reshape(len(pixels), -1).numpy().astype(np.float64) / 255.0
    return x / np.sqrt(x.shape[1])


def _load_real(data_dir: Path, paths: list[str], sizes: tuple[int, int], jpeg_draft: bool,
               crop: float) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Real images at the classifier's size (decoded as it was trained: JPEG draft or not) and at the pixel-space size."""
    kept, big, small = [], [], []
    for path in paths:
        try:
            image = load_rgb(data_dir / path, draft_size=math.ceil(sizes[0] / crop) if jpeg_draft else None).image
        except (UnreadableImage, OSError) as exc:
            say(f"  skipped {path}: {exc}")
            continue
        kept.append(path)
        big.append(image_to_uint8(image, sizes[0], crop))
        small.append(image_to_uint8(image, sizes[1]))
    if not kept:
        raise NeunnError(f"None of the {len(paths)} real images could be read from {data_dir}.")
    return kept, torch.stack(big), torch.stack(small)


def _memorisation(queries: dict[str, tuple[np.ndarray, np.ndarray]], train: tuple[np.ndarray, np.ndarray],
                  ratio: float) -> dict[str, Any]:
    """Nearest-training-image ratios in pixel and feature space for each query set (synthetic, held-out real)."""
    (train_pix_variants, owners), train_feat = train
    n = len(train_feat)
    spacing = {"pixel": nearest_other_distance(train_pix_variants[: n], train_pix_variants, owners),
               "feature": nearest_other_distance(train_feat)}
    out: dict[str, Any] = {"near_copy_ratio": ratio}
    for name, (pix, feat) in queries.items():
        result = {}
        for space, q, refs, own in (("pixel", pix, train_pix_variants, owners), ("feature", feat, train_feat, None)):
            nearest, distance = nearest_owner(q, refs, own, n)
            ratios = copy_ratios(nearest, distance, spacing[space])
            finite = ratios[np.isfinite(ratios)]  # inf only where a training image has no distinct neighbour
            result[space] = {"nearest": nearest.tolist(), "distance": distance.tolist(),
                             "ratio": [float(r) if np.isfinite(r) else None for r in ratios],
                             "near_copies": int((ratios < ratio).sum()), "share_near_copies": float((ratios < ratio).mean()),
                             "min_ratio": float(finite.min()) if finite.size else None,
                             "median_ratio": float(np.median(finite)) if finite.size else None}
        out[name] = result
    return out


def _resize(pixels: torch.Tensor, size: int) -> torch.Tensor:
    x = torch.nn.functional.interpolate(pixels.float(), size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def _inception_fid(weights: Path | None, real: torch.Tensor, fake: torch.Tensor, device: torch.device) -> dict[str, Any]:
    if weights is None:
        return {"fid": None, "note": "no local Inception-v3 weights given (--inception-weights FILE.safetensors)"}
    import timm

    if Path(weights).suffix != ".safetensors" or not Path(weights).is_file():
        raise NeunnError(f"Inception weights {weights} must be an existing .safetensors file.")
    model = timm.create_model("inception_v3", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay={"file": str(weights)})
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    feats = [classifier_features(model, _resize(px, 299), mean=mean, std=std, device=device)[0] for px in (real, fake)]
    return {"fid": frechet_distance(*feats), "weights": str(weights),
            "note": "timm inception_v3 features; not comparable with published TF-Inception FIDs"}


def _evaluate_class(name: str, *, gan: GanDir, generator, gen_meta, model, clf_meta, data_dir: Path, n: int | None,
                    seed: int, device: torch.device, ratio: float, inception_weights: Path | None) -> dict[str, Any]:
    info, split = gan.read_info(), load_split(gan.splits)
    train_paths = [p for p, label, _ in info["training_images"] if label == name]
    heldout_paths = [e.path for s in ("val", "test") for e in split.splits.get(s, []) if e.label == name]
    clf_size, pix_size = int(clf_meta["img_size"]), min(PIXEL_SIZE, int(gen_meta["resolution"]))
    jpeg_draft, crop = bool(clf_meta.get("jpeg_draft", False)), float(clf_meta.get("crop", 1.0))
    train_paths, train_big, train_small = _load_real(data_dir, train_paths, (clf_size, pix_size), jpeg_draft, crop)
    n = n or max(len(train_paths), 100)
    seeds = list(range(seed, seed + n))
    say(f"{name}: {n} samples against {len(train_paths)} training and {len(heldout_paths)} held-out real images")
    raw = generate_images(generator, seeds, gen_meta["classes"].index(name), device)
    images = [to_image(px, tuple(gen_meta["image_size"])) for px in raw]
    fake_big = torch.stack([image_to_uint8(im, clf_size, crop) for im in images])
    fake_small = torch.stack([image_to_uint8(im, pix_size) for im in images])

    def features(pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return classifier_features(model, pixels, mean=clf_meta["mean"], std=clf_meta["std"], device=device)

    train_feat, _ = features(train_big)
    fake_feat, fake_logits = features(fake_big)
    class_index = list(clf_meta["classes"]).index(name)
    probs = torch.softmax(torch.from_numpy(fake_logits) / float(clf_meta.get("temperature", 1.0)), 1).numpy()
    predicted = Counter(clf_meta["classes"][i] for i in fake_logits.argmax(1))
    kid, kid_sd = kernel_distance(train_feat, fake_feat)
    result: dict[str, Any] = {
        "n_synthetic": n, "seeds": [seeds[0], seeds[-1]], "n_train": len(train_paths), "n_heldout": 0,
        "fid": frechet_distance(train_feat, fake_feat), "kid": kid, "kid_sd": kid_sd,
        "prdc": precision_recall_density_coverage(train_feat, fake_feat),
        "agreement": predicted[name] / n, "mean_probability": float(probs[:, class_index].mean()),
        "predicted_as": dict(predicted.most_common()),
    }
    queries = {"synthetic": (_flat(fake_small), fake_feat)}
    if len(heldout_paths) >= 2:
        heldout_paths, held_big, held_small = _load_real(data_dir, heldout_paths, (clf_size, pix_size), jpeg_draft,
                                                             crop)
        held_feat, held_logits = features(held_big)
        kid_ref, kid_ref_sd = kernel_distance(train_feat, held_feat)
        result["n_heldout"] = len(heldout_paths)
        result["reference"] = {  # the same measurements for real held-out cells: what a perfect generator would score
            "fid": frechet_distance(train_feat, held_feat), "kid": kid_ref, "kid_sd": kid_ref_sd,
            "prdc": precision_recall_density_coverage(train_feat, held_feat),
            "agreement": float((held_logits.argmax(1) == class_index).mean())}
        queries["heldout"] = (_flat(held_small), held_feat)
    variants, owners = _dihedral_variants(train_small)
    result["memorisation"] = _memorisation(queries, ((_flat(variants), owners), train_feat), ratio)
    result["memorisation"]["train_paths"] = train_paths
    result["inception"] = _inception_fid(inception_weights, train_big, fake_big, device)
    result["_images"] = {"fake": raw, "fake_small": fake_small, "train_small": train_small}
    return result


def _load_classifier(classifier_run: str | Path, device: torch.device):
    run = RunDir(Path(classifier_run))
    run.require_trained()
    engine = load_torch_engine(run, "best", device=str(device))
    return engine.model, engine.meta


def evaluate_gan(
    gan_dir: str | Path,
    *,
    classifier_run: str | Path,
    data_dir: str | Path | None = None,
    class_name: str | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    near_copy_ratio: float = NEAR_COPY_RATIO,
    inception_weights: str | Path | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Score a GAN's samples against its real training images; writes quality.json and quality.html, returns the dict."""
    from neunn.gan.report import write_quality_report

    gan = GanDir(Path(gan_dir))
    generator, gen_meta = load_generator(gan.root, device)
    info = gan.read_info()
    if "training_images" not in info or not gan.splits.is_file():
        raise NeunnError(f"{gan.root} lacks gan.json or splits.json; it is not a complete GAN folder.")
    data_dir = Path(data_dir or info["data_dir"])
    if n_samples is not None and n_samples < 2:
        raise NeunnError(f"Evaluation needs at least 2 samples, got {n_samples}.")
    names = [pick_class(gen_meta, class_name)] if class_name or len(gen_meta["classes"]) == 1 else gen_meta["classes"]
    dev = resolve_device(device)
    model, clf_meta = _load_classifier(classifier_run, dev)
    missing = [c for c in names if c not in clf_meta["classes"]]
    if missing:
        raise NeunnError(f"The classifier in {classifier_run} does not know class {missing[0]}; use one trained on "
                         "the GAN's dataset.")
    per_class = {name: _evaluate_class(name, gan=gan, generator=generator, gen_meta=gen_meta, model=model,
                                       clf_meta=clf_meta, data_dir=data_dir, n=n_samples, seed=seed, device=dev,
                                       ratio=near_copy_ratio, inception_weights=inception_weights)
                 for name in names}
    images = {name: result.pop("_images") for name, result in per_class.items()}
    report = {"gan_dir": str(gan.root.resolve()), "step": gen_meta["step"], "resolution": gen_meta["resolution"],
              "classifier_run": str(Path(classifier_run).resolve()), "classifier_arch": clf_meta["arch"],
              "classifier_img_size": clf_meta["img_size"], "features": "classifier penultimate layer",
              "same_split": clf_meta.get("split_digest") == info.get("split_digest"), "data_dir": str(data_dir),
              "neunn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "classes": per_class}
    if not report["same_split"]:
        say("note: the classifier was trained on another split than the GAN; its held-out references may be optimistic")
    folder = Path(out) if out else gan.quality
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "quality.json", json.dumps(report, indent=1, allow_nan=False, default=_jsonable))
    write_quality_report(folder, report, images)
    with open(folder / "history.jsonl", "a") as fh:  # one line per evaluation, so snapshots can be compared later
        fh.write(json.dumps(summarise(report), default=_jsonable) + "\n")
    return report


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a quality report: per class FID, KID, PRDC, agreement and near-copy counts."""
    rows = {}
    for name, r in report["classes"].items():
        memo = r["memorisation"]["synthetic"]
        rows[name] = {"fid": r["fid"], "kid": r["kid"], **{k: r["prdc"][k] for k in ("precision", "recall", "density",
                                                                                          "coverage")},
                      "agreement": r["agreement"], "near_copies_pixel": memo["pixel"]["near_copies"],
                      "near_copies_feature": memo["feature"]["near_copies"], "n_synthetic": r["n_synthetic"],
                      "heldout_agreement": r.get("reference", {}).get("agreement")}
    return {"step": report["step"], "created": report["created"], "classes": rows}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
