from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from inferx.auth.dependencies import CurrentUser
from inferx.context import Ctx, Session
from inferx.kit.http import API_PREFIX, Paging
from inferx.kit.schemas import Page
from inferx.registry import service
from inferx.registry.schemas import (
    ModelRead,
    ModelUpdate,
    ShareCreate,
    ShareRead,
    UploadResult,
    VersionRead,
    VersionStatus,
    VersionUpdate,
)
from inferx.registry.upload import receive_upload

router = APIRouter(prefix=f"{API_PREFIX}/models", tags=["models"])

VersionNumber = Annotated[int, Path(ge=1, le=1_000_000)]

UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "example": "iris"},
                        "description": {"type": "string"},
                        "framework": {
                            "type": "string",
                            "enum": list(service.FRAMEWORKS),
                            "description": "Optional: detected from the content anyway.",
                        },
                        "input_schema": {
                            "type": "string",
                            "description": 'JSON: {"features": [{"name": "sl", "dtype": "float"}]}',
                        },
                        "model_id": {
                            "type": "string",
                            "description": "Add a version to a model shared with you (`edit`).",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResult,
    openapi_extra=UPLOAD_DOC,
)
async def upload_model(
    request: Request, user: CurrentUser, ctx: Ctx, session: Session
) -> UploadResult:
    """Upload a model file: a new model, or the next version of one with the same name."""
    limit = ctx.settings.max_upload_mb * 1024 * 1024
    form = await receive_upload(request, ctx.settings.data_dir / "tmp", limit)
    return await service.upload(ctx, session, user, form)


@router.get("", response_model=Page[ModelRead])
async def list_models(
    user: CurrentUser,
    session: Session,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=128)] = None,
    status: VersionStatus | None = None,
    framework: Annotated[str | None, Query(max_length=32)] = None,
    sort: Literal["created_at", "name"] = "created_at",
    order: Literal["asc", "desc"] = "desc",
) -> Page[ModelRead]:
    """Models you own and models shared with you."""
    items, total = await service.list_models(
        session,
        user,
        name=name,
        status=status,
        framework=framework,
        sort=sort,
        order=order,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/{model_id}", response_model=ModelRead)
async def get_model(model_id: uuid.UUID, user: CurrentUser, session: Session) -> ModelRead:
    """One model with its versions and default version."""
    return await service.get_model(session, user, model_id)


@router.patch("/{model_id}", response_model=ModelRead)
async def update_model(
    model_id: uuid.UUID, body: ModelUpdate, user: CurrentUser, session: Session
) -> ModelRead:
    """Change a model's description (needs `edit`)."""
    return await service.update_model(session, user, model_id, body.description)


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_model(
    model_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session
) -> Response:
    """Soft-delete a model: hidden and no longer served, history kept (owner only)."""
    await service.delete_model(ctx, session, user, model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{model_id}/versions/{version}", response_model=VersionRead)
async def get_version(
    model_id: uuid.UUID, version: VersionNumber, user: CurrentUser, session: Session
) -> VersionRead:
    """One version: framework, status, input schema and metadata."""
    return await service.get_version(session, user, model_id, version)


@router.patch("/{model_id}/versions/{version}", response_model=VersionRead)
async def update_version(
    model_id: uuid.UUID,
    version: VersionNumber,
    body: VersionUpdate,
    user: CurrentUser,
    ctx: Ctx,
    session: Session,
) -> VersionRead:
    """Change a version's status: active <-> deprecated, either -> archived (final)."""
    return await service.set_version_status(ctx, session, user, model_id, version, body.status)


@router.post("/{model_id}/shares", response_model=ShareRead, status_code=status.HTTP_201_CREATED)
async def share_model(
    model_id: uuid.UUID, body: ShareCreate, user: CurrentUser, ctx: Ctx, session: Session
) -> JSONResponse:
    """Share with another user: `view`, `use` (predict) or `edit` (owner only)."""
    share, created = await service.share(ctx, session, user, model_id, body)
    return JSONResponse(share.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/{model_id}/shares", response_model=list[ShareRead])
async def list_shares(model_id: uuid.UUID, user: CurrentUser, session: Session) -> list[ShareRead]:
    """Who the model is shared with (owner only)."""
    return await service.list_shares(session, user, model_id)


@router.delete("/{model_id}/shares/{share_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unshare_model(
    model_id: uuid.UUID, share_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session
) -> Response:
    """Stop sharing (owner only)."""
    await service.unshare(ctx, session, user, model_id, share_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
