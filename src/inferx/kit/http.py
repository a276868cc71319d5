from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from inferx.kit.schemas import clamp_limit

API_PREFIX = "/api/v1"


async def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


ClientIP = Annotated[str, Depends(client_ip)]


class Pagination:
    """``limit`` is clamped to 100 rather than refused: a huge limit is a mistake, not an attack."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=2**31)] = 20,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> None:
        self.limit = clamp_limit(limit)
        self.offset = offset


Paging = Annotated[Pagination, Depends()]
