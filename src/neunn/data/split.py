"""Stratified train/val/test splits, saved as RUN_DIR/splits.json and checked against the dataset on every reuse.

    split = stratified_split(scan.images, fractions=(0.7, 0.1, 0.2), seed=0)
    save_split(split, run_dir / "splits.json")
    folds = stratified_folds(scan.images, k=5, seed=0)     # cross-validation: each image in one fold's test split
    split = load_split(run_dir / "splits.json"); verify_split(split, scan)   # raises when the data changed

Exact duplicates (same SHA-256) are kept together in one split, so the same picture never sits in train and test.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from neunn.atomic import write_text_atomic
from neunn.data.scan import DatasetScan, ImageRecord
from neunn.errors import NeunnError

SPLIT_NAMES = ("train", "val", "test")
SPLIT_FORMAT = 1


@dataclass(frozen=True)
class SplitEntry:
    """One file of a split: where it is (relative to the dataset root), its class and its content hash."""

    path: str
    label: str
    sha256: str


@dataclass
class DatasetSplit:
    """A fixed assignment of files to train/val/test, plus the class list it was made for."""

    classes: list[str]
    seed: int
    fractions: tuple[float, float, float]
    splits: dict[str, list[SplitEntry]]

    def digest(self) -> str:
        """A short content hash that identifies this split (stored in checkpoints)."""
        payload = json.dumps(self._payload(), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def _payload(self) -> dict:
        return {
            "classes": self.classes,
            "splits": {k: [[e.path, e.label, e.sha256] for e in v] for k, v in self.splits.items()},
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split."""
        return {
            name: {c: sum(e.label == c for e in entries) for c in self.classes}
            for name, entries in self.splits.items()
        }


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Split n items into train/val/test sizes; every non-zero fraction gets at least one item when n allows."""
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    while n_val + n_test >= n and (n_val or n_test):  # keep at least one training item
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def _shuffled_groups(images: list[ImageRecord], seed: int) -> dict[str, list[list[SplitEntry]]]:
    """Per class, its groups of byte-identical files (one group per distinct content), in a seeded order."""
    groups: dict[str, list[ImageRecord]] = defaultdict(list)
    for rec in sorted(images, key=lambda r: r.path):
        groups[rec.sha256].append(rec)
    by_class: dict[str, list[list[SplitEntry]]] = defaultdict(list)
    for members in groups.values():
        by_class[members[0].label].append([SplitEntry(r.path, r.label, r.sha256) for r in members])
    for label, class_groups in by_class.items():
        class_groups.sort(key=lambda g: g[0].path)
        # A per-class RNG keeps one class's assignment independent of the others' sizes.
        random.Random(f"{seed}:{label}").shuffle(class_groups)
    return dict(sorted(by_class.items()))


def _sorted_splits(splits: dict[str, list[SplitEntry]]) -> dict[str, list[SplitEntry]]:
    return {name: sorted(splits[name], key=lambda e: e.path) for name in SPLIT_NAMES}


def stratified_split(
    images: list[ImageRecord], *, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0
) -> DatasetSplit:
    """Assign images to train/val/test per class, seeded; duplicate files stay in one split."""
    splits: dict[str, list[SplitEntry]] = {name: [] for name in SPLIT_NAMES}
    by_class = _shuffled_groups(images, seed)
    for class_groups in by_class.values():
        start = 0
        for name, size in zip(SPLIT_NAMES, _allocate(len(class_groups), fractions)):
            for members in class_groups[start : start + size]:
                splits[name].extend(members)
            start += size
    return DatasetSplit(classes=list(by_class), seed=seed, fractions=tuple(fractions), splits=_sorted_splits(splits))


def stratified_folds(images: list[ImageRecord], k: int, *, seed: int = 0,
                     val_fraction: float = 0.125) -> list[DatasetSplit]:
    """k train/val/test splits in which every image is tested exactly once: each class's images are dealt round the
    folds, and each fold's validation images are ``val_fraction`` of its training folds, per class; seeded, and
    duplicate files stay together."""
    by_class = _shuffled_groups(images, seed)
    if k < 2:
        raise NeunnError(f"Cross-validation needs at least 2 folds, got {k}.")
    if not 0.0 < val_fraction < 1.0:
        raise NeunnError(f"val_fraction must be a fraction between 0 and 1, got {val_fraction}.")
    too_small = [label for label, groups in by_class.items() if len(groups) < 2]
    if too_small:
        raise NeunnError(f"Class '{too_small[0]}' has fewer than 2 distinct images, so a fold would train without it.")
    fold_of: dict[str, list[int]] = {}
    dealt = 0
    for label, groups in by_class.items():
        # Dealing on from where the previous class stopped keeps the folds' sizes within one image of each other.
        fold_of[label] = [(dealt + i) % k for i in range(len(groups))]
        dealt += len(groups)
    fractions = ((1 - 1 / k) * (1 - val_fraction), (1 - 1 / k) * val_fraction, 1 / k)
    folds = []
    for fold in range(k):
        splits: dict[str, list[SplitEntry]] = {name: [] for name in SPLIT_NAMES}
        for label, groups in by_class.items():
            rest = [g for g, f in zip(groups, fold_of[label]) if f != fold]
            random.Random(f"{seed}:{label}:fold{fold}").shuffle(rest)
            n_train, n_val, _ = _allocate(len(rest), (1 - val_fraction, val_fraction, 0.0))
            for name, chosen in (("test", [g for g, f in zip(groups, fold_of[label]) if f == fold]),
                                 ("val", rest[n_train:]), ("train", rest[:n_train])):
                splits[name].extend(e for members in chosen for e in members)
        folds.append(DatasetSplit(classes=list(by_class), seed=seed, fractions=fractions,
                                  splits=_sorted_splits(splits)))
    return folds


def save_split(split: DatasetSplit, path: Path) -> None:
    """Write splits.json atomically."""
    data = {
        "format": SPLIT_FORMAT,
        "digest": split.digest(),
        "seed": split.seed,
        "fractions": list(split.fractions),
        "classes": split.classes,
        "counts": split.counts(),
        "splits": {k: [e.__dict__ for e in v] for k, v in split.splits.items()},
    }
    write_text_atomic(path, json.dumps(data, indent=1))


def load_split(path: Path) -> DatasetSplit:
    """Read a splits.json written by :func:`save_split` (from this run or another one)."""
    try:
        data = json.loads(Path(path).read_text())
        splits = {k: [SplitEntry(**e) for e in v] for k, v in data["splits"].items()}
        split = DatasetSplit(data["classes"], int(data["seed"]), tuple(data["fractions"]), splits)
    except FileNotFoundError:
        raise NeunnError(f"Split file {path} does not exist.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NeunnError(f"Split file {path} is not a valid NeuNN splits.json ({exc.__class__.__name__}).") from None
    if set(splits) - set(SPLIT_NAMES):
        raise NeunnError(f"Split file {path} has unknown split names {sorted(set(splits) - set(SPLIT_NAMES))}.")
    return split


def open_split(
    images: list[ImageRecord], *, saved: Path, resume: bool, split_file: str | Path | None,
    fractions: tuple[float, float, float], seed: int,
) -> DatasetSplit:
    """The split a run uses: its own saved one when resuming, else a given split file, else a new stratified split."""
    if resume:
        return load_split(saved)
    if split_file is not None:
        return load_split(Path(split_file))
    return stratified_split(images, fractions=fractions, seed=seed)


def verify_split(split: DatasetSplit, scan: DatasetScan, *, names: tuple[str, ...] = SPLIT_NAMES) -> list[str]:
    """Check that every file of the named splits is still in the dataset with the same content.

    Raises NeunnError when files are missing or changed (never re-splits silently); returns warnings,
    such as images that appeared in the dataset after the split was made (they are not used).
    """
    current = {r.path: r for r in scan.images}
    bad_paths = {b.path for b in scan.bad_files}
    missing, changed = [], []
    for name in names:
        for e in split.splits.get(name, []):
            rec = current.get(e.path)
            if rec is None:
                missing.append(e.path + (" (now unreadable)" if e.path in bad_paths else ""))
            elif rec.sha256 != e.sha256 or rec.label != e.label:
                changed.append(e.path)
    _refuse_changes(missing, changed)
    known = {e.path for entries in split.splits.values() for e in entries}
    new = [p for p in current if p not in known]
    return [f"{len(new)} image(s) of the dataset are in no split (added after the split was made, or left out of it "
            "on purpose) and are not used."] if new else []


def verify_split_files(split: DatasetSplit, root: Path, *, names: tuple[str, ...]) -> None:
    """Check, by content hash alone (no decoding, no scan of the rest), that every file of the named splits is still
    under ``root`` unchanged; raises NeunnError like :func:`verify_split`. What evaluation of one split needs."""
    missing, changed = [], []
    for name in names:
        for e in split.splits.get(name, []):
            try:
                digest = hashlib.sha256((Path(root) / e.path).read_bytes()).hexdigest()
            except OSError:
                missing.append(e.path)
                continue
            if digest != e.sha256:
                changed.append(e.path)
    _refuse_changes(missing, changed)


def _refuse_changes(missing: list[str], changed: list[str]) -> None:
    if missing or changed:
        examples = ", ".join((missing + changed)[:3])
        raise NeunnError(
            f"The dataset changed since the split was made: {len(missing)} file(s) missing and {len(changed)} "
            f"changed (e.g. {examples}); restore the files or start a new run with a new --out."
        )
