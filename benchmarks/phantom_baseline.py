"""How separable the phantom classes are by colour alone: a colour-histogram logistic-regression baseline.

Renders N phantom images per class, turns each into a normalised 8x8x8 RGB histogram (and an HSV one), fits a
scikit-learn LogisticRegression on a stratified 70 % and reports accuracy on the other 30 %. The phantom's cues are
meant to be small in area, so this should stay well below what a CNN reaches. Also times rendering (run it under
`taskset -c 0` for a one-core figure) and can draw the contact sheet used in docs/phantom.md.

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


def render_set(per_class: int, seed: int, size: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Images and labels of a phantom set, in memory, and the render rate in images per second."""
    images, labels = [], []
    start = time.perf_counter()
    for label_index, label in enumerate(NEUTROPHIL_CLASSES):
        for index in range(per_class):
            images.append(render_cell(label, cell_seed(label, index, seed), size))
            labels.append(label_index)
    elapsed = time.perf_counter() - start
    return images, np.array(labels), len(images) / elapsed


def histogram_baseline(images: list[np.ndarray], labels: np.ndarray, space: str, seed: int) -> dict:
    """Test accuracy and per-class recall of colour histograms + logistic regression on a stratified 70/30 split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.stack([colour_histogram(image, 8, space) for image in images])
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.3, stratify=labels,
                                                        random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(x_train, y_train)
    hits = model.predict(x_test) == y_test
    recall = {label: round(float(hits[y_test == k].mean()), 3) for k, label in enumerate(NEUTROPHIL_CLASSES)}
    return {"accuracy": round(float(hits.mean()), 4), "recall": recall}


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
    args = parser.parse_args()
    if args.sheet:
        colours = contact_sheet(args.sheet, args.seed)
        print(f"contact sheet: {args.sheet} ({args.sheet.stat().st_size // 1024} KiB, {colours}-colour palette)")
    if args.per_class <= 0:
        return
    images, labels, rate = render_set(args.per_class, args.seed, args.size)
    result = {
        "synthetic": True, "generator_version": GENERATOR_VERSION, "per_class": args.per_class, "size": args.size,
        "seed": args.seed, "render_images_per_s": round(rate, 1), "chance": round(1 / len(NEUTROPHIL_CLASSES), 4),
        "rgb_8x8x8": histogram_baseline(images, labels, "RGB", args.seed),
        "hsv_8x8x8": histogram_baseline(images, labels, "HSV", args.seed),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
