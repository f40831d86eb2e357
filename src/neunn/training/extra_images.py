"""Folders of images added to a run's training split only, never to its validation or test split: synthetic samples
(``--synthetic DIR[:CLASS]``, config ``synthetic``) and more labelled cells, such as cells reviewed and corrected at
the review station and exported folder-per-class (``--add DIR``, config ``added_data``).

    added = scan_extra_images("reviewed/", split, kind=ADDED)   # the one scanner; corrupt files skipped and named
    added.counts()        # {"GBI": 12, "NEU": 3}: what the run learns from it, per class
    added.dropped         # copies of the split's validation/test images: left out so that they cannot leak into scores
    check_unchanged([added], run.read_info())                  # on --resume: the folder must be as it was

The split of the dataset never sees these folders, so it is the one the run would have without them. A folder holds
only classes of the dataset. Files at its top level (such as the case export's ``manifest.csv``) are not class
folders and are not read as images; the manifest's hash is recorded so the run says which review it learnt from.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neunn.data.scan import MANIFEST_NAME, ImageRecord, scan_dataset
from neunn.data.split import DatasetSplit
from neunn.errors import NeunnError
from neunn.log import say

SYNTHETIC = "synthetic"
ADDED = "added"
_NAMES = {SYNTHETIC: "Synthetic source", ADDED: "Added dataset"}
_MAX_NAMED = 5


@dataclass
class ExtraImages:
    """The usable images of one added folder, after the leakage guard; ``kind`` is SYNTHETIC or ADDED."""

    kind: str
    root: Path
    images: list[ImageRecord]
    dropped: list[str] = field(default_factory=list)  # copies of validation or test images of the dataset
    manifest_sha256: str | None = None

    def counts(self) -> dict[str, int]:
        """Images per class that join the training split."""
        return dict(sorted(Counter(r.label for r in self.images).items()))

    def record(self) -> dict[str, Any]:
        """What run.json keeps of this folder: enough to audit the run and to check the folder on --resume."""
        return {"source": str(self.root.resolve()), "counts": self.counts(),
                "files": [[r.path, r.sha256] for r in self.images], "dropped_copies_of_val_or_test": self.dropped,
                **({"manifest_sha256": self.manifest_sha256} if self.manifest_sha256 else {})}


def scan_extra_images(spec: str, split: DatasetSplit, *, kind: str, report: bool = True) -> ExtraImages:
    """Read a ``DIR`` or ``DIR:CLASS`` folder laid out as DIR/<CLASS>/images, for the training split of ``split``."""
    folder, _, only = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    name = f"{_NAMES[kind]} {folder}"
    scan = scan_dataset(folder)
    for bad in scan.bad_files if report else ():
        say(f"  skipped {Path(folder) / bad.path}: {bad.reason}")
    wanted = [only] if only else scan.classes
    unknown = [c for c in wanted if c not in split.classes]
    if unknown:
        raise NeunnError(f"{name} has class folder(s) that the dataset does not: {', '.join(unknown)} (its classes "
                         f"must be some of {', '.join(split.classes)}).")
    images = [r for r in scan.images if r.label in wanted]
    if not images:
        raise NeunnError(f"{name} holds no readable image of {', '.join(wanted) or 'any class'}.")
    held_out = {e.sha256 for part in ("val", "test") for e in split.splits.get(part, [])}
    dropped = [r.path for r in images if r.sha256 in held_out]
    if dropped and report:
        say(f"warning: {name}: left out {len(dropped)} image(s) byte-identical to validation or test images of the "
            f"dataset, which they would leak into (e.g. {', '.join(dropped[:_MAX_NAMED])})")
    manifest = Path(folder) / MANIFEST_NAME
    manifest_sha256 = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    return ExtraImages(kind=kind, root=Path(folder), images=[r for r in images if r.sha256 not in held_out],
                       dropped=dropped, manifest_sha256=manifest_sha256)


def check_unchanged(sources: list[ExtraImages], info: dict[str, Any]) -> None:
    """On --resume: refuse to go on when an added folder's images differ from those recorded when the run started."""
    for kind in (SYNTHETIC, ADDED):
        recorded = info.get(kind)
        if recorded is None:  # a run folder from before this was recorded
            continue
        now = [source for source in sources if source.kind == kind]
        for source, then in zip(now, recorded):
            if [list(f) for f in then["files"]] != [[r.path, r.sha256] for r in source.images]:
                raise NeunnError(f"{_NAMES[kind]} {source.root} changed since the run started (its usable images "
                                 "differ from those in run.json); restore it or start a new run with a new --out.")
