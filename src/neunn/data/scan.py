"""The one dataset scanner: reads a folder-per-class tree of cell images and says what is in it.

Training, evaluation and `neunn data check` all start with

    scan = scan_dataset("data/neutrophils", progress=True)
    print(scan.summary())        # counts per class, sizes, conversions, duplicates, every bad file
    scan.require_usable()        # NeunnError when the dataset cannot be trained on
    for record in scan.images:   # usable images, sorted by path: record.path, record.label, ...
    dataset_classes("data/neutrophils")   # only the class folders' names: no file is read

The label of an image is the name of the top-level folder it sits in (sub-folders are walked).
Every file is read exactly once: its bytes are hashed (to find duplicates, also across classes) and
fully decoded with `load_rgb` (the only way to notice a truncated file). A file that cannot be read or
decoded never stops the scan; it becomes a `BadFile` with a reason. Output order does not depend on
thread scheduling.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from neunn.data.image_io import UnreadableImage, describe_os_error, load_rgb
from neunn.errors import NeunnError
from neunn.log import say

# Operating-system litter; "__MACOSX" is the folder that zip archives made on a Mac unpack into.
# A file at a dataset folder's top level (not a class folder, never read as an image) in which the case export says
# who reviewed which cell; extra-image folders record its hash.
MANIFEST_NAME = "manifest.csv"
_LITTER_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
_MAX_LISTED_DUPLICATE_GROUPS = 20
_MAX_LISTED_IGNORED = 10
_MAX_LISTED_SIZES = 5


@dataclass(frozen=True)
class ImageRecord:
    """A usable image of the dataset."""

    path: str  # POSIX path relative to the dataset root, e.g. "GBI/img_001.jpg"
    label: str  # the class: name of the top-level folder
    sha256: str  # hex digest of the file bytes
    width: int
    height: int
    mode: str  # mode before conversion to RGB
    note: str | None  # conversion note from load_rgb


@dataclass(frozen=True)
class BadFile:
    """A file inside a class folder that cannot be used, and why."""

    path: str
    reason: str


@dataclass
class DatasetScan:
    """What a folder-per-class dataset holds, as found by `scan_dataset`."""

    root: Path
    classes: list[str]
    images: list[ImageRecord]
    bad_files: list[BadFile]
    duplicates: list[list[str]]
    ignored: list[str]

    def counts(self) -> dict[str, int]:
        """Usable images per class, in class order, including classes with none."""
        per_class = Counter(record.label for record in self.images)
        return {name: per_class[name] for name in self.classes}

    def problems(self) -> list[str]:
        """Reasons the dataset cannot be used for training; empty when it can."""
        if not self.classes:
            return [f"it has no class folders (expected one sub-folder per class, such as {self.root / 'NEU'})"]
        found = []
        if len(self.classes) == 1:
            found.append(f"it has a single class folder ({self.classes[0]}) and at least 2 are needed")
        bad_per_class = Counter(_top_folder(bad.path) for bad in self.bad_files)
        for name, count in self.counts().items():
            if count == 0:
                unreadable = bad_per_class[name]
                detail = f"all {unreadable} of its files are unreadable" if unreadable else "it is empty"
                found.append(f"class {name} has no readable image ({detail})")
        return found

    def require_usable(self) -> None:
        """Raise NeunnError, in one sentence, when the dataset cannot be used for training."""
        found = self.problems()
        if found:
            raise NeunnError(f"Dataset folder {self.root} cannot be used for training: {'; '.join(found)}.")

    def summary(self) -> str:
        """A human-readable report of the scan."""
        sections = [
            _headline(self),
            _class_table(self.counts()),
            _sizes_and_modes(self.images),
            _conversions(self.images),
            _duplicates_report(self.duplicates),
            _bad_files_report(self.bad_files),
            _ignored_report(self.ignored),
            _verdict(self.problems()),
        ]
        return "\n\n".join(sections)


def scan_dataset(root: str | os.PathLike, *, workers: int | None = None, progress: bool = False) -> DatasetScan:
    """Scan a folder-per-class dataset: list, hash and decode every file, in `workers` threads."""
    root_path = _checked_root(Path(root))
    classes, files, ignored, bad_files = _list_dataset(root_path)
    results = _read_all(root_path, files, _worker_count(workers), progress)
    images = sorted((r for r in results if isinstance(r, ImageRecord)), key=lambda record: record.path)
    bad_files += [r for r in results if isinstance(r, BadFile)]
    return DatasetScan(
        root=root_path,
        classes=classes,
        images=images,
        bad_files=sorted(bad_files, key=lambda bad: bad.path),
        duplicates=_duplicate_groups(images),
        ignored=sorted(ignored),
    )


def report_scan(scan: DatasetScan) -> None:
    """Say what a scan found, and name every unusable file once, before a run starts."""
    counts = ", ".join(f"{c} {n}" for c, n in scan.counts().items())
    say(f"dataset {scan.root}: {len(scan.images)} images in {len(scan.classes)} classes ({counts})")
    for bad in scan.bad_files:
        say(f"  skipped {bad.path}: {bad.reason}")


def _checked_root(root: Path) -> Path:
    """The dataset root, or NeunnError when it is missing or not a folder."""
    if not root.exists():
        raise NeunnError(f"Dataset folder {root} does not exist.")
    if not root.is_dir():
        raise NeunnError(f"Dataset folder {root} is a file, not a folder.")
    return root


def _worker_count(workers: int | None) -> int:
    """The number of reading threads: as asked, else up to 8 (decoding releases the GIL)."""
    if workers is None:
        return min(8, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    return workers


def _is_litter(name: str) -> bool:
    """Whether a file or folder name is hidden or operating-system litter, never data."""
    return name.startswith(".") or name.lower() in _LITTER_NAMES


def dataset_classes(root: str | os.PathLike) -> list[str]:
    """The class folders of a dataset, sorted, as `scan_dataset` finds them, without reading any file."""
    root_path = _checked_root(Path(root))
    return [entry.name for entry in _top_entries(root_path) if _is_class_folder(entry)]


def _top_entries(root: Path) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError as exc:
        raise NeunnError(f"Dataset folder {root} cannot be read ({describe_os_error(exc)}).") from exc


def _is_class_folder(entry: os.DirEntry) -> bool:
    # Symlinked folders are not followed (they could lead outside the dataset, or loop).
    return not _is_litter(entry.name) and entry.is_dir(follow_symlinks=False)


def _list_dataset(root: Path) -> tuple[list[str], list[tuple[str, str]], list[str], list[BadFile]]:
    """Class folders, (relative path, label) of every candidate file, ignored paths and unlistable entries."""
    classes: list[str] = []
    files: list[tuple[str, str]] = []
    ignored: list[str] = []
    bad_files: list[BadFile] = []
    for entry in _top_entries(root):
        if not _is_class_folder(entry):
            ignored.append(entry.name)
            continue
        classes.append(entry.name)
        _list_class_folder(root, entry.name, files, ignored, bad_files)
    return classes, files, ignored, bad_files


def _list_class_folder(
    root: Path, label: str, files: list[tuple[str, str]], ignored: list[str], bad_files: list[BadFile]
) -> None:
    """Add every file under the class folder `label` (recursively) to `files`, the rest to ignored/bad."""
    pending = [label]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(root / folder))
        except OSError as exc:
            bad_files.append(BadFile(f"{folder}/", f"folder cannot be listed ({describe_os_error(exc)})"))
            continue
        for entry in entries:
            path = f"{folder}/{entry.name}"
            if _is_litter(entry.name) or (entry.is_symlink() and entry.is_dir()):
                ignored.append(path)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif entry.is_file():
                files.append((path, label))
            else:
                reason = "broken symbolic link" if entry.is_symlink() else "not a regular file"
                bad_files.append(BadFile(path, reason))


def _read_all(
    root: Path, files: list[tuple[str, str]], workers: int, progress: bool
) -> list[ImageRecord | BadFile]:
    """Read every file in a thread pool; results come back in the order of `files`."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda item: _read_one(root, *item), files)
        bar = tqdm(results, total=len(files), desc="Scanning images", unit="img", file=sys.stderr, disable=not progress)
        return list(bar)


def _read_one(root: Path, path: str, label: str) -> ImageRecord | BadFile:
    """Hash and decode one file; any failure becomes a BadFile."""
    try:
        data = (root / path).read_bytes()
    except OSError as exc:
        return BadFile(path, describe_os_error(exc))
    except Exception as exc:  # e.g. MemoryError on an enormous file: the scan must go on
        return BadFile(path, f"cannot read the file ({type(exc).__name__})")
    try:
        loaded = load_rgb(data)
    except UnreadableImage as exc:
        return BadFile(path, str(exc))
    except Exception as exc:
        return BadFile(path, f"unexpected error while decoding ({type(exc).__name__}: {exc})")
    width, height = loaded.image.size
    return ImageRecord(
        path=path,
        label=label,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        mode=loaded.original_mode,
        note=loaded.note,
    )


def _duplicate_groups(images: list[ImageRecord]) -> list[list[str]]:
    """Sorted groups of two or more paths whose files have identical bytes."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for record in images:
        by_hash[record.sha256].append(record.path)
    return sorted(sorted(paths) for paths in by_hash.values() if len(paths) > 1)


def _top_folder(path: str) -> str:
    """The class folder a relative path lies in."""
    return path.split("/", 1)[0]


def _headline(scan: DatasetScan) -> str:
    """The first line of the summary."""
    classes = f"{len(scan.classes)} class{'' if len(scan.classes) == 1 else 'es'}"
    return (
        f"Dataset {scan.root}: {classes}, {len(scan.images):,} readable images, "
        f"{len(scan.bad_files):,} unreadable files, {len(scan.ignored):,} ignored."
    )


def _class_table(counts: dict[str, int]) -> str:
    """Images per class as an aligned two-column table with a total."""
    rows = [*counts.items(), ("Total", sum(counts.values()))]
    name_width = max(len(name) for name, _ in [("Class", 0), *rows])
    count_width = max(len("Images"), *(len(f"{count:,}") for _, count in rows))
    lines = [f"{'Class':<{name_width}}  {'Images':>{count_width}}"]
    lines += [f"{name:<{name_width}}  {count:>{count_width},}" for name, count in rows]
    return "\n".join(lines)


def _tally(counter: Counter, limit: int | None = None) -> str:
    """'a (3), b (1)' for the most common entries, with how many were left out."""
    common = counter.most_common(limit)
    text = ", ".join(f"{key} ({count:,})" for key, count in common)
    left_out = len(counter) - len(common)
    return text + (f", and {left_out} other sizes" if left_out else "")


def _sizes_and_modes(images: list[ImageRecord]) -> str:
    """The most common image sizes and the original colour modes."""
    if not images:
        return "Image sizes: none\nModes: none"
    sizes = Counter(f"{record.width}x{record.height}" for record in images)
    modes = Counter(record.mode for record in images)
    return f"Image sizes (width x height): {_tally(sizes, _MAX_LISTED_SIZES)}\nModes: {_tally(modes)}"


def _conversions(images: list[ImageRecord]) -> str:
    """How many images needed which conversion to RGB."""
    notes = Counter(record.note for record in images if record.note)
    if not notes:
        return "Conversions to RGB: none"
    return "Conversions to RGB:\n" + "\n".join(f"  {count:,} x {note}" for note, count in notes.most_common())


def _duplicates_report(groups: list[list[str]]) -> str:
    """Groups of identical files, flagging those that span several classes."""
    if not groups:
        return "Duplicates: none"
    cross = [group for group in groups if len({_top_folder(path) for path in group}) > 1]
    lines = [f"Duplicates: {len(groups):,} groups of identical files, {len(cross):,} of them across classes"]
    for group in groups[:_MAX_LISTED_DUPLICATE_GROUPS]:
        lines.append("  " + " = ".join(group) + ("  [across classes]" if group in cross else ""))
    if len(groups) > _MAX_LISTED_DUPLICATE_GROUPS:
        lines.append(f"  ... and {len(groups) - _MAX_LISTED_DUPLICATE_GROUPS:,} more groups")
    return "\n".join(lines)


def _bad_files_report(bad_files: list[BadFile]) -> str:
    """Every unreadable file with its reason."""
    if not bad_files:
        return "Unreadable files: none"
    return f"Unreadable files ({len(bad_files):,}):\n" + "\n".join(f"  {bad.path}: {bad.reason}" for bad in bad_files)


def _ignored_report(ignored: list[str]) -> str:
    """How many entries were skipped as hidden, litter, outside class folders or symlinked folders."""
    if not ignored:
        return "Ignored: none"
    shown = ", ".join(ignored[:_MAX_LISTED_IGNORED]) + (", ..." if len(ignored) > _MAX_LISTED_IGNORED else "")
    return f"Ignored {len(ignored):,} (hidden, outside class folders or symlinked folders): {shown}"


def _verdict(problems: list[str]) -> str:
    """Whether the dataset can be trained on."""
    if not problems:
        return "Usable for training."
    return "Not usable for training:\n" + "\n".join(f"  - {problem}" for problem in problems)
