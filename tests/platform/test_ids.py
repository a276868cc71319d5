"""Block-read UUIDv4s: valid version 4 ids, no repeats, and a forked child does not replay."""

from __future__ import annotations

import os
import pickle
import uuid

from inferx.kit.ids import uuid4, uuid4_hex


def test_ids_are_version_4_and_unique_across_blocks():
    ids = [uuid4() for _ in range(5000)]  # ~20 blocks of random bytes
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == "specified in RFC 4122" for i in ids)


def test_a_forked_child_does_not_repeat_the_parents_next_ids():
    uuid4()  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"".join(uuid4().bytes for _ in range(4)))
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64)
    os.close(read)
    parent = b"".join(uuid4().bytes for _ in range(4))
    assert len(child) == 64 and child != parent


def test_ids_behave_like_the_standard_librarys():
    value = uuid4()
    same = uuid.UUID(str(value))
    assert value == same and hash(value) == hash(same) and value.hex == same.hex
    assert pickle.loads(pickle.dumps(value)) == value and {value: 1}[same] == 1
    assert value.is_safe == uuid.SafeUUID.unknown
    text = uuid4_hex()
    assert len(text) == 32 and uuid.UUID(text).version == 4
