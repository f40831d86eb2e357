"""A lead for the training recipe: BatchNorm running statistics re-estimated on clean (unaugmented) training cells.

Training with strong colour and stain augmentation leaves BatchNorm layers with running means and variances of
augmented images; at test time the cells are clean. This script takes a trained run, scores its test split, then
resets every BatchNorm layer's statistics, re-estimates them (cumulative average, no weights changed) on N of the
run's own training cells prepared exactly as for inference, and scores the test split again: accuracy before and after,
and the paired difference on the same cells with its 95 % interval and McNemar's p (neunn.evaluation.paired). No test
cell is used to estimate anything. Nothing is written to the run.

    PYTHONPATH=src python benchmarks/bn_clean_stats.py RUN DATA [--cells 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from neunn.data.split import load_split
from neunn.evaluation.paired import paired_difference
from neunn.inference.forward import normalize_batch
from neunn.inference.predictor import Predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--cells", type=int, default=1000, help="training cells to re-estimate the statistics on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    predictor = Predictor.from_run(args.run_dir)
    split = load_split(args.run_dir / "splits.json")

    def load(entries):
        pixels = torch.stack([predictor.load_pixels(args.data_dir / e.path) for e in entries])
        return pixels, np.array([predictor.classes.index(e.label) for e in entries])

    test_pixels, test_labels = load(split.splits["test"])
    paths = [e.path for e in split.splits["test"]]

    def correct() -> dict[str, bool]:
        right = predictor.probabilities(test_pixels).argmax(1) == test_labels
        return dict(zip(paths, right.tolist()))

    before = correct()
    order = np.random.default_rng(0).permutation(len(split.splits["train"]))[: args.cells]
    train_pixels, _ = load([split.splits["train"][i] for i in order])
    model = predictor.engine.model
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over every batch below
    model.train()
    with torch.no_grad():
        for start in range(0, len(train_pixels), 64):
            model(normalize_batch(train_pixels[start : start + 64], predictor.meta["mean"], predictor.meta["std"]))
    model.eval()
    result = paired_difference(before, correct())
    print(json.dumps({"run": str(args.run_dir), "test_cells": result["n"], "training_cells_used": len(train_pixels),
                      "accuracy_before": result["first_accuracy"], "accuracy_after": result["second_accuracy"],
                      "difference": result["difference"], "difference_ci95": result["difference_ci95"],
                      "only_before_right": result["only_first_right"], "only_after_right": result["only_second_right"],
                      "mcnemar_p": result["mcnemar_p"]}, indent=1))


if __name__ == "__main__":
    main()
