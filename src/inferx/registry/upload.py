"""Streaming multipart reception: the file goes to a temp file in the data dir while it is
hashed and counted, a chunk at a time, so memory stays flat whatever the upload's size."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from inferx.errors import InferxError, InvalidInput

FLUSH_BYTES = 1 << 20
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16


class PayloadTooLarge(InferxError):
    status, title = 413, "Content too large"


class UnsupportedUpload(InferxError):
    status, title = 415, "Unsupported media type"


@dataclass
class ReceivedFile:
    path: Path
    filename: str | None
    size: int
    sha256: str


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: ReceivedFile | None = None

    def discard(self) -> None:
        if self.file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.file.path.unlink()


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.data = bytearray()


class _FileSink:
    """Writes and hashes in a worker thread; the event loop only hands over buffers."""

    def __init__(self, path: Path, filename: str | None, limit: int) -> None:
        self.path = path
        self.filename = filename
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self.handle: BinaryIO = path.open("wb")

    def _write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.handle.write(chunk)

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(
                f"The model file exceeds the {self.limit // (1024 * 1024)} MB limit."
            )
        await asyncio.to_thread(self._write, chunk)

    def close(self) -> ReceivedFile:
        self.handle.close()
        return ReceivedFile(self.path, self.filename, self.size, self.digest.hexdigest())


async def receive_upload(request: Request, tmp_dir: Path, max_file_bytes: int) -> UploadForm:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedUpload("Upload the model as multipart/form-data with a `file` part.")
    await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
    form = UploadForm()
    parts: list[_Part] = []
    current: list[_Part] = []
    header_field = bytearray()
    header_value = bytearray()
    sink: _FileSink | None = None

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise InvalidInput(f"Too many form parts (at most {MAX_PARTS}).")
        part = _Part()
        parts.append(part)
        current[:] = [part]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = current[0]
        part.data += data[start:end]
        if part.filename is None and len(part.data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"Form field {part.name!r} is larger than {MAX_FIELD_BYTES} bytes.")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current[0].headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        part = current[0]
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disposition:
            part.filename = disposition[b"filename"].decode("utf-8", "replace")[:255]

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            sink = await _drain_parts(parts, form, sink, tmp_dir, max_file_bytes)
        parser.finalize()
        sink = await _drain_parts(parts, form, sink, tmp_dir, max_file_bytes, final=True)
        if sink is not None:
            form.file = sink.close()
            sink = None
    except BaseException:
        if sink is not None:
            sink.handle.close()
            with contextlib.suppress(FileNotFoundError):
                sink.path.unlink()
        form.discard()
        raise
    return form


async def _drain_parts(
    parts: list[_Part],
    form: UploadForm,
    sink: _FileSink | None,
    tmp_dir: Path,
    limit: int,
    *,
    final: bool = False,
) -> _FileSink | None:
    """Move what the parser collected out of memory: file bytes to disk, fields to the form."""
    while parts:
        part = parts[0]
        done = len(parts) > 1 or final
        if part.filename is not None and part.name == "file":
            if sink is None:
                if form.file is not None:
                    raise InvalidInput("Send exactly one `file` part.")
                sink = _FileSink(tmp_dir / f"upload-{uuid.uuid4().hex}", part.filename, limit)
            if len(part.data) >= FLUSH_BYTES or (done and part.data):
                chunk, part.data = bytes(part.data), bytearray()
                await sink.write(chunk)
            if not done:
                return sink
            form.file = sink.close()
            sink = None
        elif part.filename is not None:
            raise InvalidInput(f"Unexpected file part {part.name!r}; the model goes in `file`.")
        elif not done:
            return sink
        else:
            if part.name in form.fields:
                raise InvalidInput(f"Form field {part.name!r} was sent twice.")
            try:
                form.fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"Form field {part.name!r} is not UTF-8 text.") from exc
        parts.pop(0)
    return sink
