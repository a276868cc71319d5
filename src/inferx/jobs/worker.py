"""``inferx worker``: a process that only runs background work (batch-job chunks and webhook
deliveries) with the server's settings; start as many as you like, on any machines that reach
the database (and the model store).

It builds the same context as the API (database, model storage, inference pool, event bus)
through the app's lifespan, without serving HTTP. SIGTERM/SIGINT stop claiming new work, let
the item in hand finish within ``graceful_timeout_s``, and hand the rest back.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from inferx.config import Settings

log = structlog.get_logger("inferx.jobs")


async def run(settings: Settings) -> None:
    from inferx.app import create_app
    from inferx.jobs.runtime import dispatcher

    # The worker runs its workers in the foreground; the lifespan must not start more.
    settings = settings.model_copy(update={"jobs_worker_in_server": False})
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        found = dispatcher(app.state.ctx)
        assert found is not None
        log.info("worker.started", dispatcher=settings.jobs_dispatcher)
        await found.work(stop)
    log.info("worker.stopped")
