"""Settings: every knob is an ``INFERX_*`` environment variable, validated at start-up."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE = "secret.key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERX_", extra="ignore", frozen=False)

    env: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("./data")

    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "inferx:"
    redis_timeout_s: float = Field(0.25, gt=0, le=10)
    auto_migrate: bool | None = None

    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    inference_workers: int | None = Field(None, ge=1, le=64)
    inference_eager_start: bool = True
    worker_memory_mb: int = Field(8192, ge=256)
    model_cache_mb: int = Field(2048, ge=16)
    model_cache_items: int = Field(32, ge=1)
    predict_timeout_s: float = Field(10.0, gt=0, le=600)
    predict_max_rows: int = Field(1000, ge=1, le=100_000)
    batch_max_rows: int = Field(64, ge=1, le=100_000)
    batch_max_in_flight: int = Field(1, ge=1, le=64)
    inference_poll_us: int = Field(1000, ge=0, le=100_000)
    result_cache_ttl_s: float = Field(300.0, ge=0)
    result_cache_items: int = Field(10_000, ge=1)
    auth_cache_ttl_s: float = Field(5.0, ge=0, le=60)
    auth_cache_stale_s: float = Field(600.0, ge=0)
    log_prediction_payloads: bool = False
    prediction_log_buffer: int = Field(100_000, ge=100)
    prediction_log_flush_s: float = Field(1.0, gt=0)

    secret_key: SecretStr | None = None
    jwt_issuer: str = "inferx"
    jwt_audience: str = "inferx-api"
    access_token_ttl_s: int = Field(900, ge=60, le=86400)
    refresh_token_ttl_days: int = Field(30, ge=1, le=365)

    argon2_time_cost: int = Field(3, ge=1, le=10)
    argon2_memory_kib: int = Field(65536, ge=8, le=1048576)
    argon2_parallelism: int = Field(4, ge=1, le=16)
    password_hash_concurrency: int = Field(4, ge=1, le=64)

    login_max_failures_per_account: int = Field(10, ge=1)
    login_max_failures_per_ip: int = Field(50, ge=1)
    login_lock_window_s: int = Field(900, ge=1)
    register_per_ip_per_hour: int = Field(20, ge=1)
    refresh_per_ip_per_minute: int = Field(30, ge=1)

    # Quotas per tier. Predictions: a moving 24-hour window (0 = no daily cap) and a moving
    # 1-minute burst window. Batch rows: a moving 24-hour window (0 = no cap). Jobs: caps on a
    # user's running and queued batch jobs. Admins override per user (PATCH /admin/users/{id}).
    quota_free_per_day: int = Field(100, ge=0)
    quota_free_per_minute: int = Field(10, ge=1)
    quota_pro_per_day: int = Field(10_000, ge=0)
    quota_pro_per_minute: int = Field(100, ge=1)
    quota_enterprise_per_day: int = Field(0, ge=0)
    quota_enterprise_per_minute: int = Field(1_000, ge=1)
    quota_free_batch_rows_per_day: int = Field(10_000, ge=0)
    quota_pro_batch_rows_per_day: int = Field(1_000_000, ge=0)
    quota_enterprise_batch_rows_per_day: int = Field(0, ge=0)
    quota_free_max_running_jobs: int = Field(1, ge=1)
    quota_pro_max_running_jobs: int = Field(2, ge=1)
    quota_enterprise_max_running_jobs: int = Field(8, ge=1)
    quota_free_max_queued_jobs: int = Field(10, ge=0)
    quota_pro_max_queued_jobs: int = Field(100, ge=0)
    quota_enterprise_max_queued_jobs: int = Field(1_000, ge=0)
    # While Redis is unreachable each replica enforces limit / this locally, so N replicas
    # together over-allow at most one limit (set it to the number of API replicas).
    quota_fallback_replicas: int = Field(1, ge=1, le=1000)

    # Batch jobs and webhook deliveries: the jobs table is the ledger; a dispatcher runs the
    # work ("embedded": leased loops in this process, any database; "procrastinate": a
    # PostgreSQL queue drained by `inferx worker` processes, and by the server when
    # jobs_worker_in_server is on).
    jobs_dispatcher: Literal["embedded", "procrastinate"] = "embedded"
    jobs_worker_in_server: bool = True
    jobs_concurrency: int = Field(2, ge=1, le=64)
    jobs_chunk_rows: int = Field(500, ge=1, le=100_000)
    jobs_max_rows: int = Field(1_000_000, ge=1)
    jobs_max_upload_mb: int = Field(256, ge=1)
    jobs_lease_s: float = Field(60.0, gt=0)
    jobs_heartbeat_s: float = Field(10.0, gt=0)
    jobs_max_attempts: int = Field(3, ge=1, le=20)
    jobs_poll_s: float = Field(1.0, gt=0)
    jobs_retention_hours: float = Field(168.0, gt=0)
    webhook_allow_private: list[str] = []
    webhook_allowed_ports: list[int] = [80, 443, 8080, 8443]
    webhook_require_https: bool | None = None
    webhook_timeout_s: float = Field(15.0, gt=0, le=60)
    webhook_retry_base_s: float = Field(5.0, gt=0)
    webhook_max_attempts: int = Field(9, ge=1, le=30)
    webhook_concurrency: int = Field(4, ge=1, le=64)
    webhook_max_per_user: int = Field(20, ge=1, le=1000)

    api_key_default_days: int = Field(90, ge=1, le=365)
    api_key_max_active: int = Field(20, ge=1, le=1000)
    api_key_usage_flush_s: float = Field(30.0, gt=0)

    cors_origins: list[str] = ["*"]
    max_body_mb: float = Field(10.0, gt=0)
    max_upload_mb: int = Field(512, ge=1)
    allow_pickle: bool = True
    pickle_allow: list[str] = []
    validation_timeout_s: float = Field(120.0, gt=0, le=3600)
    sandbox_memory_mb: int = Field(8192, ge=256)
    slow_request_ms: float = Field(1000.0, gt=0)
    graceful_timeout_s: int = Field(25, ge=1)
    shutdown_delay_s: float = Field(2.0, ge=0, le=60)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str | None) -> str | None:
        if not v:
            return None
        if v.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + v.split("://", 1)[1]
        if v.startswith("sqlite://") and "+aiosqlite" not in v:
            return v.replace("sqlite://", "sqlite+aiosqlite://", 1)
        if not v.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return v

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.env == "production":
            if self.secret_key is None:
                raise ValueError("INFERX_SECRET_KEY is required when INFERX_ENV=production")
            if "*" in self.cors_origins:
                raise ValueError(
                    "INFERX_CORS_ORIGINS must list explicit origins when INFERX_ENV=production"
                )
        if self.jobs_dispatcher == "procrastinate" and self.is_sqlite:
            raise ValueError("INFERX_JOBS_DISPATCHER=procrastinate needs a PostgreSQL database")
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("INFERX_SECRET_KEY must be at least 32 characters")
        return self

    @field_validator("webhook_allow_private")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        import ipaddress

        try:
            return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in v if c.strip()]
        except ValueError as exc:
            raise ValueError(f"must be a list of CIDRs: {exc}") from exc

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, v: str | None) -> str | None:
        if v and not v.startswith(("s3://", "file://")):
            raise ValueError("must be s3://bucket[/prefix] or file:///path")
        return v or None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'inferx.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @cached_property
    def signing_key(self) -> str:
        """The explicit secret, or one generated once and kept in the data dir (embedded mode)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / SECRET_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(8)}")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            # link() fails if another process won the race; everyone then reads the winner's key.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            tmp.unlink()
        return path.read_text().strip()
