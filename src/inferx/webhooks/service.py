"""Webhooks: endpoints a user registers, and the messages owed to them. Messages are rows
(``webhook_deliveries``) written in the transaction of what they announce, then sent by the
dispatcher, never on a request's path."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.db import after_commit, unit_of_work
from inferx.errors import Conflict, NotFound
from inferx.kit.time import utcnow
from inferx.tables import User, Webhook, WebhookDelivery
from inferx.webhooks import repository as repo
from inferx.webhooks import ssrf
from inferx.webhooks.schemas import (
    AttemptRead,
    DeliveryRead,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from inferx.webhooks.sender import Sender
from inferx.webhooks.signing import SecretBox, new_secret

if TYPE_CHECKING:
    from inferx.context import AppContext
    from inferx.jobs.dispatch import Item

log = structlog.get_logger("inferx.webhooks")

SENDER = "webhook_sender"
SECRETS = "webhook_secrets"
ROTATION_OVERLAP = timedelta(hours=24)
MSG_NAMESPACE = uuid.UUID("5f1d8e8a-3c55-4a4e-9a43-6f0f3f2f9c11")
DELIVERIES = "webhooks.deliver"
MODEL_EVENTS = ("model.version.created", "model.version.status_changed")


class WebhookNotFound(NotFound):
    title = "Webhook not found"


def sender(ctx: AppContext) -> Sender:
    found: Sender = ctx.extras[SENDER]
    return found


def secret_box(ctx: AppContext) -> SecretBox:
    found: SecretBox = ctx.extras[SECRETS]
    return found


def install(ctx: AppContext) -> None:
    """Build the sender and the secret box, and turn registry events into messages."""
    ctx.extras[SENDER] = Sender(ctx.settings)
    ctx.extras[SECRETS] = SecretBox(ctx.settings.signing_key)

    async def on_model_event(event: str, payload: dict[str, Any]) -> None:
        # Every replica (and worker) hears a published event: the dedupe key makes them all
        # write the same msg_id, so each endpoint gets one message.
        if event == "model.version.created":
            key = f"{event}:{payload['model_version_id']}"
        else:
            minute = int(time.time() // 60)
            key = (
                f"{event}:{payload['model_version_id']}:{payload.get('previous_status')}:"
                f"{payload.get('status')}:{minute}"
            )
        async with unit_of_work(ctx.sessions) as session:
            items = await enqueue_event(
                session, uuid.UUID(payload["owner_id"]), event, payload, dedupe=key
            )
            if items:
                after_commit(session, lambda: _dispatch(ctx, items))

    for event in MODEL_EVENTS:
        ctx.events.subscribe(event, on_model_event)


async def _dispatch(ctx: AppContext, items: list[Item]) -> None:
    from inferx.jobs.runtime import dispatch

    await dispatch(ctx, DELIVERIES, items)


def msg_id(dedupe: str) -> str:
    return "msg_" + uuid.uuid5(MSG_NAMESPACE, dedupe).hex


async def enqueue_event(
    session: AsyncSession,
    owner_id: uuid.UUID,
    event: str,
    data: dict[str, Any],
    *,
    dedupe: str,
    only: Webhook | None = None,
) -> list[Item]:
    """One message per active endpoint of ``owner_id`` subscribed to ``event``; writing the
    same ``dedupe`` key twice adds nothing. Returns what to dispatch after the commit."""
    hooks = [only] if only is not None else await repo.active_for(session, owner_id)
    now = utcnow()
    body = {"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    items: list[Item] = []
    for hook in hooks:
        if event not in hook.events and event != "webhook.test":
            continue
        delivery_id = await repo.add_delivery(
            session,
            {
                "id": uuid.uuid4(),
                "webhook_id": hook.id,
                "msg_id": msg_id(f"{dedupe}:{hook.id}" if only else dedupe),
                "event": event,
                "payload": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
        if delivery_id is not None:
            items.append((delivery_id, None))
    return items


async def create(
    ctx: AppContext, session: AsyncSession, user: User, body: WebhookCreate
) -> WebhookCreated:
    await ssrf.check(body.url, sender(ctx).policy, sender(ctx).resolver)
    if await repo.count_owned(session, user.id) >= ctx.settings.webhook_max_per_user:
        raise Conflict(f"You have {ctx.settings.webhook_max_per_user} webhooks, the maximum.")
    secret = new_secret()
    hook = Webhook(
        id=uuid.uuid4(),
        owner_id=user.id,
        url=body.url,
        events=sorted(set(body.events)),
        description=body.description,
        is_active=True,
        secret_enc=secret_box(ctx).seal(secret),
    )
    session.add(hook)
    await session.flush()
    log.info("webhooks.created", webhook_id=str(hook.id))
    return WebhookCreated(**WebhookRead.model_validate(hook).model_dump(), secret=secret)


async def get(session: AsyncSession, user: User, webhook_id: uuid.UUID) -> Webhook:
    hook = await repo.get_owned(session, user.id, webhook_id)
    if hook is None:
        raise WebhookNotFound(f"No webhook {webhook_id}.")
    return hook


async def list_webhooks(
    session: AsyncSession, user: User, limit: int, offset: int
) -> tuple[list[WebhookRead], int]:
    hooks, total = await repo.list_owned(session, user.id, limit, offset)
    return [WebhookRead.model_validate(h) for h in hooks], total


async def update(
    ctx: AppContext, session: AsyncSession, user: User, webhook_id: uuid.UUID, body: WebhookUpdate
) -> WebhookRead:
    hook = await get(session, user, webhook_id)
    if body.url is not None:
        await ssrf.check(body.url, sender(ctx).policy, sender(ctx).resolver)
        hook.url = body.url
    if body.events is not None:
        hook.events = sorted(set(body.events))
    if "description" in body.model_fields_set:
        hook.description = body.description
    if body.is_active is not None:
        hook.is_active = body.is_active
        if body.is_active:
            hook.disabled_reason = None
    await session.flush()
    await session.refresh(hook)
    return WebhookRead.model_validate(hook)


async def delete(session: AsyncSession, user: User, webhook_id: uuid.UUID) -> None:
    hook = await get(session, user, webhook_id)
    await session.delete(hook)
    await session.flush()


async def rotate(
    ctx: AppContext, session: AsyncSession, user: User, webhook_id: uuid.UUID
) -> SecretRotated:
    """A new secret; the current one keeps signing too for 24 hours."""
    hook = await get(session, user, webhook_id)
    secret = new_secret()
    until = utcnow() + ROTATION_OVERLAP
    hook.previous_secret_enc = hook.secret_enc
    hook.previous_secret_expires_at = until
    hook.secret_enc = secret_box(ctx).seal(secret)
    await session.flush()
    log.info("webhooks.secret_rotated", webhook_id=str(hook.id))
    return SecretRotated(secret=secret, previous_secret_valid_until=until)


async def send_test(
    ctx: AppContext, session: AsyncSession, user: User, webhook_id: uuid.UUID
) -> DeliveryRead:
    hook = await get(session, user, webhook_id)
    data = {"webhook_id": str(hook.id), "message": "Hello from InferX."}
    items = await enqueue_event(
        session, user.id, "webhook.test", data, dedupe=f"test:{uuid.uuid4()}", only=hook
    )
    after_commit(session, lambda: _dispatch(ctx, items))
    delivery = await session.get(WebhookDelivery, items[0][0])
    return DeliveryRead.model_validate(delivery)


async def deliveries(
    session: AsyncSession, user: User, webhook_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[DeliveryRead], int]:
    hook = await get(session, user, webhook_id)
    rows, total, attempts = await repo.deliveries(session, hook.id, limit, offset)
    items = []
    for row in rows:
        item = DeliveryRead.model_validate(row)
        item.attempt_log = [AttemptRead.model_validate(a) for a in attempts[row.id]]
        items.append(item)
    return items, total
