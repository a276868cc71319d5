"""Background work of this process: the dispatcher (jobs and webhook deliveries), started and
stopped by the lifespan, reached through ``ctx.extras``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from inferx.jobs.dispatch import Dispatcher, Item, WorkKind, create_dispatcher

if TYPE_CHECKING:
    from inferx.context import AppContext

DISPATCHER = "dispatcher"
CHUNKS = "jobs.chunk"
DELIVERIES = "webhooks.deliver"


def dispatcher(ctx: AppContext) -> Dispatcher | None:
    found: Dispatcher | None = ctx.extras.get(DISPATCHER)
    return found


async def dispatch(ctx: AppContext, kind: str, items: Sequence[Item]) -> None:
    """Items are committed to the ledger: ask the dispatcher to run them (never raises: the
    maintenance pass dispatches anything that was committed but not picked up)."""
    found = dispatcher(ctx)
    if found is not None and items:
        await found.dispatch(kind, items)


async def start_background(ctx: AppContext) -> Dispatcher:
    from inferx.jobs import tasks as job_tasks
    from inferx.webhooks import service as webhook_service
    from inferx.webhooks import tasks as webhook_tasks

    kinds = [
        WorkKind(CHUNKS, job_tasks.run_one, lambda c: c.settings.jobs_concurrency),
        WorkKind(DELIVERIES, webhook_tasks.run_one, lambda c: c.settings.webhook_concurrency),
    ]

    async def maintain(c: AppContext) -> dict[str, list[Item]]:
        return {
            CHUNKS: await job_tasks.maintain(c),
            DELIVERIES: await webhook_tasks.maintain(c),
        }

    webhook_service.install(ctx)
    found = create_dispatcher(ctx, kinds, maintain)
    ctx.extras[DISPATCHER] = found
    await found.start()
    return found


async def stop_background(ctx: AppContext) -> None:
    found = ctx.extras.pop(DISPATCHER, None)
    if found is not None:
        await found.stop()
