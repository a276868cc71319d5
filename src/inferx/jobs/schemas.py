from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from inferx.kit.schemas import Schema

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobCreate(Schema):
    model_id: uuid.UUID
    version: int | None = Field(None, ge=1, le=1_000_000)
    inputs: list[Any] = Field(
        description="Rows of feature values (lists), or objects keyed by feature name when the "
        "version has a named input_schema.",
        min_length=1,
    )


class Progress(BaseModel):
    done: int
    total: int


class JobRead(BaseModel):
    id: uuid.UUID
    status: JobStatus
    model_id: uuid.UUID
    model_version: int
    source: str
    progress: Progress
    chunks: Progress
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results_expire_at: datetime | None

    @classmethod
    def of(cls, job: Any) -> JobRead:
        return cls(
            id=job.id,
            status=job.status,
            model_id=job.model_id,
            model_version=job.version,
            source=job.source,
            progress=Progress(done=job.done_rows, total=job.total_rows),
            chunks=Progress(done=job.chunks_done, total=job.chunks_total),
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            results_expire_at=job.expires_at,
        )


JOB_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model_id", "inputs"],
                    "properties": {
                        "model_id": {"type": "string", "format": "uuid"},
                        "version": {"type": "integer", "minimum": 1},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "oneOf": [{"type": "array", "items": {}}, {"type": "object"}]
                            },
                        },
                    },
                },
                "example": {"model_id": "…", "inputs": [[5.1, 3.5, 1.4, 0.2]]},
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model_id", "file"],
                    "properties": {
                        "model_id": {"type": "string", "format": "uuid"},
                        "version": {"type": "integer", "minimum": 1},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with a header row: the version's feature names "
                            "(any order), or as many columns as it has features.",
                        },
                    },
                }
            },
        },
    }
}
