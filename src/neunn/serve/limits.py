"""The limits the HTTP server puts on what one request may upload, so that no upload can exhaust memory.

    limits = ServeLimits(max_files=200)            # any field can be lowered (or raised) from the defaults
    create_app(predictor, limits=limits)

Everything uploaded stays in memory (nothing is written to disk), so these bounds are the server's memory budget:
at most ``max_concurrent_requests`` requests are read at a time, each under ``max_request_bytes`` on the wire and
``max_unzipped_bytes`` once its zips are expanded. Pixels per image are bounded by the image loader itself
(``neunn.data.image_io.MAX_IMAGE_PIXELS``), which reads the size from the header and refuses a decompression bomb
before decoding a single pixel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neunn.data.image_io import MAX_IMAGE_PIXELS
from neunn.errors import NeunnError

_MB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on uploads: bytes per file and per request, files per request (zip entries included), zip expansion."""

    max_file_bytes: int = 25 * _MB  # one image, or one zip of a sample's cells
    max_request_bytes: int = 100 * _MB
    max_files: int = 500  # cells per request, counting every image inside uploaded zips
    max_unzipped_bytes: int = 200 * _MB  # all zip entries of one request, decompressed
    max_concurrent_requests: int = 4  # uploads read and scored at once; later ones wait
    max_upload_seconds: int = 120  # a client this slow to send its files (or a stalled one) frees its place
    max_event_stream_seconds: int = 300  # a case's live-updates stream then ends; the browser reconnects by itself

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise NeunnError(f"Serving limit {name} must be a positive integer, got {value!r}.")

    def as_dict(self) -> dict[str, Any]:
        """The limits as JSON, for ``GET /api/v1/model`` (the page sizes its batches with them)."""
        return {**asdict(self), "max_image_pixels": MAX_IMAGE_PIXELS}
