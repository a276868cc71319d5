"""Batch jobs: submit (JSON rows or a CSV file), read, list, cancel, stream results and
progress. The job and its chunks are written in the request's transaction; the dispatcher
hears about them only after the commit."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from inferx.auth.dependencies import Principal
from inferx.context import AppContext
from inferx.db import after_commit
from inferx.errors import Conflict, InferxError, InvalidInput, NotFound
from inferx.inference.inputs import to_array
from inferx.inference.targets import Target
from inferx.jobs import repository as repo
from inferx.jobs.csvinput import read_chunks
from inferx.jobs.runtime import CHUNKS, dispatch
from inferx.jobs.schemas import JobCreate, JobRead
from inferx.kit.time import utcnow
from inferx.quotas.service import check_job_slots, consume_batch_rows
from inferx.registry.upload import PayloadTooLarge, UploadForm
from inferx.tables import Job, User

log = structlog.get_logger("inferx.jobs")

RESULT_PAGE = 20  # chunks read per query while streaming results
SSE_KEEPALIVE_S = 15.0


class JobNotFound(NotFound):
    title = "Job not found"


class JobNotFinished(Conflict):
    title = "Job not finished"


class ResultsExpired(InferxError):
    status, title = 410, "Results expired"


def chunk_rows(ctx: AppContext) -> int:
    # A chunk goes through the same validation as /predict, so it never exceeds its row cap.
    return max(1, min(ctx.settings.jobs_chunk_rows, ctx.settings.predict_max_rows))


async def _prepare(
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    model_id: uuid.UUID,
    version: int | None,
) -> Target:
    target = await ctx.targets.resolve(session, user, model_id, version, needed="use")
    counts = await repo.counts(session, user.id)
    await check_job_slots(ctx, user, counts["running"], counts["queued"])
    return target


async def submit_rows(
    ctx: AppContext,
    session: AsyncSession,
    principal: Principal,
    body: JobCreate,
    request_id: str | None,
) -> Job:
    user = principal.user
    target = await _prepare(ctx, session, user, body.model_id, body.version)
    rows = body.inputs
    limit = ctx.settings.jobs_max_rows
    if len(rows) > limit:
        raise InvalidInput(f"`inputs` has {len(rows)} rows; a job takes at most {limit}.")
    # Same validation as /predict, for every row, before anything is stored.
    await asyncio.to_thread(to_array, rows, target.input_schema, limit)
    size = chunk_rows(ctx)
    chunks = (rows[i : i + size] for i in range(0, len(rows), size))
    return await _create(ctx, session, principal, target, "json", size, _aiter(chunks), request_id)


async def submit_csv(
    ctx: AppContext,
    session: AsyncSession,
    principal: Principal,
    form: UploadForm,
    request_id: str | None,
) -> Job:
    if form.file is None:
        raise InvalidInput("Send the rows as a CSV `file` part (or JSON with `inputs`).")
    unknown = set(form.fields) - {"model_id", "version"}
    if unknown:
        raise InvalidInput(f"Unknown form field(s): {', '.join(sorted(unknown))}.")
    model_id = _form_uuid(form.fields.get("model_id"))
    version = _form_version(form.fields.get("version"))
    target = await _prepare(ctx, session, principal.user, model_id, version)
    size = chunk_rows(ctx)
    width = target.details.get("n_features")
    iterator = read_chunks(
        form.file.path,
        target.input_schema,
        width if isinstance(width, int) else None,
        size,
        ctx.settings.jobs_max_rows,
    )
    return await _create(
        ctx, session, principal, target, "csv", size, _threaded(iterator), request_id
    )


def _form_uuid(value: str | None) -> uuid.UUID:
    if not value:
        raise InvalidInput("The form needs a `model_id` field.")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidInput("`model_id` is not a UUID.") from None


def _form_version(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput("`version` must be a whole number.") from None
    if not 1 <= number <= 1_000_000:
        raise InvalidInput("`version` must be between 1 and 1000000.")
    return number


async def _aiter(chunks: Iterator[list[Any]]) -> AsyncIterator[list[Any]]:
    for chunk in chunks:
        yield chunk


async def _threaded(chunks: Iterator[list[Any]]) -> AsyncIterator[list[Any]]:
    """Parse in a worker thread, one chunk at a time: the event loop never reads the file."""
    done = object()
    while True:
        chunk = await asyncio.to_thread(next, chunks, done)
        if chunk is done:
            return
        yield chunk  # type: ignore[misc]


async def _create(
    ctx: AppContext,
    session: AsyncSession,
    principal: Principal,
    target: Target,
    source: str,
    size: int,
    chunks: AsyncIterator[list[Any]],
    request_id: str | None,
) -> Job:
    job = Job(
        id=uuid.uuid4(),
        owner_id=principal.user.id,
        api_key_id=principal.api_key_id,
        model_id=target.model_id,
        model_version_id=target.model_version_id,
        version=target.version,
        status="queued",
        source=source,
        total_rows=0,
        done_rows=0,
        chunk_rows=size,
        chunks_total=0,
        chunks_done=0,
        request_id=request_id,
    )
    session.add(job)
    await session.flush()
    total, index, chunk_ids = 0, 0, []
    async for rows in chunks:
        chunk_id = uuid.uuid4()
        await repo.add_chunks(
            session,
            [
                {
                    "id": chunk_id,
                    "job_id": job.id,
                    "chunk_index": index,
                    "first_row": total,
                    "rows": len(rows),
                    "status": "pending",
                    "attempts": 0,
                    "inputs": {"rows": rows},
                    "updated_at": utcnow(),
                }
            ],
        )
        chunk_ids.append(chunk_id)
        total += len(rows)
        index += 1
    if total == 0:
        raise InvalidInput("The job has no rows.")
    # Rows count against the daily quota only once they are known to be valid.
    await consume_batch_rows(ctx, principal.user, total)
    job.total_rows, job.chunks_total = total, index
    await session.flush()
    items = [(chunk_id, None) for chunk_id in chunk_ids]
    after_commit(session, lambda: dispatch(ctx, CHUNKS, items))
    log.info("jobs.submitted", job_id=str(job.id), rows=total, chunks=index, source=source)
    return job


def csv_too_large(ctx: AppContext) -> PayloadTooLarge:
    return PayloadTooLarge(f"The CSV file exceeds the {ctx.settings.jobs_max_upload_mb} MB limit.")


async def get(session: AsyncSession, user: User, job_id: uuid.UUID) -> Job:
    job = await repo.get_owned(session, user.id, job_id)
    if job is None:
        raise JobNotFound(f"No job {job_id}.")
    return job


async def list_jobs(
    session: AsyncSession, user: User, status: str | None, limit: int, offset: int
) -> tuple[list[JobRead], int]:
    jobs, total = await repo.list_owned(session, user.id, status, limit, offset)
    return [JobRead.of(j) for j in jobs], total


async def cancel(ctx: AppContext, session: AsyncSession, user: User, job_id: uuid.UUID) -> Job:
    job = await get(session, user, job_id)
    now = await repo.db_now(session)
    retention = ctx.settings.jobs_retention_hours * 3600
    if not await repo.finish(session, job.id, "cancelled", now, retention):
        raise Conflict(f"The job is already {job.status}.")
    await session.refresh(job)
    log.info("jobs.cancelled", job_id=str(job.id))
    return job


async def check_results(session: AsyncSession, user: User, job_id: uuid.UUID) -> Job:
    job = await get(session, user, job_id)
    if job.status != "succeeded":
        raise JobNotFinished(f"The job is {job.status}; results exist once it has succeeded.")
    if job.expires_at is not None and job.expires_at <= utcnow():
        raise ResultsExpired("The job's results are past their retention and were deleted.")
    return job


async def _pages(ctx: AppContext, job_id: uuid.UUID) -> AsyncIterator[list[Any]]:
    """Chunk results in order, a page at a time, each page in a short session of its own."""
    index = 0
    while True:
        async with ctx.sessions() as session:
            page = await repo.result_chunks(session, job_id, index, RESULT_PAGE)
        if not page:
            return
        yield page
        index = page[-1].chunk_index + 1


def _items(row: Any) -> Iterator[tuple[int, Any, Any]]:
    results = row.results or {}
    probabilities = results.get("probabilities")
    for i, prediction in enumerate(results.get("prediction") or []):
        yield row.first_row + i, prediction, probabilities[i] if probabilities else None


async def results_json(ctx: AppContext, job: Job) -> AsyncIterator[bytes]:
    head: dict[str, Any] = {
        "job_id": str(job.id),
        "model_id": str(job.model_id),
        "model_version": job.version,
        "total": job.total_rows,
        "classes": None,
    }
    started, first = False, True
    async for page in _pages(ctx, job.id):
        parts = []
        if not started:
            head["classes"] = (page[0].results or {}).get("classes")
            parts.append(json.dumps(head)[:-1] + ', "results": [')
            started = True
        for row in page:
            for n, prediction, proba in _items(row):
                item = {"row": n, "prediction": prediction, "probabilities": proba}
                parts.append(("" if first else ",") + json.dumps(item))
                first = False
        yield "".join(parts).encode()
    if started:
        yield b"]}"
    else:
        yield (json.dumps(head)[:-1] + ', "results": []}').encode()


async def results_csv(ctx: AppContext, job: Job) -> AsyncIterator[bytes]:
    header_written = False
    async for page in _pages(ctx, job.id):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in page:
            if not header_written:
                results = row.results or {}
                columns = ["row", "prediction"]
                if results.get("probabilities"):
                    width = len(results["probabilities"][0])
                    names = results.get("classes") or list(range(width))
                    columns += [f"probability_{name}" for name in names]
                writer.writerow(columns)
                header_written = True
            for n, prediction, proba in _items(row):
                writer.writerow([n, _cell(prediction), *(_cell(p) for p in proba or [])])
        yield buffer.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else value


async def events(
    ctx: AppContext,
    user: User,
    job_id: uuid.UUID,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Server-Sent Events: ``progress`` whenever the counts move, then one final event named
    after the terminal status; a comment line keeps idle connections open."""
    loop = asyncio.get_running_loop()
    poll = min(0.5, ctx.settings.jobs_poll_s)
    last: tuple[str, int] | None = None
    quiet_since = loop.time()
    while not ctx.shutting_down:
        async with ctx.sessions() as session:
            job = await repo.get_owned(session, user.id, job_id)
        if job is None:
            return
        state = (job.status, job.done_rows)
        if state != last:
            data = JobRead.of(job).model_dump_json()
            yield f"id: {job.done_rows}\nevent: progress\ndata: {data}\n\n"
            last, quiet_since = state, loop.time()
            if job.status in repo.TERMINAL:
                yield f"event: {job.status}\ndata: {data}\n\n"
                return
        elif loop.time() - quiet_since > SSE_KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet_since = loop.time()
        await asyncio.sleep(poll)
        if await disconnected():
            return
