from __future__ import annotations

import stat

import pytest
from pydantic import ValidationError

from inferx.config import Settings


def test_production_requires_a_secret_and_explicit_origins(tmp_path):
    with pytest.raises(ValidationError, match="INFERX_SECRET_KEY"):
        Settings(env="production", data_dir=tmp_path, cors_origins=["https://a.example"])
    with pytest.raises(ValidationError, match="INFERX_CORS_ORIGINS"):
        Settings(env="production", data_dir=tmp_path, secret_key="s" * 40)
    ok = Settings(
        env="production", data_dir=tmp_path, secret_key="s" * 40, cors_origins=["https://a.example"]
    )
    assert ok.signing_key == "s" * 40


def test_short_secret_and_bad_urls_are_refused(tmp_path):
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, secret_key="short")
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, database_url="mysql://x")


def test_database_urls_get_async_drivers(tmp_path):
    s = Settings(data_dir=tmp_path, database_url="postgresql://u@h/db")
    assert s.db_url == "postgresql+asyncpg://u@h/db" and not s.is_sqlite
    assert not s.should_migrate_on_start
    e = Settings(data_dir=tmp_path)
    assert e.is_sqlite and e.should_migrate_on_start and e.db_url.endswith("inferx.db")


def test_embedded_secret_is_generated_once_and_private(tmp_path):
    first = Settings(data_dir=tmp_path).signing_key
    second = Settings(data_dir=tmp_path).signing_key
    assert first == second and len(first) >= 48
    mode = (tmp_path / "secret.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_env_variables_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERX_PORT", "9001")
    monkeypatch.setenv("INFERX_WORKERS", "3")
    monkeypatch.setenv("INFERX_DATA_DIR", str(tmp_path))
    s = Settings()
    assert (s.port, s.workers, s.data_dir) == (9001, 3, tmp_path)
    monkeypatch.setenv("INFERX_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()
