from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from inferx.kit.schemas import Schema

Role = Literal["user", "admin"]
Tier = Literal["free", "pro", "enterprise"]


def normalise_email(value: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return info.normalized.lower()


Email = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(normalise_email)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: Role
    tier: Tier
    is_active: bool
    created_at: datetime


# A per-user quota override: a positive number, or null for the tier's default.
QuotaOverride = Annotated[int | None, Field(ge=1, le=1_000_000_000)]
QUOTA_OVERRIDES = ("quota_per_day", "quota_per_minute", "quota_batch_rows_per_day")


class UserAdminRead(UserRead):
    """What admins see: the user and their quota overrides (null = the tier's default)."""

    quota_per_day: int | None = None
    quota_per_minute: int | None = None
    quota_batch_rows_per_day: int | None = None


class UserAdminUpdate(Schema):
    role: Role | None = None
    tier: Tier | None = None
    is_active: bool | None = None
    # Sent as null, an override goes back to the tier's default; left out, it is unchanged.
    quota_per_day: QuotaOverride = None
    quota_per_minute: QuotaOverride = None
    quota_batch_rows_per_day: QuotaOverride = None
