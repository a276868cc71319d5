from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from inferx.auth.dependencies import CurrentUser
from inferx.context import Ctx, Session
from inferx.kit.http import API_PREFIX, Paging
from inferx.kit.schemas import Page
from inferx.webhooks import service
from inferx.webhooks.schemas import (
    DeliveryRead,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)

router = APIRouter(prefix=f"{API_PREFIX}/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, user: CurrentUser, ctx: Ctx, session: Session
) -> WebhookCreated:
    """Register an endpoint; the signing `secret` is in this response only."""
    return await service.create(ctx, session, user, body)


@router.get("", response_model=Page[WebhookRead])
async def list_webhooks(user: CurrentUser, session: Session, paging: Paging) -> Page[WebhookRead]:
    """Your webhook endpoints."""
    items, total = await service.list_webhooks(session, user, paging.limit, paging.offset)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/{webhook_id}", response_model=WebhookRead)
async def get_webhook(webhook_id: uuid.UUID, user: CurrentUser, session: Session) -> WebhookRead:
    """One webhook endpoint."""
    return WebhookRead.model_validate(await service.get(session, user, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookRead)
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdate, user: CurrentUser, ctx: Ctx, session: Session
) -> WebhookRead:
    """Change the URL, events or description; `is_active: true` re-enables a disabled one."""
    return await service.update(ctx, session, user, webhook_id, body)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: uuid.UUID, user: CurrentUser, session: Session) -> Response:
    """Delete an endpoint and its delivery history."""
    await service.delete(session, user, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryRead
)
async def test_webhook(
    webhook_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session
) -> DeliveryRead:
    """Queue a `webhook.test` message to the endpoint."""
    return await service.send_test(ctx, session, user, webhook_id)


@router.post("/{webhook_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    webhook_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session
) -> SecretRotated:
    """A new secret; the old one keeps signing alongside it for 24 hours."""
    return await service.rotate(ctx, session, user, webhook_id)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryRead])
async def list_deliveries(
    webhook_id: uuid.UUID, user: CurrentUser, session: Session, paging: Paging
) -> Page[DeliveryRead]:
    """Messages sent to the endpoint, newest first, each with its attempts."""
    items, total = await service.deliveries(session, user, webhook_id, paging.limit, paging.offset)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)
