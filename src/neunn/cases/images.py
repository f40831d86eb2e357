"""The uploaded cells' images, content-addressed: ``ROOT/ab/abcdef…`` named by the SHA-256 of their bytes.

    images = ImageStore(store_dir / "images")
    sha = images.put(data)        # written once (atomically), whatever the number of cases that hold it
    data = images.read(sha)

Several server processes may share the folder: a write is a rename of a complete temporary file, and two writers of
the same image write the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from neunn.atomic import write_atomic
from neunn.cases.errors import NotFound

_SHA = re.compile(r"[0-9a-f]{64}")
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"), (b"BM", "bmp"),
          (b"II*\x00", "tif"), (b"MM\x00*", "tif"))


def image_extension(data: bytes) -> str:
    """The usual file extension of an image's format, from its first bytes ("img" when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), "img")


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not _SHA.fullmatch(sha256):
            raise NotFound(f"No stored image has the hash {sha256[:80]!r}.")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path(sha256)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda tmp: tmp.write_bytes(data))
        return sha256

    def read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"The image {sha256} is missing from {self.root}; was the store folder moved?") from None
