"""Read a multipart upload into memory under the serving limits, never touching the disk.

    uploads = await read_uploads(request, limits)       # list[Upload] in the order sent, or UploadRefused (a 4xx)
    for upload in uploads:
        upload.name, upload.data, upload.error, upload.status

Starlette's own form parser spools files over 1 MB to temporary files; this reader keeps every part in memory and
counts bytes as they arrive, so an oversized file costs no more memory than the limit. A file over ``max_file_bytes``
becomes an Upload with an error while the rest of the request goes on; a request over ``max_request_bytes``, with
more than ``max_files`` files, or that is not well-formed multipart is refused as a whole. Any part with a filename
is a file, whatever its field name, and so is one without a filename that says it is not text (a Content-Type other
than text/plain, which RFC 7578 lets a client send; it is shown by its field name); the filename is only ever shown,
never used as a path.

``upload_body(...)`` is the OpenAPI request body of a route that reads uploads this way (``openapi_extra=``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from neunn.serve.limits import ServeLimits

_MAX_FIELDS = 32
_MAX_FIELD_BYTES = 64 * 1024
_MAX_NAME_CHARS = 200


@dataclass
class Upload:
    """One uploaded file (or zip entry): its display name and bytes, or why it was refused (with an HTTP status)."""

    name: str
    data: bytes = b""
    error: str | None = None
    status: int = 200


class UploadRefused(Exception):
    """The request as a whole cannot be accepted; ``status`` is the 4xx to answer and the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/bmp", "image/gif", "image/webp")


def upload_body(field: str, description: str, *, many: bool) -> dict:
    """The OpenAPI request body of an upload route: multipart/form-data with the file part ``field``, one image, or
    with ``many`` one or more images and zips of images (``encoding`` names the formats)."""
    binary = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary, "minItems": 1} if many else binary
    media_types = (*IMAGE_MEDIA_TYPES, "application/zip") if many else IMAGE_MEDIA_TYPES
    body = {"type": "object", "required": [field], "properties": {field: {**schema, "description": description}}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": body, "encoding": {field: {"contentType": ", ".join(media_types)}}}}}}


def display_name(raw: str, fallback: str) -> str:
    """A filename made safe to show: control and format characters removed, length capped, never empty."""
    cleaned = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C").strip()
    if len(cleaned) > _MAX_NAME_CHARS:
        cleaned = cleaned[: _MAX_NAME_CHARS - 1] + "…"
    return cleaned or fallback


def megabytes(n: int) -> str:
    """A byte count in MB for messages, e.g. ``25 MB``."""
    return f"{n / (1024 * 1024):g} MB"


class _Collector:
    """python-multipart callbacks that gather parts into Uploads while enforcing the limits."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.uploads: list[Upload] = []
        self.finished = False
        self._fields = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._content_type = b""
        self._buffer = bytearray()
        self._current: Upload | None = None  # None while inside a plain (non-file) field

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
                "on_header_field": self._header_field, "on_header_value": self._header_val,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
                "on_end": self._end}

    def _part_begin(self) -> None:
        self._disposition, self._content_type, self._buffer, self._current = b"", b"", bytearray(), None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = bytes(self._header_name).lower()
        if name == b"content-disposition":
            self._disposition = bytes(self._header_value)
        elif name == b"content-type":
            self._content_type = parse_options_header(bytes(self._header_value))[0]
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        is_text = self._content_type in (b"", b"text/plain")
        if b"filename" not in options and is_text:
            self._fields += 1
            if self._fields > _MAX_FIELDS:
                raise UploadRefused(400, f"The request has more than {_MAX_FIELDS} form fields.")
            return
        if len(self.uploads) >= self.limits.max_files:
            raise UploadRefused(413, f"Too many files in one request: at most {self.limits.max_files}.")
        fallback = f"file {len(self.uploads) + 1}"
        shown = options.get(b"filename", options.get(b"name", b""))
        self._current = Upload(display_name(shown.decode("utf-8", "replace"), fallback))
        self.uploads.append(self._current)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        upload = self._current
        if upload is None:
            if len(self._buffer) + (end - start) > _MAX_FIELD_BYTES:
                raise UploadRefused(413, "A form field without a filename is too large; send images as files.")
            self._buffer += data[start:end]
        elif upload.error is None:
            if len(self._buffer) + (end - start) > self.limits.max_file_bytes:
                upload.error, upload.status = (f"file too large (over the {megabytes(self.limits.max_file_bytes)} "
                                               "limit)"), 413
                self._buffer = bytearray()  # the rest of this part is read and dropped
            else:
                self._buffer += data[start:end]

    def _part_end(self) -> None:
        if self._current is not None and self._current.error is None:
            self._current.data = bytes(self._buffer)
        self._buffer, self._current = bytearray(), None

    def _end(self) -> None:
        self.finished = True


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise UploadRefused(415, "Send the images as multipart/form-data, one file part per image or zip.")
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadRefused(400, "The multipart request has no boundary in its Content-Type header.")
    return boundary


async def read_uploads(request: Request, limits: ServeLimits) -> list[Upload]:
    """Every file part of a multipart request, in order, held in memory; raises UploadRefused for a bad request."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise UploadRefused(413, f"The request is larger than the {megabytes(limits.max_request_bytes)} limit.")
    collector = _Collector(limits)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        with anyio.fail_after(limits.max_upload_seconds):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limits.max_request_bytes:
                    raise UploadRefused(413, f"The request is larger than the {megabytes(limits.max_request_bytes)} "
                                             "limit.")
                parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise UploadRefused(400, "The request body is not valid multipart/form-data.") from None
    except ClientDisconnect:
        raise UploadRefused(400, "The upload was cut off before it ended.") from None
    except TimeoutError:
        raise UploadRefused(408, f"The upload took longer than {limits.max_upload_seconds} s.") from None
    if not collector.finished:
        raise UploadRefused(400, "The upload was cut off before the end of the multipart body.")
    if not collector.uploads:
        raise UploadRefused(400, "The request holds no file; send one or more images (or a zip) as file parts.")
    return collector.uploads
