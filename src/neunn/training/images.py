"""The images a training run learns from: its training split (plus synthetic and added images) and its validation split.

    train_set, val_set = training_images(setup, device, progress=True)
    for pixels, labels, index in train_set.batches(order, per_batch=32, steps=93): ...

The training set is decoded once into memory (moved to GPU memory or pinned on a GPU machine) or, when its decoded size
would not fit (``data_cache=auto``) or when asked (``data_cache=stream``), streamed from disk batch by batch; both give
the same batches. The validation set is always decoded into memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neunn.data.decoded import DecodedImages, decode_images
from neunn.data.streamed import StreamedImages, streamed_images
from neunn.log import say
from neunn.training.setup import TrainingRun
from neunn.runtime import available_memory_bytes

# Decode JPEGs at reduced DCT scale (never below the model's size) before resizing: about twice as fast, and recorded in
# the checkpoint so prediction prepares images the same way (runs trained before it existed decode in full).
JPEG_DRAFT = True

TrainingImages = DecodedImages | StreamedImages  # both give labels, len, concat and batches

# With data_cache=auto, stream from disk when the decoded training set would take more than this share of free memory.
MEMORY_SHARE = 0.5


def say_skipped(path: str, reason: str) -> None:
    """Name a training image that could not be decoded (and is left out)."""
    say(f"  skipped {path}: {reason}")


def training_images(setup: TrainingRun, device: torch.device, progress: bool) -> tuple[TrainingImages, DecodedImages]:
    """The training set (decoded into memory, or streamed from disk when it would not fit) and the validation set."""
    cfg, classes = setup.cfg, setup.split.classes
    sources = [(setup.data_dir, setup.split.splits["train"], "decode train")]
    sources += [(s.root, s.images, f"decode {s.kind}") for s in setup.extra if s.images]
    needed = sum(len(entries) for _, entries, _ in sources) * 3 * cfg.img_size**2
    available = available_memory_bytes()
    stream = cfg.data_cache == "stream" or (cfg.data_cache == "auto" and available is not None
                                            and needed > MEMORY_SHARE * available)

    def decode(root: Path, entries, desc: str) -> DecodedImages:
        images = decode_images(root, entries, classes, size=cfg.img_size, jpeg_draft=JPEG_DRAFT, crop=cfg.crop,
                               workers=cfg.workers, progress=progress, desc=desc)
        for path, reason in images.skipped:
            say_skipped(path, reason)
        return images

    def load(root: Path, entries, desc: str) -> TrainingImages:
        if stream:
            return streamed_images(root, entries, classes, size=cfg.img_size, jpeg_draft=JPEG_DRAFT, crop=cfg.crop,
                                   workers=cfg.workers)
        return decode(root, entries, desc)

    train_set = load(*sources[0])
    for source in sources[1:]:
        train_set = train_set.concat(load(*source))
    val_set = decode(setup.data_dir, setup.split.splits["val"], "decode val")
    if stream:
        say(f"training images stream from disk ({cfg.workers} decoding processes): decoded they would take "
            f"{needed / 2**30:.1f} GiB" + (f" of {available / 2**30:.1f} GiB available" if available else ""))
    else:
        say(f"training images decoded once into {train_set.place(device)} ({needed / 2**20:,.0f} MiB)")
    return train_set, val_set
