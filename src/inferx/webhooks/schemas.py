from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inferx.kit.schemas import Schema

EVENTS = (
    "model.version.created",
    "model.version.status_changed",
    "job.succeeded",
    "job.failed",
    "webhook.test",
)
EventName = Literal[
    "model.version.created",
    "model.version.status_changed",
    "job.succeeded",
    "job.failed",
    "webhook.test",
]


class WebhookCreate(Schema):
    url: str = Field(max_length=2048, examples=["https://example.com/hooks/inferx"])
    events: list[EventName] = Field(min_length=1, max_length=len(EVENTS))
    description: str | None = Field(None, max_length=500)


class WebhookUpdate(Schema):
    url: str | None = Field(None, max_length=2048)
    events: list[EventName] | None = Field(None, min_length=1, max_length=len(EVENTS))
    description: str | None = Field(None, max_length=500)
    is_active: bool | None = None


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    is_active: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="Shown once: verify deliveries with it.")


class SecretRotated(BaseModel):
    secret: str
    previous_secret_valid_until: datetime


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    outcome: str
    status_code: int | None
    duration_ms: float
    response_body: str | None
    error: str | None
    created_at: datetime


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    msg_id: str = Field(description="The `webhook-id` header: stable across attempts.")
    event: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]
    attempt_log: list[AttemptRead] = []
