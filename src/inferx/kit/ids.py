"""Random (version 4) UUIDs for the request path, from ``os.urandom`` read in blocks.

``uuid.uuid4()`` makes a ``getrandom`` system call per id; two ids per prediction (the request
id and the prediction log row) made that a visible share of the request's CPU under load. The
bytes are the same kernel randomness, read 4 KiB at a time; a forked child starts afresh.
"""

from __future__ import annotations

import os
import threading
import uuid

_BLOCK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def uuid4() -> uuid.UUID:
    global _buffer, _offset
    with _lock:
        if _offset + 16 > len(_buffer):
            _buffer, _offset = os.urandom(_BLOCK), 0
        raw = _buffer[_offset : _offset + 16]
        _offset += 16
    return uuid.UUID(bytes=raw, version=4)


def _forget() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget)
