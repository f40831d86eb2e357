"""Pack a folder-per-class dataset small enough to travel to a GPU machine: every image resized once, with its split.

    python benchmarks/pack_dataset.py ../shared/data/pbc-dev .carry/pbc224 --size 224 \
        --split-file runs/accuracy-cpu/splits.json

Writes PACK/data/<class>/<file> (each crop resized to SIZE×SIZE the way training resizes it, re-encoded as JPEG at
--quality) and, with --split-file, PACK/splits.json: the same train/val/test membership, file for file, with the
content hashes of the packed files, so a run on the pack uses exactly the split of the runs on the original. Keep the
pack in a folder git ignores (it is derived from the dataset and is never committed): `.carry/` is in .gitignore.
A model trained on the pack at img_size=SIZE sees the images of a run on the original at that size, up to one JPEG
re-encoding at --quality; benchmarks/gpu_session.sh uses it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from PIL import Image

from neunn.data.preprocess import load_pixels
from neunn.data.scan import scan_dataset
from neunn.data.split import DatasetSplit, load_split, save_split, verify_split


def pack_image(source: Path, target: Path, size: int, quality: int) -> str:
    """Resize one image to size×size and write it as JPEG; returns the packed file's SHA-256."""
    pixels = load_pixels(source, size, jpeg_draft=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(target, format="JPEG", quality=quality)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def remap_split(split: DatasetSplit, hashes: dict[str, str]) -> DatasetSplit:
    """The same split with the packed files' content hashes."""
    return replace(split, splits={
        name: [replace(e, sha256=hashes[e.path]) for e in entries] for name, entries in split.splits.items()
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--split-file", type=Path, help="a splits.json of DATA to carry over to the pack")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} already holds files; choose an empty or new folder.")
    scan = scan_dataset(args.data, workers=args.workers, progress=True)
    scan.require_usable()
    split = load_split(args.split_file) if args.split_file else None
    if split is not None:
        verify_split(split, scan)
    with ThreadPoolExecutor(args.workers) as pool:
        digests = pool.map(lambda r: pack_image(args.data / r.path, args.out / "data" / r.path, args.size, args.quality),
                           scan.images)
        hashes = dict(zip([r.path for r in scan.images], digests, strict=True))
    if split is not None:
        save_split(remap_split(split, hashes), args.out / "splits.json")
    total = sum(p.stat().st_size for p in (args.out / "data").rglob("*") if p.is_file())
    manifest = {"source": str(args.data), "size": args.size, "quality": args.quality, "images": len(hashes),
                "bytes": total, "split_file": str(args.split_file) if args.split_file else None,
                "skipped": [b.path for b in scan.bad_files]}
    (args.out / "pack.json").write_text(json.dumps(manifest, indent=1))
    print(f"packed {len(hashes)} images at {args.size} px into {args.out} ({total / 2**20:.1f} MiB)"
          + (f"; split carried over to {args.out / 'splits.json'}" if split is not None else ""))


if __name__ == "__main__":
    main()
