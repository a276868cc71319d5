"""The registry on S3 storage (a real S3-compatible server on loopback) and its events."""

from __future__ import annotations

import boto3
from sklearn.datasets import load_iris

UPLOAD = "/api/v1/models/upload"


async def test_upload_and_predict_with_s3_storage(
    make_settings, make_api, model_files, s3_server, s3_bucket, s3_credentials
):
    settings = make_settings(
        storage_url=f"s3://{s3_bucket}/models", s3_endpoint_url=s3_server, s3_region="us-east-1"
    )
    api = await make_api(settings)
    headers = await api.user("s3@example.com")
    content = model_files["iris.pkl"].read_bytes()
    r = await api.client.post(
        UPLOAD, files={"file": ("iris.pkl", content)}, data={"name": "iris"}, headers=headers
    )
    assert r.status_code == 201, r.text
    model_id = r.json()["id"]
    client = boto3.session.Session().client("s3", endpoint_url=s3_server, region_name="us-east-1")
    objects = client.list_objects_v2(Bucket=s3_bucket, Prefix="models/u/")["Contents"]
    stored = [o for o in objects if model_id in o["Key"]]
    assert len(stored) == 1 and stored[0]["Size"] == len(content)
    assert not (settings.data_dir / "models").exists()
    ready = (await api.client.get("/health/ready")).json()
    assert {c["name"] for c in ready["checks"]} >= {"database", "storage"}
    row = load_iris().data[100].tolist()
    r = await api.client.post(f"/api/v1/predict/{model_id}", json={"input": [row]}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == [2]
    client.close()


async def test_registry_publishes_version_events(api, model_files):
    seen: list[tuple[str, dict]] = []

    async def handler(event, payload):
        seen.append((event, payload))

    api.ctx.events.subscribe("*", handler)
    headers = await api.user("ev@example.com")
    r = await api.client.post(
        UPLOAD,
        files={"file": ("iris.pkl", model_files["iris.pkl"].read_bytes())},
        data={"name": "iris"},
        headers=headers,
    )
    model_id = r.json()["id"]
    await api.client.patch(
        f"/api/v1/models/{model_id}/versions/1", json={"status": "deprecated"}, headers=headers
    )
    created = [p for e, p in seen if e == "model.version.created"]
    changed = [p for e, p in seen if e == "model.version.status_changed"]
    assert created and created[0]["model_id"] == model_id and created[0]["version"] == 1
    assert created[0]["framework"] == "sklearn"
    assert (
        changed
        and changed[0]["status"] == "deprecated"
        and changed[0]["previous_status"] == "active"
    )
    # A failed upload publishes nothing.
    before = len(seen)
    await api.client.post(
        UPLOAD, files={"file": ("x.pkl", b"junk")}, data={"name": "x"}, headers=headers
    )
    assert len(seen) == before
