"""The scaled-out dispatcher: Procrastinate on PostgreSQL (the database InferX already uses,
through its own psycopg 3 connection pool).

A Procrastinate job is a *wake-up* for one ledger item: the task claims the next due item of
its kind from our tables with a lease and does it, exactly like the embedded loops. What
Procrastinate adds is the distribution: ``inferx worker`` processes on any number of machines
listen on PostgreSQL, with worker heartbeats; jobs of a worker whose heartbeat stops
("stalled") are retried by the others. Our own lease reaper covers the same crash from the
ledger side, and the maintenance loop re-dispatches whatever was committed but never picked
up (the outbox rule: nothing is lost if deferring fails after the commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import make_url

from inferx.jobs.dispatch import Item, Maintain, WorkKind, maintenance_interval, worker_name

if TYPE_CHECKING:
    from inferx.context import AppContext

log = structlog.get_logger("inferx.jobs")

SCHEMA_LOCK = 0x1F3A_2B4C  # pg_advisory_xact_lock key: one process creates the schema


def conninfo(db_url: str) -> str:
    url = make_url(db_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def ensure_schema(dsn: str) -> None:
    """Create Procrastinate's tables once, whichever process starts first."""
    import psycopg
    from procrastinate.schema import SchemaManager

    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cur.fetchone()
        if not (row and row[0]):
            await conn.execute(SchemaManager.get_schema())  # type: ignore[arg-type]
            log.info("jobs.queue_schema_created")


class ProcrastinateDispatcher:
    def __init__(
        self, ctx: AppContext, kinds: Sequence[WorkKind], maintain: Maintain, *, in_process: bool
    ) -> None:
        self.ctx = ctx
        self.kinds = {k.name: k for k in kinds}
        self.maintain = maintain
        self.in_process = in_process
        self.app: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        import procrastinate

        dsn = conninfo(self.ctx.settings.db_url)
        await ensure_schema(dsn)
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=dsn, min_size=1, max_size=4 + len(self.kinds) * 2
            )
        )
        for kind in self.kinds.values():
            self._register(kind)
        await self.app.open_async()
        if self.in_process:
            self._spawn()

    def _register(self, kind: WorkKind) -> None:
        ctx = self.ctx

        async def wake(item: str) -> None:
            # The item named is only a hint: claim whatever is due first (fairness), and go on
            # while there is work, so a wake-up that lost a race is not wasted. A lease owner
            # name per run, so two runs in one process never share a lease.
            name = worker_name(kind.name, 0)
            while not self._stopping and await kind.run_one(ctx, name):
                pass

        self.app.task(name=kind.name, queue=kind.name)(wake)

    async def dispatch(self, kind: str, items: Sequence[Item]) -> None:
        from procrastinate.exceptions import AlreadyEnqueued

        if self.app is None or kind not in self.kinds:
            return
        for item_id, at in items:
            deferrer = self.app.configure_task(
                name=kind,
                queue=kind,
                queueing_lock=f"{kind}:{item_id}",
                **({"schedule_at": at} if at is not None else {}),
            )
            try:
                await deferrer.defer_async(item=str(item_id))
            except AlreadyEnqueued:
                pass
            except Exception as exc:  # the ledger still has it: maintenance dispatches again
                log.warning("jobs.defer_failed", kind=kind, error=type(exc).__name__)
                return

    async def work(self, stop: asyncio.Event) -> None:
        self._spawn()
        await stop.wait()
        await self.stop()

    def _spawn(self) -> None:
        if self._tasks:
            return
        settings = self.ctx.settings
        for kind in self.kinds.values():
            options: dict[str, Any] = {
                "queues": [kind.name],
                "concurrency": kind.concurrency(self.ctx),
                "name": f"inferx-{kind.name}",
                "install_signal_handlers": False,
                "update_heartbeat_interval": settings.jobs_heartbeat_s,
                "stalled_worker_timeout": settings.jobs_lease_s,
                "fetch_job_polling_interval": settings.jobs_poll_s,
                "shutdown_graceful_timeout": float(settings.graceful_timeout_s),
                "delete_jobs": "successful",
            }
            self._tasks.append(
                asyncio.create_task(self._run_worker(options), name=f"procrastinate-{kind.name}")
            )
        self._tasks.append(asyncio.create_task(self._maintain(), name="inferx-jobs-maintain"))

    async def _run_worker(self, options: dict[str, Any]) -> None:
        while not self._stopping:
            try:
                await self.app.run_worker_async(**options)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database gone: start again when it is back
                log.warning("jobs.queue_worker_failed", error=type(exc).__name__)
                await asyncio.sleep(random.uniform(1.0, 3.0))

    async def _maintain(self) -> None:
        interval = maintenance_interval(self.ctx)
        while not self._stopping:
            try:
                await self._retry_stalled()
                due = await self.maintain(self.ctx)
                for kind, items in due.items():
                    await self.dispatch(kind, items)
            except Exception as exc:
                log.warning("jobs.maintenance_failed", error=type(exc).__name__)
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    async def _retry_stalled(self) -> None:
        """Jobs of workers whose heartbeat stopped (killed, partitioned) run again elsewhere."""
        manager = self.app.job_manager
        stalled = await manager.get_stalled_jobs(
            seconds_since_heartbeat=self.ctx.settings.jobs_lease_s
        )
        for job in stalled:
            if job.task_name in self.kinds:
                await manager.retry_job(job)
                log.info("jobs.stalled_retried", task=job.task_name, queue_job=job.id)

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()  # Procrastinate shuts its workers down gracefully on cancel
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.app is not None:
            with contextlib.suppress(Exception):
                await self.app.close_async()
            self.app = None
