"""Which model version serves a request, and may the caller use it. The one place where
version selection happens; cached briefly per process, invalidated by registry events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inferx.errors import Conflict, Forbidden, NotFound
from inferx.events import EventBus
from inferx.kit.ttlcache import TtlCache
from inferx.registry import repository
from inferx.tables import Model, ModelShare, User

SERVABLE = ("active", "deprecated")


@dataclass(frozen=True, slots=True)
class Target:
    model_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    model_version_id: uuid.UUID
    version: int
    status: str
    framework: str
    storage_key: str
    sha256: str
    input_schema: dict[str, Any] | None
    details: dict[str, Any]
    key: str = field(init=False)  # the version id as text: names the version to caches, workers
    model_ref: str = field(init=False)  # the model id as text, as responses show it

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", str(self.model_version_id))
        object.__setattr__(self, "model_ref", str(self.model_id))

    @property
    def has_proba(self) -> bool:
        return bool(self.details.get("has_predict_proba"))

    @property
    def classes(self) -> list[Any] | None:
        classes = self.details.get("classes")
        return list(classes) if isinstance(classes, list) else None


@dataclass(frozen=True, slots=True)
class ModelView:
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    versions: tuple[Target, ...]


class ModelNotFound(NotFound):
    title = "Model not found"


def _view(model: Model, versions: list[Any]) -> ModelView:
    targets = tuple(
        Target(
            model_id=model.id,
            owner_id=model.owner_id,
            name=model.name,
            model_version_id=v.id,
            version=v.version,
            status=v.status,
            framework=v.framework,
            storage_key=v.storage_key,
            sha256=v.sha256,
            input_schema=v.input_schema,
            details=dict(v.details or {}),
        )
        for v in versions
    )
    return ModelView(id=model.id, owner_id=model.owner_id, name=model.name, versions=targets)


def select_version(view: ModelView, requested: int | None) -> Target:
    if requested is not None:
        for target in view.versions:
            if target.version == requested:
                if target.status not in SERVABLE:
                    raise Conflict(f"Version {requested} is {target.status} and no longer served.")
                return target
        raise NotFound(f"Model {view.id} has no version {requested}.")
    active = [t for t in view.versions if t.status == "active"]
    if not active:
        raise Conflict("This model has no active version to serve.")
    return max(active, key=lambda t: t.version)


class Targets:
    def __init__(self, ttl_s: float, stale_s: float) -> None:
        self.models: TtlCache[uuid.UUID, ModelView | None] = TtlCache(ttl_s, stale_s)
        self.shares: TtlCache[tuple[uuid.UUID, uuid.UUID], str | None] = TtlCache(ttl_s, stale_s)
        self.names: TtlCache[tuple[uuid.UUID, str], uuid.UUID | None] = TtlCache(ttl_s, stale_s)

    async def resolve(
        self,
        session: AsyncSession,
        user: User,
        model_ref: uuid.UUID | str,
        version: int | None,
        needed: str = "use",
    ) -> Target:
        view = await self.view(session, user, model_ref, needed)
        return select_version(view, version)

    async def view(
        self, session: AsyncSession, user: User, model_ref: uuid.UUID | str, needed: str = "use"
    ) -> ModelView:
        model_id = (
            model_ref
            if isinstance(model_ref, uuid.UUID)
            else await self._by_name(session, user, model_ref)
        )
        view = (
            None
            if model_id is None
            else await self.models.get_or_load(model_id, lambda: self._load(session, model_id))
        )
        if view is None:
            raise ModelNotFound(f"No model {model_ref}.")
        permission = await self._permission(session, user, view)
        if permission is None:
            raise ModelNotFound(f"No model {model_ref}.")
        if repository.RANK[permission] < repository.RANK[needed]:
            raise Forbidden(f"This needs the {needed!r} permission on the model.")
        return view

    async def _by_name(self, session: AsyncSession, user: User, ref: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(ref)
        except ValueError:
            pass

        async def load() -> uuid.UUID | None:
            model = await repository.find_owned_by_name(session, user.id, ref)
            return None if model is None else model.id

        return await self.names.get_or_load((user.id, ref), load)

    @staticmethod
    async def _load(session: AsyncSession, model_id: uuid.UUID) -> ModelView | None:
        model = await session.get(Model, model_id)
        if model is None or model.deleted_at is not None:
            return None
        versions = (await repository.versions(session, [model.id]))[model.id]
        return _view(model, versions)

    async def _permission(self, session: AsyncSession, user: User, view: ModelView) -> str | None:
        if view.owner_id == user.id or user.role == "admin":
            return "owner"

        async def load() -> str | None:
            share: ModelShare | None = await repository.share_for(session, view.id, user.id)
            return None if share is None else share.permission

        return await self.shares.get_or_load((user.id, view.id), load)

    def subscribe(self, events: EventBus) -> None:
        async def on_model(_event: str, payload: dict[str, Any]) -> None:
            model_id = uuid.UUID(payload["model_id"])
            self.models.invalidate(model_id)
            self.names.clear()

        async def on_share(_event: str, payload: dict[str, Any]) -> None:
            self.shares.invalidate((uuid.UUID(payload["user_id"]), uuid.UUID(payload["model_id"])))

        for event in ("model.version.created", "model.version.status_changed", "model.deleted"):
            events.subscribe(event, on_model)
        events.subscribe("model.share.changed", on_share)
