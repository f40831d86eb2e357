"""Expand an uploaded zip of one sample's cells in memory, with limits that defuse zip bombs.

    if is_zip(upload.data):
        cells = expand_zip(upload.name, upload.data, max_cells=..., max_bytes=..., max_entry_bytes=...)

A zip is recognised by its content (its signature), never by its name. Folders, macOS ``__MACOSX`` forks and hidden
files are skipped; entry names are only shown (``sample.zip/cell_001.jpg``), never used as paths, and nothing is
extracted to disk. Before zipfile reads the central directory, the declared entry count and directory size are checked
(zipfile would otherwise build an object for every entry of a hostile archive); while reading, decompressed bytes are
counted against the budget, so an entry that claims to be small but inflates without end is stopped at the limit.
A problem with the zip as a whole raises ZipRefused; a problem with one entry becomes that entry's error.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from neunn.serve.uploads import Upload, display_name, megabytes

_LOCAL_HEADER = b"PK\x03\x04"
_END_OF_DIRECTORY = b"PK\x05\x06"
_EMPTY_ZIP = _END_OF_DIRECTORY
_END_RECORD_SPAN = 22 + 65535  # the end record and the longest comment that may follow it
_DIRECTORY_BYTES_PER_ENTRY = 1024  # generous: 46 fixed bytes plus a name and extra fields
_JUNK_PER_CELL = 4  # raw entries allowed per cell, for folders and __MACOSX forks


class ZipRefused(Exception):
    """The zip as a whole cannot be used: the message is the reason, ``status`` 413 (too big) or 422 (unreadable)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def is_zip(data: bytes) -> bool:
    """Whether the bytes are a zip archive, judged by its signature."""
    return data.startswith((_LOCAL_HEADER, _EMPTY_ZIP))


def _declared_size(data: bytes) -> tuple[int, int]:
    """(entry count, central directory bytes) from the end-of-central-directory record."""
    position = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - _END_RECORD_SPAN))
    if position < 0 or len(data) < position + 22:
        raise ZipRefused("not a readable zip archive")
    entries = int.from_bytes(data[position + 10 : position + 12], "little")
    directory_bytes = int.from_bytes(data[position + 12 : position + 16], "little")
    if entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:
        raise ZipRefused("ZIP64 archives are not supported; one sample's cells fit in a plain zip")
    return entries, directory_bytes


def _is_cell_entry(info: zipfile.ZipInfo) -> bool:
    parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
    return not info.is_dir() and bool(parts) and not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def expand_zip(name: str, data: bytes, *, max_cells: int, max_bytes: int, max_entry_bytes: int) -> list[Upload]:
    """The cell images inside a zip, as Uploads named ``zipname/entry``; raises ZipRefused for an unusable zip."""
    entries, directory_bytes = _declared_size(data)
    max_entries = max_cells * _JUNK_PER_CELL + 16
    if entries > max_entries or directory_bytes > max_entries * _DIRECTORY_BYTES_PER_ENTRY:
        raise ZipRefused(f"the zip holds {entries} entries, more than the {max_cells} cells one request may hold", 413)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if _is_cell_entry(info)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        raise ZipRefused("not a readable zip archive") from None
    if len(infos) > max_cells:
        raise ZipRefused(f"the zip holds {len(infos)} files, more than the {max_cells} cells one request may hold", 413)
    cells, budget = [], max_bytes
    with archive:
        for index, info in enumerate(infos):
            cell = Upload(f"{name}/{display_name(info.filename, f'entry {index + 1}')}")
            cells.append(cell)
            if info.flag_bits & 0x1:
                cell.error, cell.status = "encrypted zip entry", 422
                continue
            limit = min(max_entry_bytes, budget)
            try:
                with archive.open(info) as stream:
                    content = stream.read(limit + 1)  # never trust the declared size: read one byte past the limit
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, ValueError, OSError):
                cell.error, cell.status = "corrupt or unsupported zip entry", 422
                continue
            if len(content) > limit and limit < max_entry_bytes:
                raise ZipRefused(f"the zip expands to more than {megabytes(max_bytes)}, refused as a zip bomb", 413)
            if len(content) > limit:
                cell.error, cell.status = f"file too large (over the {megabytes(max_entry_bytes)} limit)", 413
                continue
            cell.data, budget = content, budget - len(content)
    return cells
