from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inferx.kit.schemas import Schema

VersionStatus = Literal["active", "deprecated", "archived"]
Permission = Literal["view", "use", "edit"]
Access = Literal["view", "use", "edit", "owner"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class InputFeature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    dtype: Literal["float", "int", "bool", "string"] = "float"


class InputSchema(BaseModel):
    """What a version accepts: a row length and, optionally, named and typed features."""

    model_config = ConfigDict(extra="forbid")

    n_features: int | None = Field(None, ge=1, le=100_000)
    features: list[InputFeature] | None = Field(None, max_length=100_000)
    dtype: Literal["float32", "float64", "int64", "object"] = "float64"


class VersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    version: int
    framework: str
    status: VersionStatus
    input_schema: dict[str, Any] | None
    metadata: dict[str, Any]
    created_at: datetime
    status_changed_at: datetime | None


class ModelRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    owner_id: uuid.UUID
    permission: Access
    status: VersionStatus
    default_version: int | None
    latest_version: int
    created_at: datetime
    updated_at: datetime
    versions: list[VersionRead] | None = None


class UploadResult(BaseModel):
    id: uuid.UUID
    name: str
    version: int
    framework: str
    status: VersionStatus
    model_version_id: uuid.UUID
    input_schema: dict[str, Any] | None
    metadata: dict[str, Any]
    created_at: datetime


class ModelUpdate(Schema):
    description: str | None = Field(None, max_length=10_000)


class VersionUpdate(Schema):
    status: VersionStatus


class ShareCreate(Schema):
    email: str = Field(min_length=3, max_length=320)
    permission: Permission


class ShareRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    permission: Permission
    created_at: datetime
