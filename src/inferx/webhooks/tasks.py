"""``webhooks.deliver``: claim one due message, sign it, make one attempt, record it, and
schedule the next attempt (exponential backoff with jitter over about a day, ``Retry-After``
honoured) or settle it: delivered, refused (410 disables the endpoint), or out of attempts
(the endpoint is disabled too, and the owner can see why)."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import datetime, timedelta

import structlog

from inferx.context import AppContext
from inferx.db import after_commit, unit_of_work
from inferx.jobs.dispatch import Item
from inferx.jobs.repository import db_now
from inferx.jobs.runtime import DELIVERIES, dispatch
from inferx.kit.time import utcnow
from inferx.tables import Webhook, WebhookDelivery
from inferx.webhooks import repository as repo
from inferx.webhooks import signing
from inferx.webhooks.sender import AttemptResult
from inferx.webhooks.service import secret_box, sender

log = structlog.get_logger("inferx.webhooks")

BACKOFF_FACTOR = 4.0
MAX_DELAY_S = 86_400.0
JITTER = 0.2
DELIVERY_RETENTION_DAYS = 30


def next_delay(settings_base_s: float, attempts: int, retry_after_s: float | None) -> float:
    """After attempt ``attempts`` (1-based): base * 4^(n-1), +-20 % jitter; with the default
    5 s base and 9 attempts the schedule spans about 30 hours. A ``Retry-After`` longer than
    that is honoured, up to a day."""
    delay = settings_base_s * BACKOFF_FACTOR ** max(0, attempts - 1)
    delay *= random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, MAX_DELAY_S)


async def run_one(ctx: AppContext, worker: str) -> bool:
    settings = ctx.settings
    lease_s = settings.webhook_timeout_s + 30
    async with unit_of_work(ctx.sessions) as session:
        now = await db_now(session)
        delivery = await repo.claim_due(session, now, worker, lease_s)
        if delivery is None:
            return False
        hook = await session.get(Webhook, delivery.webhook_id)
    if hook is None:
        return True  # deleted meanwhile: its deliveries went with it
    if not hook.is_active:
        async with unit_of_work(ctx.sessions) as session:
            await repo.settle(session, delivery.id, worker, status="failed", finished_at=utcnow())
        return True
    result = await _attempt(ctx, hook, delivery)
    await _record(ctx, hook, delivery, worker, result)
    return True


def _secrets(ctx: AppContext, hook: Webhook) -> list[str]:
    box = secret_box(ctx)
    keys = [box.open(hook.secret_enc)]
    if (
        hook.previous_secret_enc
        and hook.previous_secret_expires_at is not None
        and hook.previous_secret_expires_at > utcnow()
    ):
        keys.append(box.open(hook.previous_secret_enc))
    return keys


async def _attempt(ctx: AppContext, hook: Webhook, delivery: WebhookDelivery) -> AttemptResult:
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    # A fresh timestamp per attempt: receivers reject old ones; the id stays the same.
    headers = signing.headers(_secrets(ctx, hook), delivery.msg_id, int(time.time()), body)
    return await sender(ctx).send(hook.url, headers, body)


async def _record(
    ctx: AppContext,
    hook: Webhook,
    delivery: WebhookDelivery,
    worker: str,
    result: AttemptResult,
) -> None:
    settings = ctx.settings
    attempts = delivery.attempts
    again: datetime | None = None
    async with unit_of_work(ctx.sessions) as session:
        now = await db_now(session)
        await repo.add_attempt(
            session,
            id=uuid.uuid4(),
            delivery_id=delivery.id,
            attempt=attempts,
            outcome=result.outcome,
            status_code=result.status_code,
            response_body=result.body,
            error=(result.error or None) and result.error[:500],  # type: ignore[index]
            duration_ms=result.duration_ms,
            created_at=now,
        )
        common = {"last_status_code": result.status_code}
        if result.outcome == "success":
            await repo.settle(
                session, delivery.id, worker, status="succeeded", finished_at=now, **common
            )
        elif result.outcome in ("gone", "blocked_ssrf"):
            # 410: the receiver asked us to stop. An address check that fails is a refusal,
            # not a glitch to retry.
            await repo.settle(
                session, delivery.id, worker, status="failed", finished_at=now, **common
            )
            if result.outcome == "gone":
                await repo.disable(session, hook.id, "The receiver answered 410 Gone.")
                log.warning("webhooks.disabled", webhook_id=str(hook.id), reason="410")
        elif attempts >= settings.webhook_max_attempts:
            await repo.settle(
                session, delivery.id, worker, status="failed", finished_at=now, **common
            )
            await repo.disable(
                session, hook.id, f"A message failed {attempts} attempts over about a day."
            )
            log.warning("webhooks.disabled", webhook_id=str(hook.id), reason="exhausted")
        else:
            delay = next_delay(settings.webhook_retry_base_s, attempts, result.retry_after_s)
            again = now + timedelta(seconds=delay)
            await repo.settle(session, delivery.id, worker, next_attempt_at=again, **common)
        if again is not None:
            items: list[Item] = [(delivery.id, again)]
            after_commit(session, lambda: dispatch(ctx, DELIVERIES, items))
    log.info(
        "webhooks.attempt",
        webhook_id=str(hook.id),
        msg_id=delivery.msg_id,
        attempt=attempts,
        outcome=result.outcome,
        status_code=result.status_code,
        ms=result.duration_ms,
    )


async def maintain(ctx: AppContext) -> list[Item]:
    """Due messages nobody is sending (dispatch lost, sender crashed): dispatch them again.
    Settled messages are kept ``DELIVERY_RETENTION_DAYS``."""
    async with unit_of_work(ctx.sessions) as session:
        now = await db_now(session)
        rows = await repo.overdue(session, now - timedelta(seconds=5), 100)
        await repo.purge_finished(session, now - timedelta(days=DELIVERY_RETENTION_DAYS))
    return [(row.id, None) for row in rows]
