"""Database engine, sessions and migrations. Built in the lifespan; nothing at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
log = structlog.get_logger("inferx.db")


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=5,
        # Fail fast instead of hanging when PostgreSQL is slow or gone.
        connect_args={
            "timeout": 5,
            "command_timeout": 10,
            "server_settings": {"statement_timeout": "10000"},
        },
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once the unit of work has committed (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(callback)


class _LazySession:
    """Stands in for an AsyncSession and makes the real one on first use."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker
        self.made: AsyncSession | None = None

    def __getattr__(self, name: str) -> Any:  # only for names this class does not have
        if self.made is None:
            self.made = self._maker()
        return getattr(self.made, name)


@asynccontextmanager
async def unit_of_work(
    maker: async_sessionmaker[AsyncSession], *, lazy: bool = False
) -> AsyncIterator[AsyncSession]:
    """Commit on success, roll back on error: the one transaction of a request or a task.

    A request that never touched the database (a warm prediction) costs no commit or close;
    with ``lazy`` it does not even build a session (the prediction hot path)."""
    holder = _LazySession(maker)
    if not lazy:
        holder.made = maker()
    try:
        yield cast(AsyncSession, holder) if lazy else cast(AsyncSession, holder.made)
        if holder.made is not None and _has_work(holder.made):
            await holder.made.commit()
    except BaseException:
        if holder.made is not None:
            holder.made.info.pop("after_commit", None)
            if _has_work(holder.made):
                await holder.made.rollback()
        raise
    finally:
        if holder.made is not None and _has_work(holder.made):
            await holder.made.close()
    callbacks = holder.made.info.pop("after_commit", []) if holder.made is not None else []
    for callback in callbacks:
        try:
            await callback()
        except Exception as exc:  # the data is committed; a failed notification is logged
            log.warning("db.after_commit_failed", error=type(exc).__name__, exc_info=exc)


def _has_work(session: AsyncSession) -> bool:
    return bool(session.in_transaction() or session.new or session.dirty or session.deleted)


def is_sqlite_busy(exc: BaseException) -> bool:
    return "database is locked" in str(getattr(exc, "orig", exc))


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    def run(conn: Connection) -> None:
        cfg = alembic_config(str(engine.url))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
