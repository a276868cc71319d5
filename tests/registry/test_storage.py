"""The same tests for every storage: a local directory, a file:// URL, and S3 over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferx.config import Settings
from inferx.registry import storage as storage_module
from inferx.registry.storage import (
    LocalStorage,
    ModelStorage,
    S3Storage,
    StorageIntegrityError,
    StorageUnavailable,
    create_storage,
)

KEY = "u/7f3a/m-42/v3/model.onnx"
BAD_KEYS = [
    "",
    "/etc/passwd",
    "../escape",
    "u/../../escape",
    "u/./x",
    "u//x",
    "u/x/",
    "u\\x",
    "u/x y",
    "u/ü",
    "u/x\x00",
    "a" * 600,
]


@dataclass
class Case:
    storage: ModelStorage
    data_dir: Path
    get_object_calls: Callable[[], int] | None = None

    def source(self, data: bytes) -> Path:
        """An upload's temp file, on the data dir's filesystem as the API writes it."""
        path = self.data_dir / "tmp" / f"upload-{uuid.uuid4().hex}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


def _count_get_object(storage: S3Storage) -> Callable[[], int]:
    calls: list[str] = []
    storage._client.meta.events.register(
        "before-call.s3.GetObject", lambda **_: calls.append("get")
    )
    return lambda: len(calls)


@pytest.fixture(params=["local", "file", "s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    values: dict[str, object] = {"env": "test", "data_dir": tmp_path / "data"}
    if request.param == "file":
        values["storage_url"] = f"file://{tmp_path / 'elsewhere' / 'models'}"
    elif request.param == "s3":
        request.getfixturevalue("s3_credentials")
        bucket = request.getfixturevalue("s3_bucket")
        values["storage_url"] = f"s3://{bucket}/t-{uuid.uuid4().hex[:8]}/models"
        values["s3_endpoint_url"] = request.getfixturevalue("s3_server")
        values["s3_region"] = "us-east-1"
    settings = Settings(**values)  # type: ignore[arg-type]
    storage = create_storage(settings)
    counter = _count_get_object(storage) if isinstance(storage, S3Storage) else None
    return Case(storage=storage, data_dir=settings.data_dir, get_object_calls=counter)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftover_files(root: Path, pattern: str) -> list[Path]:
    return [p for p in root.rglob(pattern) if p.is_file()]


async def test_round_trip(case: Case) -> None:
    data = b"model bytes " * 1000
    source = case.source(data)

    await case.storage.save(KEY, source)

    assert not source.exists()  # the storage took ownership of the temp file
    assert await case.storage.exists(KEY)
    assert not await case.storage.exists("u/7f3a/m-42/v4/model.onnx")
    path = await case.storage.local_path(KEY, sha256=_sha(data))
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.name == "model.onnx"
    assert await case.storage.local_path(KEY) == path

    await case.storage.delete(KEY)
    await case.storage.delete(KEY)  # idempotent
    assert not await case.storage.exists(KEY)
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        await case.storage.local_path(KEY)


async def test_missing_key(case: Case) -> None:
    assert not await case.storage.exists(KEY)
    with pytest.raises(FileNotFoundError):
        await case.storage.local_path(KEY)
    await case.storage.delete(KEY)
    assert _leftover_files(case.data_dir, "*.part") == []


async def test_rejects_bad_keys(case: Case) -> None:
    source = case.source(b"x")
    for key in BAD_KEYS:
        with pytest.raises(ValueError, match="invalid storage key"):
            await case.storage.save(key, source)
        with pytest.raises(ValueError, match="invalid storage key"):
            await case.storage.local_path(key)
        with pytest.raises(ValueError, match="invalid storage key"):
            await case.storage.exists(key)
        with pytest.raises(ValueError, match="invalid storage key"):
            await case.storage.delete(key)
    assert _leftover_files(case.data_dir.parent, "escape") == []
    await case.storage.save("Aa0._-/b", source)
    assert await case.storage.exists("Aa0._-/b")


async def test_sha256_mismatch_is_refused_and_leaves_no_copy(case: Case) -> None:
    data = b"the real model"
    await case.storage.save(KEY, case.source(data))

    with pytest.raises(StorageIntegrityError):
        await case.storage.local_path(KEY, sha256="0" * 64)

    assert _leftover_files(case.data_dir, "*.part") == []
    assert _leftover_files(case.data_dir / "cache", "*") == []  # no unverified copy kept
    assert await case.storage.exists(KEY)  # the stored object itself is untouched
    path = await case.storage.local_path(KEY, sha256=_sha(data))
    assert path.read_bytes() == data


async def test_concurrent_local_path_fetches_once(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"shared model" * 10_000
    await case.storage.save(KEY, case.source(data))
    hashed: list[Path] = []
    real_hash = storage_module.file_sha256

    def counting_hash(path: Path) -> str:
        hashed.append(path)
        time.sleep(0.02)  # keep the first caller busy so the others really wait on it
        return real_hash(path)

    monkeypatch.setattr(storage_module, "file_sha256", counting_hash)

    paths = await asyncio.gather(*(case.storage.local_path(KEY, _sha(data)) for _ in range(8)))

    assert len(set(paths)) == 1
    assert paths[0].read_bytes() == data
    assert len(hashed) == 1  # one download (S3) or one check (local) for eight callers
    if case.get_object_calls is not None:
        assert case.get_object_calls() == 1


async def test_ping_and_describe(case: Case) -> None:
    await case.storage.ping()
    assert case.storage.describe.startswith(("local:/", "s3://"))
    assert "inferx-test-secret-key" not in case.storage.describe
    assert "inferx-test-access-key" not in case.storage.describe


async def test_local_ping_fails_when_directory_unusable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    storage = LocalStorage(tmp_path / "a-file" / "models")
    with pytest.raises(StorageUnavailable):
        await storage.ping()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("s3_credentials")
async def test_s3_endpoint_down_raises_storage_unavailable(tmp_path: Path) -> None:
    storage = S3Storage(
        "bucket",
        "prefix",
        tmp_path / "cache",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        region="us-east-1",
        connect_timeout_s=0.2,
        read_timeout_s=0.2,
        max_attempts=1,
    )
    source = tmp_path / "upload"
    source.write_bytes(b"x")
    start = time.monotonic()

    with pytest.raises(StorageUnavailable) as caught:
        await storage.save(KEY, source)
    assert caught.value.status == 503
    assert not source.exists()
    with pytest.raises(StorageUnavailable):
        await storage.exists(KEY)
    with pytest.raises(StorageUnavailable):
        await storage.local_path(KEY)
    with pytest.raises(StorageUnavailable):
        await storage.delete(KEY)
    with pytest.raises(StorageUnavailable):
        await storage.ping()

    assert time.monotonic() - start < 5
    assert _leftover_files(tmp_path / "cache", "*") == []


@pytest.mark.usefixtures("s3_credentials")
async def test_s3_ping_fails_for_missing_bucket(s3_server: str, tmp_path: Path) -> None:
    storage = S3Storage("no-such-bucket", "", tmp_path, endpoint_url=s3_server, region="us-east-1")
    with pytest.raises(StorageUnavailable):
        await storage.ping()


def test_create_storage_parses_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = create_storage(Settings(env="test", data_dir=tmp_path))
    assert local.describe == f"local:{(tmp_path / 'models').resolve()}"

    with pytest.raises(ValueError, match="absolute"):
        create_storage(Settings(env="test", data_dir=tmp_path, storage_url="file://rel/path"))

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "inferx-test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "inferx-test-secret-key")
    s3 = create_storage(
        Settings(env="test", data_dir=tmp_path, storage_url="s3://bkt/a/b/", s3_region="eu-west-1")
    )
    assert s3.describe == "s3://bkt/a/b"

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(RuntimeError, match=r"inferx\[s3\]"):
        create_storage(Settings(env="test", data_dir=tmp_path, storage_url="s3://bkt"))
