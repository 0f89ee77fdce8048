"""Streaming file uploads: ``multipart/form-data`` read chunk by chunk into a temporary
file, never held in memory, with the size limit enforced while the bytes arrive.

The upload routes are exempt from the ``BodyLimit`` middleware (``UPLOAD_PATHS``) because
an upload may be larger than any JSON body; ``receive_upload`` enforces
``ACTIVITYFEED_MAX_UPLOAD_BYTES`` instead and answers ``413 upload_too_large``. The
temporary file is the caller's to move into place after commit, or to ``discard``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import Request
from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from activityfeed.errors import InvalidRequest, PayloadTooLarge

#: The routes whose bodies are uploads: the JSON API's and the pages' forms.
UPLOAD_PATHS = re.compile(r"^/(api/)?(projects|datasets|models)/[^/]+/uploads?$")
#: Room for the multipart framing and the form's small text fields.
FRAMING_BYTES = 64 * 1024
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 16
FILE_FIELD = "file"


def _too_large(max_bytes: int) -> PayloadTooLarge:
    mib = max_bytes / (1024 * 1024)
    size = f"{mib:.0f} MiB" if mib >= 1 else f"{max_bytes} bytes"
    return PayloadTooLarge(
        f"The file is larger than the upload limit of {size}; nothing was stored.",
        code="upload_too_large",
    )


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass
class Received:
    """The form's text fields and its one file (still in a temporary file)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: ReceivedFile | None = None

    def discard(self) -> None:
        """Remove the temporary file if it is still there (not moved into place)."""
        if self.file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.file.path.unlink()


class _Collector:
    """Callbacks for ``MultipartParser``: text fields into memory, the file to disk."""

    def __init__(self, tmp_dir: Path, max_bytes: int) -> None:
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.out = Received()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._text: bytearray | None = None
        self._fh: IO[bytes] | None = None
        self._tmp: Path | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._file_meta: tuple[str, str] | None = None

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self._headers = {}
        self._header_field = self._header_value = b""
        self._text = None

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        if raw_filename is None:
            if len(self.out.fields) >= MAX_FIELDS:
                raise InvalidRequest("The form has too many fields.", field="body")
            self._text = bytearray()
            return
        if self._name != FILE_FIELD:
            raise InvalidRequest(
                f"Send the file in the '{FILE_FIELD}' field, not '{self._name}'.", field="file"
            )
        if self._fh is not None or self.out.file is not None:
            raise InvalidRequest("Send one file per upload.", field="file")
        content_type = self._headers.get(b"content-type", b"application/octet-stream")
        self._file_meta = (
            raw_filename.decode("utf-8", "replace"),
            content_type.decode("latin-1").strip(),
        )
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
        self._tmp = Path(name)
        self._fh = os.fdopen(fd, "wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._fh is not None:
            self._size += len(chunk)
            if self._size > self.max_bytes:
                raise _too_large(self.max_bytes)
            # A page-cache write of one chunk: short enough not to need a thread.
            self._fh.write(chunk)
            self._hash.update(chunk)
        elif self._text is not None:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"The form field '{self._name}' is too long.", field="body")

    def part_end(self) -> None:
        if self._fh is not None and self._tmp is not None and self._file_meta is not None:
            self._fh.close()
            self._fh = None
            filename, content_type = self._file_meta
            self.out.file = ReceivedFile(
                path=self._tmp,
                filename=filename,
                content_type=content_type,
                size=self._size,
                sha256=self._hash.hexdigest(),
            )
        elif self._text is not None:
            self.out.fields[self._name] = self._text.decode("utf-8", "replace")
            self._text = None

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        self.out.file = None


async def receive_upload(request: Request, *, tmp_dir: Path, max_bytes: int) -> Received:
    """Read a ``multipart/form-data`` body with one ``file`` field into ``tmp_dir``.

    Raises ``PayloadTooLarge`` (``upload_too_large``) as soon as the file, or the declared
    body, passes ``max_bytes``, and ``InvalidRequest`` for a body that is not such a form;
    in both cases nothing is left in ``tmp_dir``.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            f"Send the file as multipart/form-data in a '{FILE_FIELD}' field.", field="file"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + FRAMING_BYTES:
        raise _too_large(max_bytes)
    collector = _Collector(tmp_dir, max_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if collector._fh is not None:
            raise InvalidRequest("The upload ended before the file did.", field="file")
    except ParseError:
        collector.abort()
        raise InvalidRequest("The multipart body could not be read.", field="body") from None
    except BaseException:
        collector.abort()
        raise
    return collector.out
