"""Random (version 4) UUIDs for the request path, from ``os.urandom`` read in blocks.

``uuid.uuid4()`` makes a ``getrandom`` system call per id; two ids per prediction (the request
id and the prediction log row) made that a visible share of the request's CPU under load. The
bytes are the same kernel randomness, read 4 KiB at a time; a forked child starts afresh.
The ``UUID`` is built without its constructor's argument checks, which cost more than the
randomness; ``uuid4_hex`` skips the object altogether for ids that are only ever text.
"""

from __future__ import annotations

import os
import threading
import uuid

_BLOCK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


# RFC 9562 version 4: the version nibble is 4 and the variant bits are 10.
_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)
_SET = 0x4000 << 64 | 0x8000 << 48
_SAFE = uuid.SafeUUID.unknown


def _random_int() -> int:
    global _buffer, _offset
    with _lock:
        if _offset + 16 > len(_buffer):
            _buffer, _offset = os.urandom(_BLOCK), 0
        raw = _buffer[_offset : _offset + 16]
        _offset += 16
    return (int.from_bytes(raw) & _CLEAR) | _SET


def uuid4() -> uuid.UUID:
    value = object.__new__(uuid.UUID)
    object.__setattr__(value, "int", _random_int())  # what UUID(int=...) stores
    object.__setattr__(value, "is_safe", _SAFE)
    return value


def uuid4_hex() -> str:
    """``uuid4().hex``."""
    return f"{_random_int():032x}"


def _forget() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget)
