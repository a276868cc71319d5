"""The job ledger's rules, driven step by step (no background workers): leases expire and are
reaped, max attempts fail the job with a reason (and queue its job.failed message), results are
written once, a tenant's running cap holds without starving others, cancel, retention."""

from __future__ import annotations

import asyncio
import uuid

from jobs_testkit import FAST_JOBS, JOBS, upload
from sqlalchemy import select, update

from inferx.jobs import repository as repo
from inferx.jobs import tasks
from inferx.tables import Job, JobChunk, WebhookDelivery

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
STEPPED = {
    **FAST_JOBS,
    "jobs_worker_in_server": False,  # the test is the worker
    "jobs_chunk_rows": 1,
    "jobs_lease_s": 0.3,
    "jobs_max_attempts": 2,
    "webhook_allow_private": ["127.0.0.0/8"],
}


async def _submit(api, headers, model_id) -> uuid.UUID:
    r = await api.client.post(JOBS, json={"model_id": model_id, "inputs": ROWS}, headers=headers)
    assert r.status_code == 202, r.text
    return uuid.UUID(r.json()["id"])


async def _job(api, job_id) -> Job:
    async with api.ctx.sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def _chunks(api, job_id) -> list[JobChunk]:
    async with api.ctx.sessions() as session:
        rows = await session.execute(
            select(JobChunk).where(JobChunk.job_id == job_id).order_by(JobChunk.chunk_index)
        )
        return list(rows.scalars())


async def test_ledger_rules(make_api, make_settings, model_files):
    api = await make_api(make_settings(**STEPPED))
    ctx = api.ctx
    ada = await api.user("ada@example.com")
    bob = await api.user("bob@example.com")
    model = await upload(api, ada, model_files["iris.pkl"], name="iris")
    r = await api.client.post(
        "/api/v1/shares".replace("/shares", f"/models/{model['id']}/shares"),
        json={"email": "bob@example.com", "permission": "use"},
        headers=ada,
    )
    assert r.status_code in (200, 201), r.text
    r = await api.client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["job.failed"]},
        headers=ada,
    )
    assert r.status_code == 201, r.text

    # A lease that expires goes back to pending; after max attempts the job fails, with a
    # reason, its other chunks are dropped and its job.failed message is queued.
    lost = await _submit(api, ada, model["id"])
    first = await tasks._claim(ctx, "w1")
    assert first is not None and first.job.id == lost and first.chunk.attempts == 1
    assert (await _job(api, lost)).status == "running"
    await asyncio.sleep(0.4)
    assert (first.chunk.id, None) in await tasks.maintain(ctx)
    again = await tasks._claim(ctx, "w2")
    assert again is not None and again.chunk.id == first.chunk.id and again.chunk.attempts == 2
    await asyncio.sleep(0.4)
    await tasks.maintain(ctx)
    job = await _job(api, lost)
    assert job.status == "failed" and "lost 2 times" in job.error and job.finished_at
    assert [c.status for c in await _chunks(api, lost)] == ["failed", "cancelled", "cancelled"]
    async with ctx.sessions() as session:
        messages = list((await session.execute(select(WebhookDelivery))).scalars())
    assert [m.event for m in messages] == ["job.failed"]
    assert messages[0].payload["data"]["id"] == str(lost)
    assert await tasks._claim(ctx, "w3") is None  # nothing left: nothing stuck in running

    # A tenant's running cap (free tier: 1) holds, and another tenant still starts at once.
    a1 = await _submit(api, ada, model["id"])
    a2 = await _submit(api, ada, model["id"])
    b1 = await _submit(api, bob, model["id"])
    claimed = [await tasks._claim(ctx, f"w{i}") for i in range(3)]
    jobs = [c.job.id for c in claimed if c is not None]
    assert jobs[0] == a1 and b1 in jobs and a2 not in jobs
    assert (await _job(api, a2)).status == "queued"

    # Results are written once: a second write of the same chunk changes nothing.
    chunk = claimed[0].chunk
    results = {"prediction": [0], "probabilities": None, "classes": None}
    async with ctx.sessions() as session, session.begin():
        assert await repo.store_result(session, chunk, results) is not None
    async with ctx.sessions() as session, session.begin():
        assert await repo.store_result(session, chunk, results) is None
    job = await _job(api, a1)
    assert job.done_rows == 1 and job.chunks_done == 1

    # The rest runs through the engine (the chunks leased above come back after their lease);
    # every job succeeds, and results expire.
    await asyncio.sleep(0.4)
    await tasks.maintain(ctx)
    while await tasks.run_one(ctx, "w9"):
        pass
    assert {(await _job(api, j)).status for j in (a2, b1)} == {"succeeded"}
    assert (await _job(api, a1)).status == "succeeded"
    r = await api.client.get(f"{JOBS}/{a1}/results", headers=ada)
    assert [i["prediction"] for i in r.json()["results"]][1:] == [2, 1]
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(Job).where(Job.id == a1).values(expires_at=(await repo.db_now(session)))
        )
    await tasks.maintain(ctx)
    assert (await api.client.get(f"{JOBS}/{a1}/results", headers=ada)).status_code == 410
    assert await _chunks(api, a1) == []

    # Cancel: a live job stops, its chunks are never claimed, and it cannot be cancelled twice.
    c1 = await _submit(api, bob, model["id"])
    r = await api.client.post(f"{JOBS}/{c1}/cancel", headers=bob)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert {c.status for c in await _chunks(api, c1)} == {"cancelled"}
    assert (await api.client.post(f"{JOBS}/{c1}/cancel", headers=bob)).status_code == 409
    assert (await api.client.get(f"{JOBS}/{c1}/results", headers=bob)).status_code == 409
