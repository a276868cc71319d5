"""Model file storage: a local directory (embedded) or an S3-compatible object store (scaled out).

Keys are relative paths such as ``u/<user-id>/<model-id>/v3/model.onnx``. A key is written once
(a new version gets a new key), so a replica's downloaded copy never goes stale.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import secrets
import shutil
import weakref
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import structlog

from inferx.config import Settings
from inferx.errors import InferxError, ServiceUnavailable

log = structlog.get_logger("inferx.registry.storage")

FILE_MODE = 0o640
MAX_KEY_LENGTH = 512
_KEY_RE = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


class StorageUnavailable(ServiceUnavailable):
    title = "Model storage unavailable"


class StorageIntegrityError(InferxError):
    status, title = 500, "Model file integrity check failed"


class ModelStorage(Protocol):
    describe: str

    async def save(self, key: str, source: Path) -> None: ...
    async def local_path(self, key: str, sha256: str | None = None) -> Path: ...
    async def delete(self, key: str) -> None: ...
    async def exists(self, key: str) -> bool: ...
    async def ping(self) -> None: ...


def validate_key(key: str) -> str:
    if (
        len(key) > MAX_KEY_LENGTH
        or not _KEY_RE.fullmatch(key)
        or any(part in (".", "..") for part in key.split("/"))
    ):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _KeyLocks:
    """One asyncio lock per key, alive only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


class _Verified:
    """Remembers which (key, sha256) pairs were hashed already, so each file is hashed once."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    async def check(self, key: str, path: Path, sha256: str | None) -> bool:
        if sha256 is None or (key, sha256.lower()) in self._seen:
            return True
        if await asyncio.to_thread(file_sha256, path) != sha256.lower():
            return False
        self._seen.add((key, sha256.lower()))
        return True

    def forget(self, key: str) -> None:
        self._seen = {pair for pair in self._seen if pair[0] != key}


def _integrity_error(key: str) -> StorageIntegrityError:
    log.error("storage.integrity_failed", storage_key=key)
    return StorageIntegrityError("The stored model file does not match its recorded SHA-256.")


def _temp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")


def _move_into_place(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        source.chmod(FILE_MODE)
        os.replace(source, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # only a source on another filesystem is copied
            raise
        tmp = _temp_name(dest)
        try:
            shutil.copyfile(source, tmp)
            tmp.chmod(FILE_MODE)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        source.unlink(missing_ok=True)


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._locks = _KeyLocks()
        self._verified = _Verified()
        self.describe = f"local:{self._root}"

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    async def save(self, key: str, source: Path) -> None:
        dest = self._path(key)
        await asyncio.to_thread(_move_into_place, source, dest)
        self._verified.forget(key)

    async def local_path(self, key: str, sha256: str | None = None) -> Path:
        path = self._path(key)
        async with self._locks(key):
            if not path.is_file():
                raise FileNotFoundError(key)
            # The file is the only copy: a mismatch is reported, never "repaired" by deleting it.
            if not await self._verified.check(key, path, sha256):
                raise _integrity_error(key)
        return path

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        self._verified.forget(key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def ping(self) -> None:
        await asyncio.to_thread(self._check_writable)

    def _check_writable(self) -> None:
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"model directory unusable: {type(exc).__name__}") from exc
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise StorageUnavailable("model directory is not writable")


def _s3_error(operation: str, exc: BaseException) -> StorageUnavailable | None:
    """The StorageUnavailable an S3 failure stands for, or None when it is not an outage."""
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError
    from botocore import exceptions as bx

    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        # boto3's transfer manager re-raises client errors as a bare message; look underneath.
        return _s3_error(operation, exc.__context__)
    outage = (bx.ConnectionError, bx.HTTPClientError, bx.NoCredentialsError, RetriesExceededError)
    if isinstance(exc, outage):
        return StorageUnavailable(f"model storage {operation} failed: {type(exc).__name__}")
    if isinstance(exc, bx.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or status in (403, 429):
            code = exc.response.get("Error", {}).get("Code", status)
            return StorageUnavailable(f"model storage {operation} failed: {code}")
    return None


def _is_not_found(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise RuntimeError(
            "INFERX_STORAGE_URL=s3://... needs boto3: pip install 'inferx[s3]'"
        ) from exc
    return boto3


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        cache_dir: Path,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        boto3 = _boto3()
        from botocore.config import Config

        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._cache_dir = cache_dir.resolve()
        self._locks = _KeyLocks()
        self._verified = _Verified()
        self.describe = f"s3://{bucket}/{self._prefix}" if self._prefix else f"s3://{bucket}"
        # Credentials come from the standard AWS chain (env vars, profile, instance role).
        session = boto3.session.Session(region_name=region)
        retries = {"max_attempts": max_attempts, "mode": "standard"}
        self._client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                connect_timeout=connect_timeout_s, read_timeout=read_timeout_s, retries=retries
            ),
        )
        quick = min(connect_timeout_s, 2.0)
        self._ping_client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(connect_timeout=quick, read_timeout=quick, retries={"max_attempts": 1}),
        )

    def _object(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    async def _call(self, operation: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            unavailable = _s3_error(operation, exc)
            if unavailable is not None:
                log.warning("storage.unavailable", operation=operation, error=type(exc).__name__)
                raise unavailable from exc
            raise

    async def save(self, key: str, source: Path) -> None:
        name = self._object(key)
        try:
            # upload_file switches to a multipart upload for big files; S3 shows the object
            # only once the upload completes, so readers never see a partial one.
            await self._call("upload", self._client.upload_file, str(source), self._bucket, name)
        finally:
            await asyncio.to_thread(source.unlink, missing_ok=True)
        await self._drop_cached(key)

    async def local_path(self, key: str, sha256: str | None = None) -> Path:
        name = self._object(key)
        dest = self._cache_dir / key
        async with self._locks(key):
            if await asyncio.to_thread(dest.is_file):
                if await self._verified.check(key, dest, sha256):
                    return dest
                log.warning("storage.cache_corrupt", storage_key=key)
                await self._drop_cached(key)
            await self._download(key, name, dest, sha256)
        return dest

    async def _download(self, key: str, name: str, dest: Path, sha256: str | None) -> None:
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        tmp = _temp_name(dest)
        try:
            try:
                await self._call("download", self._client.download_file, self._bucket, name, tmp)
            except Exception as exc:
                if _is_not_found(exc):
                    raise FileNotFoundError(key) from exc
                raise
            if not await self._verified.check(key, tmp, sha256):
                raise _integrity_error(key)
            tmp.chmod(FILE_MODE)
            os.replace(tmp, dest)
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)

    async def _drop_cached(self, key: str) -> None:
        self._verified.forget(key)
        await asyncio.to_thread((self._cache_dir / key).unlink, missing_ok=True)

    async def delete(self, key: str) -> None:
        name = self._object(key)
        await self._call("delete", self._client.delete_object, Bucket=self._bucket, Key=name)
        await self._drop_cached(key)

    async def exists(self, key: str) -> bool:
        name = self._object(key)
        try:
            await self._call("head", self._client.head_object, Bucket=self._bucket, Key=name)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    async def ping(self) -> None:
        try:
            await self._call("ping", self._ping_client.head_bucket, Bucket=self._bucket)
        except StorageUnavailable:
            raise
        except Exception as exc:
            # A missing bucket or refused access makes storage as unusable as an outage.
            raise StorageUnavailable(f"model storage ping failed: {type(exc).__name__}") from exc


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    path = Path(unquote(parts.path))
    if parts.netloc not in ("", "localhost") or not path.is_absolute():
        raise ValueError("INFERX_STORAGE_URL must be file:///absolute/path")
    return path


def create_storage(settings: Settings) -> ModelStorage:
    url = settings.storage_url
    if url is None:
        return LocalStorage(settings.data_dir / "models")
    if url.startswith("file://"):
        return LocalStorage(_file_url_path(url))
    parts = urlsplit(url)
    if not parts.netloc:
        raise ValueError("INFERX_STORAGE_URL must be s3://bucket[/prefix]")
    return S3Storage(
        parts.netloc,
        parts.path,
        settings.data_dir / "cache" / "models",
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
    )
