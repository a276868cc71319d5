from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from inferx.kit.schemas import Schema


class ApiKeyCreate(Schema):
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=365)

    model_config = {"json_schema_extra": {"examples": [{"name": "laptop", "expires_in_days": 90}]}}


class ApiKeyUpdate(Schema):
    name: str | None = Field(None, min_length=1, max_length=100)
    is_active: bool | None = None


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    is_active: bool
    expires_at: datetime
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(BaseModel):
    id: uuid.UUID
    name: str
    key: str = Field(description="The secret: shown only in this response, store it now.")
    prefix: str
    expires_at: datetime
    created_at: datetime
