from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from inferx.auth.dependencies import CurrentPrincipal, CurrentUser
from inferx.context import Ctx, Session
from inferx.errors import InvalidInput
from inferx.jobs import service
from inferx.jobs.schemas import JOB_BODY_DOC, JobCreate, JobRead, JobStatus
from inferx.kit.http import API_PREFIX, Paging
from inferx.kit.schemas import Page
from inferx.registry.upload import PayloadTooLarge, UnsupportedUpload, receive_upload

router = APIRouter(prefix=f"{API_PREFIX}/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    openapi_extra=JOB_BODY_DOC,
)
async def submit_job(
    request: Request, principal: CurrentPrincipal, ctx: Ctx, session: Session
) -> JSONResponse:
    """Submit a batch job: JSON `inputs`, or a CSV `file` (multipart). Runs in the background."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    request_id = request.state.request_id
    if content_type == "multipart/form-data":
        limit = ctx.settings.jobs_max_upload_mb * 1024 * 1024
        try:
            form = await receive_upload(request, ctx.settings.data_dir / "tmp", limit)
        except PayloadTooLarge:
            raise service.csv_too_large(ctx) from None
        try:
            job = await service.submit_csv(ctx, session, principal, form, request_id)
        finally:
            form.discard()
    elif content_type == "application/json":
        raw = await _capped_body(request, int(ctx.settings.max_body_mb * 1024 * 1024))
        job = await service.submit_rows(ctx, session, principal, _job_body(raw), request_id)
    else:
        raise UnsupportedUpload("Send JSON (`inputs`) or multipart/form-data with a CSV `file`.")
    body = JobRead.of(job).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"{API_PREFIX}/jobs/{job.id}"})


async def _capped_body(request: Request, limit: int) -> bytes:
    """JSON jobs are parsed in memory, so they keep the normal body limit (CSV streams)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"JSON jobs are limited to {limit // (1024 * 1024)} MB; upload a CSV file instead."
            )
    return bytes(body)


def _job_body(raw: bytes) -> JobCreate:
    try:
        return JobCreate.model_validate(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"{where}: {first['msg']}") from None
        raise InvalidInput("The body is not valid JSON.") from None


@router.get("", response_model=Page[JobRead])
async def list_jobs(
    user: CurrentUser,
    session: Session,
    paging: Paging,
    status: JobStatus | None = None,
) -> Page[JobRead]:
    """Your batch jobs, newest first."""
    items, total = await service.list_jobs(session, user, status, paging.limit, paging.offset)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/{job_id}", response_model=JobRead)
async def get_job(job_id: uuid.UUID, user: CurrentUser, session: Session) -> JobRead:
    """A job's status, progress and timestamps."""
    return JobRead.of(await service.get(session, user, job_id))


@router.post("/{job_id}/cancel", response_model=JobRead)
async def cancel_job(job_id: uuid.UUID, user: CurrentUser, ctx: Ctx, session: Session) -> JobRead:
    """Cancel a queued or running job."""
    return JobRead.of(await service.cancel(ctx, session, user, job_id))


@router.get(
    "/{job_id}/results",
    responses={
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "One item per input row, in input order.",
        }
    },
)
async def job_results(
    job_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    ctx: Ctx,
    session: Session,
    format: Annotated[str | None, Query(pattern="^(json|csv)$")] = None,
) -> StreamingResponse:
    """A succeeded job's results, streamed: JSON, or CSV with `Accept: text/csv`."""
    job = await service.check_results(session, user, job_id)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        return StreamingResponse(
            service.results_csv(ctx, job),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="job-{job.id}.csv"'},
        )
    return StreamingResponse(service.results_json(ctx, job), media_type="application/json")


@router.get(
    "/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}, "description": "Progress events."}},
)
async def job_events(
    job_id: uuid.UUID, request: Request, user: CurrentUser, ctx: Ctx, session: Session
) -> StreamingResponse:
    """Progress as Server-Sent Events until the job ends."""
    await service.get(session, user, job_id)
    return StreamingResponse(
        service.events(ctx, user, job_id, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
