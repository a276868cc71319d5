"""Batch jobs over HTTP: CSV and JSON submissions, progress, results equal to /predict."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import numpy as np
from jobs_testkit import JOBS, TERMINAL, upload, wait_job


def _csv(rows, header) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        name = data = None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name:
            events.append((name, data))
    return events


async def test_ten_thousand_row_csv_job_matches_predict_row_for_row(jobs_api, model_files):
    api = jobs_api
    headers = await api.user("batch@example.com")
    model = await upload(api, headers, model_files["rf.joblib"], name="rf")
    X = np.random.default_rng(7).normal(size=(10_000, 20)).round(6)
    body = _csv(X.tolist(), [f"f{i}" for i in range(20)])
    r = await api.client.post(
        JOBS,
        data={"model_id": model["id"]},
        files={"file": ("rows.csv", body, "text/csv")},
        headers=headers,
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"{JOBS}/{job['id']}"
    assert job["status"] == "queued" and job["progress"] == {"done": 0, "total": 10_000}

    seen: list[tuple[str, int]] = []

    async def watch() -> None:
        while True:
            state = (await api.client.get(f"{JOBS}/{job['id']}", headers=headers)).json()
            seen.append((state["status"], state["progress"]["done"]))
            if state["status"] in TERMINAL:
                return
            await asyncio.sleep(0.05)

    sse, _ = await asyncio.gather(
        api.client.get(f"{JOBS}/{job['id']}/events", headers=headers), watch()
    )
    final = await wait_job(api, headers, job["id"])
    assert final["status"] == "succeeded", final
    assert final["progress"] == {"done": 10_000, "total": 10_000} and final["finished_at"]
    # Progress was visible while the job ran, through polling and through the event stream.
    assert any(status == "running" and 0 < done < 10_000 for status, done in seen), seen
    assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
    events = _sse(sse.text)
    dones = [data["progress"]["done"] for name, data in events if name == "progress"]
    assert dones == sorted(dones) and dones[-1] == 10_000 and len(dones) >= 2
    assert events[-1][0] == "succeeded"

    r = await api.client.get(f"{JOBS}/{job['id']}/results", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    results = r.json()
    assert results["total"] == 10_000 and len(results["results"]) == 10_000
    assert [item["row"] for item in results["results"]] == list(range(10_000))
    for start in range(0, 10_000, 1000):
        p = await api.client.post(
            f"/api/v1/predict/{model['id']}",
            json={"input": X[start : start + 1000].tolist()},
            headers=headers,
        )
        assert p.status_code == 200, p.text
        expected = p.json()
        got = results["results"][start : start + 1000]
        assert [g["prediction"] for g in got] == expected["prediction"]
        assert [g["probabilities"] for g in got] == expected["probabilities"]
    assert results["classes"] == expected["classes"]

    r = await api.client.get(
        f"{JOBS}/{job['id']}/results", headers={**headers, "Accept": "text/csv"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["row", "prediction", "probability_0", "probability_1"]
    assert len(table) == 10_001
    assert [int(v) for v in table[1:][5][:2]] == [5, results["results"][5]["prediction"]]


IRIS_SCHEMA = {
    "features": [
        {"name": "sepal_length", "dtype": "float"},
        {"name": "sepal_width", "dtype": "float"},
        {"name": "petal_length", "dtype": "float"},
        {"name": "petal_width", "dtype": "float"},
    ]
}
NAMES = [f["name"] for f in IRIS_SCHEMA["features"]]


async def test_named_features_bad_inputs_cancel_and_tenancy(jobs_api, model_files):
    api = jobs_api
    ada = await api.user("ada@example.com")
    bob = await api.user("bob@example.com")
    model = await upload(
        api, ada, model_files["iris.pkl"], name="iris", input_schema=json.dumps(IRIS_SCHEMA)
    )
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

    # JSON rows as objects, and a CSV whose header lists the features in another order.
    r = await api.client.post(
        JOBS,
        json={
            "model_id": model["id"],
            "inputs": [dict(zip(NAMES, row, strict=True)) for row in rows],
        },
        headers=ada,
    )
    assert r.status_code == 202, r.text
    by_json = await wait_job(api, ada, r.json()["id"])
    order = [3, 1, 0, 2]
    body = _csv([[row[i] for i in order] for row in rows], [NAMES[i] for i in order])
    r = await api.client.post(
        JOBS,
        data={"model_id": model["id"], "version": "1"},
        files={"file": ("x.csv", body, "text/csv")},
        headers=ada,
    )
    assert r.status_code == 202, r.text
    by_csv = await wait_job(api, ada, r.json()["id"])
    assert by_json["status"] == by_csv["status"] == "succeeded"
    a = (await api.client.get(f"{JOBS}/{by_json['id']}/results", headers=ada)).json()
    b = (await api.client.get(f"{JOBS}/{by_csv['id']}/results", headers=ada)).json()
    assert [x["prediction"] for x in a["results"]] == [x["prediction"] for x in b["results"]]
    assert [x["prediction"] for x in a["results"]] == [0, 2, 1]

    # Bad inputs are refused before anything is stored, naming the row or the line.
    async def refused(expect: int, **kwargs) -> str:
        r = await api.client.post(JOBS, headers=kwargs.pop("headers", ada), **kwargs)
        assert r.status_code == expect, r.text
        return str(r.json()["detail"])

    detail = await refused(422, json={"model_id": model["id"], "inputs": [rows[0], [1, 2]]})
    assert "input[1]" in detail
    nan = b'{"model_id": "%s", "inputs": [[1, 2, 3, NaN]]}' % model["id"].encode()
    assert "NaN" in await refused(
        422, content=nan, headers={**ada, "content-type": "application/json"}
    )
    await refused(422, json={"model_id": model["id"], "inputs": []})
    await refused(422, json={"model_id": model["id"], "inputs": rows, "extra": 1})
    await refused(422, content=b"{not json", headers={**ada, "content-type": "application/json"})
    await refused(415, content=b"a,b", headers={**ada, "content-type": "text/plain"})
    await refused(404, json={"model_id": "00000000-0000-0000-0000-000000000000", "inputs": rows})
    missing = _csv([[1, 2, 3]], NAMES[:3])
    assert "petal_width" in await refused(
        422, data={"model_id": model["id"]}, files={"file": ("x.csv", missing, "text/csv")}
    )
    words = _csv([[1, 2, "many", 4]], NAMES)
    assert "line 2" in await refused(
        422, data={"model_id": model["id"]}, files={"file": ("x.csv", words, "text/csv")}
    )
    await refused(422, data={"model_id": "nope"}, files={"file": ("x.csv", words, "text/csv")})
    await refused(415, data={"model_id": model["id"]})  # a form, but not multipart
    assert "CSV" in await refused(422, files={"model_id": (None, model["id"])})

    # Size limits: JSON jobs keep the body limit, CSV files their own (both 413).
    settings = api.ctx.settings
    settings.max_body_mb, settings.jobs_max_upload_mb = 0.0005, 1
    try:
        await refused(413, json={"model_id": model["id"], "inputs": rows * 30})
        big = b",".join(n.encode() for n in NAMES) + b"\n" + b"1,2,3,4\n" * 300_000
        await refused(
            413, data={"model_id": model["id"]}, files={"file": ("big.csv", big, "text/csv")}
        )
    finally:
        settings.max_body_mb, settings.jobs_max_upload_mb = 10.0, 256

    # Other users: 404 everywhere, as for a job that does not exist; not in their list.
    job_id = by_json["id"]
    for method, path in [
        ("GET", f"{JOBS}/{job_id}"),
        ("GET", f"{JOBS}/{job_id}/results"),
        ("GET", f"{JOBS}/{job_id}/events"),
        ("POST", f"{JOBS}/{job_id}/cancel"),
    ]:
        r = await api.client.request(method, path, headers=bob)
        assert r.status_code == 404, (path, r.text)
    assert (await api.client.get(JOBS, headers=bob)).json()["total"] == 0
    r = await api.client.post(JOBS, json={"model_id": model["id"], "inputs": rows}, headers=bob)
    assert r.status_code == 404
    listed = (await api.client.get(JOBS, headers=ada)).json()
    assert listed["total"] == 2 and {j["id"] for j in listed["items"]} == {
        by_json["id"],
        by_csv["id"],
    }

    # A finished job cannot be cancelled; results of an unfinished one are a conflict.
    assert (await api.client.post(f"{JOBS}/{job_id}/cancel", headers=ada)).status_code == 409
