from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Schema(BaseModel):
    """Base of every request/response body: unknown fields are refused, never ignored."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


MAX_PAGE = 100


def clamp_limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))
