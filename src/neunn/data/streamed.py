"""Training images read from disk batch by batch, for datasets whose decoded set would not fit in memory.

    images = streamed_images(root, entries, classes, size=360, jpeg_draft=True, workers=8)
    for pixels, labels, index in images.batches(order, per_batch=32, steps=100, pin_memory=True):
        ...                                   # N×3×360×360 uint8 and N int64, decoded by DataLoader worker processes

It has the interface of the in-memory set (``labels``, ``paths``, ``len``, ``concat``, ``batches``), so the training
loop does not know which one it holds, and the epoch order, the batches and the on-device augmentation are the same
draws either way: a streamed run learns exactly what an in-memory run learns. A file that can no longer be decoded is
left out of its batch and named, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from neunn.data.image_io import UnreadableImage
from neunn.data.preprocess import load_pixels


class _Files(Dataset):
    def __init__(self, files: list[Path], size: int, jpeg_draft: bool, crop: float) -> None:
        self.files, self.size, self.jpeg_draft, self.crop = files, size, jpeg_draft, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | str]:
        try:
            return i, load_pixels(self.files[i], self.size, jpeg_draft=self.jpeg_draft, crop=self.crop)
        except (UnreadableImage, OSError) as exc:
            return i, str(exc)


def _collate(items: list[tuple[int, torch.Tensor | str]]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """Stack the decoded images of a batch; keep (index, reason) for those that failed."""
    good = [(i, px) for i, px in items if isinstance(px, torch.Tensor)]
    failed = [(i, px) for i, px in items if isinstance(px, str)]
    pixels = torch.stack([px for _, px in good]) if good else torch.empty(0, dtype=torch.uint8)
    return torch.tensor([i for i, _ in good], dtype=torch.long), pixels, failed


@dataclass
class StreamedImages:
    """Image files with their integer labels, decoded only when a batch asks for them."""

    files: list[Path]
    labels: torch.Tensor
    paths: list[str]
    size: int
    jpeg_draft: bool
    crop: float = 1.0
    workers: int = 2
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def concat(self, other: StreamedImages) -> StreamedImages:
        return StreamedImages(self.files + other.files, torch.cat([self.labels, other.labels]),
                              self.paths + other.paths, self.size, self.jpeg_draft, self.crop, self.workers,
                              self.skipped + other.skipped)

    def batches(self, order: torch.Tensor, *, per_batch: int, steps: int, pin_memory: bool = False,
                on_skip: Callable[[str, str], None] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(pixels, labels, index in the set) for the first ``steps`` batches of ``order``, decoded ahead by worker
        processes; a file that cannot be decoded is left out of its batch.

        ``on_skip(path, reason)`` hears once about each file that could not be decoded.
        """
        plan = [order[i * per_batch : (i + 1) * per_batch].tolist() for i in range(steps)]
        loader = DataLoader(_Files(self.files, self.size, self.jpeg_draft, self.crop), batch_sampler=plan,
                            num_workers=self.workers, collate_fn=_collate, pin_memory=pin_memory,
                            prefetch_factor=4 if self.workers else None,
                            generator=torch.Generator())  # its own: the global one draws dropout, untouched here
        named = {path for path, _ in self.skipped}
        for idx, pixels, failed in loader:
            for i, reason in failed:
                if self.paths[i] not in named:
                    named.add(self.paths[i])
                    self.skipped.append((self.paths[i], reason))
                    if on_skip is not None:
                        on_skip(self.paths[i], reason)
            yield pixels, self.labels[idx], idx


def streamed_images(root: Path, entries: Sequence, classes: Sequence[str], *, size: int, jpeg_draft: bool,
                    crop: float = 1.0, workers: int = 2) -> StreamedImages:
    """The entries (anything with ``.path`` and ``.label``) of a dataset folder, to be decoded batch by batch."""
    index = {c: i for i, c in enumerate(classes)}
    return StreamedImages(files=[Path(root) / e.path for e in entries],
                          labels=torch.tensor([index[e.label] for e in entries], dtype=torch.long),
                          paths=[e.path for e in entries], size=size, jpeg_draft=jpeg_draft, crop=crop,
                          workers=workers)
