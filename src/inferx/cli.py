"""``inferx`` command line: serve, worker, db upgrade, users create-admin."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from inferx.config import Settings
from inferx.http_protocol import CoalescingHttpToolsProtocol


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors()
        ]
        sys.exit("inferx: invalid settings:\n" + "\n".join(lines))


class _Server(uvicorn.Server):
    """On SIGTERM: readiness turns 503 at once, the listener stays open ``shutdown_delay_s`` so
    load balancers notice, then uvicorn drains in-flight requests and exits. SIGINT (Ctrl-C) and
    a second SIGTERM skip the delay."""

    def __init__(self, config: uvicorn.Config, app: Any, delay_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._delay_s = delay_s
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        ctx = getattr(self._app.state, "ctx", None)
        if ctx is not None:
            ctx.shutting_down = True
        if sig == signal.SIGTERM and not self._draining and self._delay_s > 0:
            self._draining = True
            timer = threading.Timer(self._delay_s, self._exit, args=(sig, frame))
            timer.daemon = True
            timer.start()
            return
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after draining; a drained SIGTERM is a clean exit 0.
        if sig == signal.SIGTERM:
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def serve(args: argparse.Namespace) -> None:
    settings = _settings(
        host=args.host, port=args.port, data_dir=args.data_dir, workers=args.workers
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _ = settings.signing_key  # generate the embedded secret once, before any worker starts
    if settings.should_migrate_on_start:
        asyncio.run(_upgrade(settings))
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "timeout_graceful_shutdown": settings.graceful_timeout_s,
        "server_header": False,
        "http": CoalescingHttpToolsProtocol,
    }
    if settings.workers > 1:
        # Workers re-read settings from the environment: pass the CLI flags down that way.
        os.environ.update(
            INFERX_HOST=settings.host,
            INFERX_PORT=str(settings.port),
            INFERX_DATA_DIR=str(settings.data_dir),
        )
        uvicorn.run("inferx.app:create_app", factory=True, workers=settings.workers, **common)
        return
    from inferx.app import create_app

    app = create_app(settings)
    _Server(uvicorn.Config(app, **common), app, settings.shutdown_delay_s).run()


async def _upgrade(settings: Settings) -> None:
    from inferx.db import create_engine, upgrade

    engine = create_engine(settings.db_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def db_upgrade(args: argparse.Namespace) -> None:
    settings = _settings(data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_upgrade(settings))
    print("database is up to date")  # noqa: T201


def create_admin(args: argparse.Namespace) -> None:
    from inferx.users.admin import create_or_promote_admin
    from inferx.users.schemas import normalise_email

    settings = _settings(data_dir=args.data_dir)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            sys.exit("inferx: passwords do not match")
    if not 8 <= len(password) <= 1024:
        sys.exit("inferx: the password must be 8 to 1024 characters")
    try:
        email = normalise_email(args.email)
    except ValueError as exc:
        sys.exit(f"inferx: invalid email: {exc}")
    if settings.should_migrate_on_start:
        asyncio.run(_upgrade(settings))
    created = asyncio.run(create_or_promote_admin(settings, email, password))
    print(f"admin {email} {'created' if created else 'promoted'}")  # noqa: T201


def worker(args: argparse.Namespace) -> None:
    from inferx.jobs.worker import run

    settings = _settings(data_dir=args.data_dir, jobs_concurrency=args.concurrency)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.should_migrate_on_start:
        asyncio.run(_upgrade(settings))
    asyncio.run(run(settings))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inferx", description="InferX model serving platform")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API server")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--workers", type=int)
    p.set_defaults(func=serve)

    w = sub.add_parser("worker", help="run batch jobs and webhook deliveries (no HTTP)")
    w.add_argument("--data-dir")
    w.add_argument("--concurrency", type=int, help="chunks run at once (jobs_concurrency)")
    w.set_defaults(func=worker)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    up = db.add_parser("upgrade", help="apply migrations")
    up.add_argument("--data-dir")
    up.set_defaults(func=db_upgrade)

    users = sub.add_parser("users", help="user administration").add_subparsers(
        dest="users_command", required=True
    )
    ca = users.add_parser("create-admin", help="create an admin (or promote an existing user)")
    ca.add_argument("--email", required=True)
    ca.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ca.add_argument("--data-dir")
    ca.set_defaults(func=create_admin)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
