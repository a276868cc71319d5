"""Helpers for batch-job and webhook tests: settings that make jobs quick, upload, wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

JOBS = "/api/v1/jobs"
UPLOAD = "/api/v1/models/upload"
TERMINAL = {"succeeded", "failed", "cancelled"}

# Batch rows and predictions uncapped for these tests (quotas have their own tests).
FAST_JOBS = {
    "quota_free_batch_rows_per_day": 0,
    "quota_free_per_day": 0,
    "quota_free_per_minute": 1000,
    "jobs_poll_s": 0.2,
}


async def upload(api, headers, path, name="m", **fields) -> dict[str, Any]:
    r = await api.client.post(
        UPLOAD,
        files={"file": (path.name, path.read_bytes())},
        data={"name": name, **fields},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def wait_job(api, headers, job_id, timeout=60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await api.client.get(f"{JOBS}/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in TERMINAL:
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {r.json()}")
