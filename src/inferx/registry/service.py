"""The registry's rules: uploads and versions, lifecycle, listing, sharing, soft delete."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.audit.service import record
from inferx.context import AppContext
from inferx.db import after_commit, is_sqlite_busy
from inferx.errors import Conflict, Forbidden, InvalidInput, NotFound
from inferx.kit.time import utcnow
from inferx.registry import repository
from inferx.registry.schemas import (
    NAME_PATTERN,
    InputSchema,
    ModelRead,
    ShareCreate,
    ShareRead,
    UploadResult,
    VersionRead,
)
from inferx.registry.upload import UploadForm
from inferx.tables import Model, ModelShare, ModelVersion, User
from inferx.users import repository as users_repo

FRAMEWORKS = ("sklearn", "skops", "onnx", "xgboost", "lightgbm", "torchscript")
EXTENSIONS = {
    "sklearn": ".pkl", "skops": ".skops", "onnx": ".onnx", "xgboost": ".json",
    "lightgbm": ".txt", "torchscript": ".pt",
}  # fmt: skip
TRANSITIONS = {
    "active": {"deprecated", "archived"},
    "deprecated": {"active", "archived"},
    "archived": set(),
}
STATUS_RANK = {"active": 0, "deprecated": 1, "archived": 2}
VERSION_RETRIES = 40


class ModelNotFound(NotFound):
    title = "Model not found"


class VersionNotFound(NotFound):
    title = "Model version not found"


def require(permission: str, needed: str) -> None:
    if repository.RANK[permission] < repository.RANK[needed]:
        raise Forbidden(f"This needs the {needed!r} permission on the model.")


async def load(
    session: AsyncSession, user: User, model_id: uuid.UUID, needed: str
) -> tuple[Model, str]:
    """The model if the caller may see it (else 404) and holds ``needed`` (else 403)."""
    found = await repository.access(session, user, model_id)
    if found is None:
        raise ModelNotFound(f"No model {model_id}.")
    require(found[1], needed)
    return found


# --- uploads -------------------------------------------------------------------------------


async def upload(
    ctx: AppContext, session: AsyncSession, user: User, form: UploadForm
) -> UploadResult:
    try:
        return await _upload(ctx, session, user, form)
    finally:
        form.discard()


async def _upload(
    ctx: AppContext, session: AsyncSession, user: User, form: UploadForm
) -> UploadResult:
    fields = form.fields
    unknown = set(fields) - {"name", "description", "framework", "input_schema", "model_id"}
    if unknown:
        raise InvalidInput(f"Unknown form field(s): {', '.join(sorted(unknown))}.")
    if form.file is None or form.file.size == 0:
        raise InvalidInput("`file`: a non-empty model file is required.")
    target = await _upload_target(session, user, fields)
    name = target.name if target else fields.get("name", "")
    declared = fields.get("framework") or None
    if declared is not None and declared not in FRAMEWORKS:
        raise InvalidInput(f"`framework` must be one of {', '.join(FRAMEWORKS)}.")
    given = _parse_schema(fields.get("input_schema"))
    framework, metadata = await ctx.validator.validate(
        form.file.path, form.file.filename, declared, form.file.sha256
    )
    schema = _reconcile_schema(given, metadata)
    metadata.update(size_bytes=form.file.size, sha256=form.file.sha256, filename=form.file.filename)
    model, version = await _insert_version(
        session, user, target, name, fields.get("description"), framework, schema, metadata, form
    )
    version.storage_key = (
        f"u/{model.owner_id}/{model.id}/v{version.version}/model{EXTENSIONS[framework]}"
    )
    await ctx.storage.save(version.storage_key, form.file.path)
    try:
        await session.flush()
        await record(
            session,
            "model.version_created",
            actor_id=user.id,
            target_id=model.id,
            version=version.version,
            framework=framework,
            sha256=form.file.sha256,
        )
    except BaseException:
        await ctx.storage.delete(version.storage_key)
        raise
    _publish(ctx, session, "model.version.created", model, version)
    return UploadResult(
        id=model.id,
        name=model.name,
        version=version.version,
        framework=framework,
        status="active",
        model_version_id=version.id,
        input_schema=version.input_schema,
        metadata=_metadata(version),
        created_at=version.created_at,
    )


async def _upload_target(session: AsyncSession, user: User, fields: dict[str, str]) -> Model | None:
    """An existing model to add a version to (by id with `edit`, or the caller's own by name)."""
    if model_id := fields.get("model_id"):
        try:
            parsed = uuid.UUID(model_id)
        except ValueError as exc:
            raise InvalidInput("`model_id` must be a UUID.") from exc
        model, _ = await load(session, user, parsed, "edit")
        return model
    name = fields.get("name", "")
    if not re.fullmatch(NAME_PATTERN, name):
        raise InvalidInput(
            "`name` is required: 1-128 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return None


def _parse_schema(text: str | None) -> InputSchema | None:
    if not text:
        return None
    try:
        return InputSchema.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(f"`input_schema` is not a valid schema: {exc}") from exc


def _reconcile_schema(given: InputSchema | None, metadata: dict[str, Any]) -> dict[str, Any] | None:
    inferred: dict[str, Any] | None = metadata.get("input_schema")
    if given is None:
        return inferred
    n_model = metadata.get("n_features")
    n_given = given.n_features or (len(given.features) if given.features else None)
    if n_model and n_given and n_model != n_given:
        raise InvalidInput(
            f"`input_schema` describes {n_given} features but the model takes {n_model}."
        )
    if given.features and given.n_features and given.n_features != len(given.features):
        raise InvalidInput("`input_schema.n_features` does not match the number of `features`.")
    result = given.model_dump(exclude_none=True)
    result.setdefault("n_features", n_given or n_model)
    return result


async def _insert_version(
    session: AsyncSession,
    user: User,
    target: Model | None,
    name: str,
    description: str | None,
    framework: str,
    schema: dict[str, Any] | None,
    metadata: dict[str, Any],
    form: UploadForm,
) -> tuple[Model, ModelVersion]:
    """Next version number, race-free: a unique constraint decides, the loser retries."""
    assert form.file is not None
    target_id = target.id if target is not None else None
    for attempt in range(VERSION_RETRIES):
        try:
            async with session.begin_nested():
                model = await session.get(Model, target_id) if target_id else None
                model = model or await repository.find_owned_by_name(session, user.id, name)
                if model is None:
                    model = Model(owner_id=user.id, name=name, description=description)
                    session.add(model)
                    await session.flush()
                elif description is not None:
                    model.description = description
                number = await repository.max_version(session, model.id) + 1
                version = ModelVersion(
                    model_id=model.id, version=number, framework=framework, status="active",
                    storage_key="", size_bytes=form.file.size, sha256=form.file.sha256,
                    filename=form.file.filename, input_schema=schema, details=metadata,
                    created_by=user.id,
                )  # fmt: skip
                session.add(version)
                model.updated_at = utcnow()
                await session.flush()
                return model, version
        except IntegrityError:
            pass
        except OperationalError as exc:
            if not is_sqlite_busy(exc):
                raise
            # SQLite cannot upgrade a stale read snapshot to a write: start the transaction over.
            await session.rollback()
        await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise Conflict("Too many concurrent uploads under this name; try again.")


# --- reading -------------------------------------------------------------------------------


def _metadata(version: ModelVersion) -> dict[str, Any]:
    return {**version.details, "size_bytes": version.size_bytes, "sha256": version.sha256}


def version_read(version: ModelVersion) -> VersionRead:
    return VersionRead(
        id=version.id,
        version=version.version,
        framework=version.framework,
        status=version.status,  # type: ignore[arg-type]
        input_schema=version.input_schema,
        metadata=_metadata(version),
        created_at=version.created_at,
        status_changed_at=version.status_changed_at,
    )


def model_read(
    model: Model, permission: str, versions: list[ModelVersion], *, full: bool
) -> ModelRead:
    active = [v.version for v in versions if v.status == "active"]
    best = min((v.status for v in versions), key=STATUS_RANK.__getitem__, default="archived")
    return ModelRead(
        id=model.id,
        name=model.name,
        description=model.description,
        owner_id=model.owner_id,
        permission=permission,  # type: ignore[arg-type]
        status=best,  # type: ignore[arg-type]
        default_version=max(active) if active else None,
        latest_version=max((v.version for v in versions), default=0),
        created_at=model.created_at,
        updated_at=model.updated_at,
        versions=[version_read(v) for v in versions] if full else None,
    )


async def list_models(
    session: AsyncSession,
    user: User,
    *,
    name: str | None,
    status: str | None,
    framework: str | None,
    sort: Literal["created_at", "name"],
    order: Literal["asc", "desc"],
    limit: int,
    offset: int,
) -> tuple[list[ModelRead], int]:
    stmt = repository.filtered(
        repository.visible(user), name=name, status=status, framework=framework
    )
    models, total = await repository.page(
        session, stmt, sort=sort, order=order, limit=limit, offset=offset
    )
    by_model = await repository.versions(session, [m.id for m in models])
    permissions = await repository.permissions(session, user, models)
    items = [
        model_read(m, permissions.get(m.id, "view"), by_model[m.id], full=False) for m in models
    ]
    return items, total


async def get_model(session: AsyncSession, user: User, model_id: uuid.UUID) -> ModelRead:
    model, permission = await load(session, user, model_id, "view")
    versions = (await repository.versions(session, [model.id]))[model.id]
    return model_read(model, permission, versions, full=True)


async def update_model(
    session: AsyncSession, user: User, model_id: uuid.UUID, description: str | None
) -> ModelRead:
    model, permission = await load(session, user, model_id, "edit")
    model.description = description
    model.updated_at = utcnow()
    await session.flush()
    versions = (await repository.versions(session, [model.id]))[model.id]
    return model_read(model, permission, versions, full=True)


async def delete_model(
    ctx: AppContext, session: AsyncSession, user: User, model_id: uuid.UUID
) -> None:
    model, _ = await load(session, user, model_id, "owner")
    model.deleted_at = utcnow()
    await session.flush()
    await record(session, "model.deleted", actor_id=user.id, target_id=model.id)
    payload = {"model_id": str(model.id), "owner_id": str(model.owner_id)}
    after_commit(session, lambda: ctx.events.publish("model.deleted", payload))


async def get_version(
    session: AsyncSession, user: User, model_id: uuid.UUID, number: int
) -> VersionRead:
    model, _ = await load(session, user, model_id, "view")
    return version_read(await _version(session, model, number))


async def set_version_status(
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    model_id: uuid.UUID,
    number: int,
    status: str,
) -> VersionRead:
    model, _ = await load(session, user, model_id, "edit")
    version = await _version(session, model, number)
    if status != version.status:
        if status not in TRANSITIONS[version.status]:
            raise Conflict(f"A version cannot go from {version.status!r} to {status!r}.")
        old, version.status = version.status, status
        version.status_changed_at = utcnow()
        await session.flush()
        await record(
            session,
            "model.version_status_changed",
            actor_id=user.id,
            target_id=model.id,
            version=number,
            old=old,
            new=status,
        )
        _publish(ctx, session, "model.version.status_changed", model, version, previous_status=old)
    return version_read(version)


async def _version(session: AsyncSession, model: Model, number: int) -> ModelVersion:
    version = await repository.version(session, model.id, number)
    if version is None:
        raise VersionNotFound(f"Model {model.id} has no version {number}.")
    return version


def _publish(
    ctx: AppContext,
    session: AsyncSession,
    event: str,
    model: Model,
    version: ModelVersion,
    **extra: Any,
) -> None:
    payload = {
        "model_id": str(model.id),
        "owner_id": str(model.owner_id),
        "name": model.name,
        "version": version.version,
        "model_version_id": str(version.id),
        "framework": version.framework,
        "status": version.status,
        **extra,
    }
    after_commit(session, lambda: ctx.events.publish(event, payload))


# --- sharing -------------------------------------------------------------------------------


async def share(
    ctx: AppContext, session: AsyncSession, user: User, model_id: uuid.UUID, body: ShareCreate
) -> tuple[ShareRead, bool]:
    model, _ = await load(session, user, model_id, "owner")
    email = body.email.strip().lower()
    grantee = await users_repo.get_by_email(session, email)
    if grantee is None or not grantee.is_active:
        raise NotFound(f"No active user with email {email}.")
    if grantee.id == model.owner_id:
        raise InvalidInput("`email`: the owner already has every permission.")
    existing = await repository.share_for(session, model.id, grantee.id)
    created = existing is None
    if existing is None:
        existing = ModelShare(model_id=model.id, user_id=grantee.id, permission=body.permission)
        session.add(existing)
    else:
        existing.permission = body.permission
    await session.flush()
    await record(
        session,
        "model.shared",
        actor_id=user.id,
        target_id=model.id,
        grantee_id=str(grantee.id),
        permission=body.permission,
    )
    _share_changed(ctx, session, model, grantee.id)
    return _share_read(existing, email), created


async def list_shares(session: AsyncSession, user: User, model_id: uuid.UUID) -> list[ShareRead]:
    model, _ = await load(session, user, model_id, "owner")
    return [_share_read(s, email) for s, email in await repository.shares(session, model.id)]


async def unshare(
    ctx: AppContext, session: AsyncSession, user: User, model_id: uuid.UUID, share_id: uuid.UUID
) -> None:
    model, _ = await load(session, user, model_id, "owner")
    found = await repository.share(session, model.id, share_id)
    if found is None:
        raise NotFound(f"No share {share_id} on this model.")
    await session.delete(found)
    await session.flush()
    await record(
        session,
        "model.unshared",
        actor_id=user.id,
        target_id=model.id,
        grantee_id=str(found.user_id),
    )
    _share_changed(ctx, session, model, found.user_id)


def _share_changed(
    ctx: AppContext, session: AsyncSession, model: Model, user_id: uuid.UUID
) -> None:
    payload = {"model_id": str(model.id), "user_id": str(user_id)}
    after_commit(session, lambda: ctx.events.publish("model.share.changed", payload))


def _share_read(share: ModelShare, email: str) -> ShareRead:
    return ShareRead(
        id=share.id,
        user_id=share.user_id,
        email=email,
        permission=share.permission,  # type: ignore[arg-type]
        created_at=share.created_at,
    )
