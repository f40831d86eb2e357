"""How separable the phantom classes are by colour alone, against how well a small CNN learns them.

Renders N phantom images per class, turns each into a normalised 8x8x8 RGB histogram (and an HSV one), fits a
scikit-learn LogisticRegression (and, as a stronger colour-only check, gradient-boosted trees) on a stratified 70 %
and reports accuracy on the other 30 %. The phantom's cues are small in area, so this should stay well below what a
CNN reaches. It also times rendering (run it under `taskset -c 0` for a one-core figure), can train a small CNN on the
same split as a learnability check (`--cnn-epochs`), and can draw the contact sheet used in docs/phantom.md.

    PYTHONPATH=src python benchmarks/phantom_baseline.py --per-class 200 --out runs/phantom_baseline.json
    PYTHONPATH=src python benchmarks/phantom_baseline.py --per-class 0 --sheet docs/img/phantom_sheet.png
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from neunn import NEUTROPHIL_CLASSES
from neunn.data.phantom import GENERATOR_VERSION, cell_seed, render_cell


def colour_histogram(rgb: np.ndarray, bins: int = 8, space: str = "RGB") -> np.ndarray:
    """Normalised bins**3 joint histogram of an RGB uint8 image, in RGB or HSV."""
    pixels = np.asarray(Image.fromarray(rgb).convert(space)) if space != "RGB" else rgb
    quantised = (pixels.reshape(-1, 3).astype(np.int64) * bins) // 256
    codes = (quantised[:, 0] * bins + quantised[:, 1]) * bins + quantised[:, 2]
    return np.bincount(codes, minlength=bins**3) / codes.size


def render_set(per_class: int, seed: int, size: int) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Images and labels of a phantom set, in memory, and the render rate in images per wall and per CPU second."""
    images, labels = [], []
    start, start_cpu = time.perf_counter(), time.process_time()
    for label_index, label in enumerate(NEUTROPHIL_CLASSES):
        for index in range(per_class):
            images.append(render_cell(label, cell_seed(label, index, seed), size))
            labels.append(label_index)
    # CPU time is what one core spends; on a shared machine the wall-clock rate is lower by the waiting.
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    rates = {"images_per_s": round(len(images) / wall, 1), "images_per_cpu_s": round(len(images) / cpu, 1)}
    return images, np.array(labels), rates


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified 70/30 train/test split."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    train, test = train_test_split(indices, test_size=0.3, stratify=labels, random_state=seed)
    return train, test


def scores(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy and per-class recall."""
    hits = predicted == truth
    recall = {label: round(float(hits[truth == k].mean()), 3) for k, label in enumerate(NEUTROPHIL_CLASSES)}
    return {"accuracy": round(float(hits.mean()), 4), "recall": recall}


def histogram_baseline(images: list[np.ndarray], labels: np.ndarray, parts: tuple, space: str,
                       boosting: bool = False) -> dict:
    """Scores of colour histograms + standardised logistic regression (or gradient-boosted trees)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.stack([colour_histogram(image, 8, space) for image in images])
    train, test = parts
    if boosting:
        model = HistGradientBoostingClassifier(random_state=0)
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(features[train], labels[train])
    return scores(model.predict(features[test]), labels[test])


def small_cnn(images: list[np.ndarray], labels: np.ndarray, parts: tuple, epochs: int, seed: int) -> dict:
    """Scores of a 10-layer CNN trained from scratch on CPU (flips and 90-degree turns), as a learnability check."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def block(width_in: int, width_out: int) -> nn.Sequential:
        conv = [nn.Conv2d(width_in, width_out, 3, padding=1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU(),
                nn.Conv2d(width_out, width_out, 3, padding=1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU()]
        return nn.Sequential(*conv, nn.MaxPool2d(2))

    widths = [3, 16, 32, 48, 64, 96]
    net = nn.Sequential(*(block(i, o) for i, o in zip(widths, widths[1:], strict=False)), nn.AdaptiveMaxPool2d(1),
                        nn.Flatten(), nn.Linear(widths[-1], len(NEUTROPHIL_CLASSES)))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(labels)
    train, test = (torch.from_numpy(part) for part in parts)
    steps = epochs * ((len(train) + 63) // 64)
    optimiser = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 4e-3, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        for batch in train[torch.randperm(len(train))].split(64):
            inputs = torch.rot90(x[batch], epoch % 4, (2, 3))
            inputs = inputs.flip(3) if epoch % 2 else inputs
            loss = nn.functional.cross_entropy(net(inputs), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(x[batch]).argmax(1) for batch in test.split(256)])
    return {"epochs": epochs, **scores(predicted.numpy(), labels[parts[1]])}


def contact_sheet(path: Path, seed: int, size: int = 128, columns: int = 6, max_bytes: int = 290_000) -> int:
    """Save a 7-row sheet, a labelled row per class, of each class's first `columns` images; return its palette size."""
    label_width = 78
    sheet = Image.new("RGB", (label_width + columns * size, len(NEUTROPHIL_CLASSES) * size), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for row, label in enumerate(NEUTROPHIL_CLASSES):
        draw.text((8, row * size + size // 2 - 9), label, fill="black", font=font)
        for column in range(columns):
            tile = Image.fromarray(render_cell(label, cell_seed(label, column, seed), size))
            sheet.paste(tile, (label_width + column * size, row * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Pixel noise makes a lossless RGB sheet over 1 MB; the richest palette that fits the docs' budget is used instead.
    for colours in (256, 192, 128, 96, 64, 48):
        encoded = io.BytesIO()
        sheet.quantize(colors=colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            encoded, format="PNG", optimize=True)
        if encoded.tell() <= max_bytes:
            break
    path.write_bytes(encoded.getvalue())
    return colours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200, help="images per class (0: skip the baseline)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--sheet", type=Path, help="write a 7x6 contact sheet PNG here")
    parser.add_argument("--cnn-epochs", type=int, default=0, help="also train a small CNN for this many epochs (slow)")
    args = parser.parse_args()
    if args.sheet:
        colours = contact_sheet(args.sheet, args.seed)
        print(f"contact sheet: {args.sheet} ({args.sheet.stat().st_size // 1024} KiB, {colours}-colour palette)")
    if args.per_class <= 0:
        return
    images, labels, rates = render_set(args.per_class, args.seed, args.size)
    parts = split(labels, args.seed)
    result = {
        "synthetic": True, "generator_version": GENERATOR_VERSION, "per_class": args.per_class, "size": args.size,
        "seed": args.seed, "render": rates, "chance": round(1 / len(NEUTROPHIL_CLASSES), 4),
        "histogram_rgb_8x8x8": histogram_baseline(images, labels, parts, "RGB"),
        "histogram_hsv_8x8x8": histogram_baseline(images, labels, parts, "HSV"),
        "histogram_rgb_8x8x8_boosted_trees": histogram_baseline(images, labels, parts, "RGB", boosting=True),
    }
    if args.cnn_epochs:
        result["small_cnn"] = small_cnn(images, labels, parts, args.cnn_epochs, args.seed)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
