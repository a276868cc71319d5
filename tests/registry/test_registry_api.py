from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pickle
import uuid
from pathlib import Path

import joblib
import pytest
from sqlalchemy import func, select

from inferx.tables import ModelVersion

UPLOAD = "/api/v1/models/upload"


async def upload(api, headers, path: Path, name: str = "iris", **fields):
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    return await api.client.post(
        UPLOAD, files=files, data={"name": name, **fields}, headers=headers
    )


async def test_four_formats_become_four_versions_with_metadata(api, model_files):
    headers = await api.user("ds@example.com")
    expected = [
        ("iris.pkl", "sklearn"),
        ("iris.joblib", "sklearn"),
        ("iris.skops", "skops"),
        ("iris.onnx", "onnx"),
    ]
    for number, (filename, framework) in enumerate(expected, start=1):
        r = await upload(api, headers, model_files[filename])
        assert r.status_code == 201, r.text
        body = r.json()
        assert (
            body["version"] == number
            and body["framework"] == framework
            and body["status"] == "active"
        )
        assert (
            body["metadata"]["sha256"]
            == hashlib.sha256(model_files[filename].read_bytes()).hexdigest()
        )
        assert body["metadata"]["size_bytes"] == model_files[filename].stat().st_size
        assert body["metadata"]["n_features"] == 4
    model_id = body["id"]
    model = (await api.client.get(f"/api/v1/models/{model_id}", headers=headers)).json()
    assert [v["version"] for v in model["versions"]] == [1, 2, 3, 4]
    assert model["default_version"] == 4 and model["permission"] == "owner"
    v1 = (await api.client.get(f"/api/v1/models/{model_id}/versions/1", headers=headers)).json()
    assert v1["metadata"]["classes"] == [0, 1, 2]
    assert "LogisticRegression" in v1["metadata"]["estimator_class"]
    assert v1["input_schema"]["n_features"] == 4
    stored = list((api.ctx.settings.data_dir / "models").rglob("model.*"))
    assert len(stored) == 4
    assert not list((api.ctx.settings.data_dir / "tmp").iterdir())


async def test_version_lifecycle_and_default_version(api, model_files):
    headers = await api.user("ds@example.com")
    for _ in range(3):
        model_id = (await upload(api, headers, model_files["iris.pkl"])).json()["id"]
    url = f"/api/v1/models/{model_id}/versions"
    r = await api.client.patch(f"{url}/3", json={"status": "deprecated"}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "deprecated"
    assert (await api.client.get(f"/api/v1/models/{model_id}", headers=headers)).json()[
        "default_version"
    ] == 2
    assert (
        await api.client.patch(f"{url}/3", json={"status": "active"}, headers=headers)
    ).status_code == 200
    assert (
        await api.client.patch(f"{url}/2", json={"status": "archived"}, headers=headers)
    ).status_code == 200
    r = await api.client.patch(f"{url}/2", json={"status": "active"}, headers=headers)
    assert r.status_code == 409
    assert (
        await api.client.patch(f"{url}/1", json={"status": "deleted"}, headers=headers)
    ).status_code == 422
    assert (
        await api.client.patch(f"{url}/9", json={"status": "active"}, headers=headers)
    ).status_code == 404
    for n in (1, 3):
        await api.client.patch(f"{url}/{n}", json={"status": "archived"}, headers=headers)
    model = (await api.client.get(f"/api/v1/models/{model_id}", headers=headers)).json()
    assert model["default_version"] is None and model["status"] == "archived"


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious_files(tmp_path: Path, marker: Path) -> dict[str, bytes]:
    from sklearn.linear_model import LogisticRegression

    command = f"touch {marker}"
    inside = LogisticRegression()
    inside.evil = _Payload(os.system, command)
    files = {
        "os_system.pkl": pickle.dumps(_Payload(os.system, command)),
        "eval.pkl": pickle.dumps(_Payload(eval, f"open({str(marker)!r}, 'w')")),
        "nested.pkl": pickle.dumps(inside),
    }
    path = tmp_path / "evil.joblib"
    joblib.dump(_Payload(os.system, command), path)
    files["evil.joblib"] = path.read_bytes()
    joblib.dump(_Payload(os.system, command), path, compress=3)
    files["evil_compressed.joblib"] = path.read_bytes()
    return files


async def test_malicious_pickles_are_refused_naming_the_global(api, tmp_path):
    headers = await api.user("mallory@example.com")
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    for filename, content in _malicious_files(tmp_path, marker).items():
        r = await api.client.post(
            UPLOAD, files={"file": (filename, content)}, data={"name": "evil"}, headers=headers
        )
        assert r.status_code == 422, (filename, r.text)
        problem = r.json()
        assert problem["title"] == "Unsafe model file", filename
        assert problem["global"] in ("posix.system", "os.system", "builtins.eval"), problem
        assert problem["global"] in problem["detail"]
    assert not marker.exists()
    async with api.ctx.sessions() as session:
        assert (
            await session.execute(select(func.count()).select_from(ModelVersion))
        ).scalar_one() == 0
    assert not list((api.ctx.settings.data_dir / "tmp").iterdir())


async def test_socket_payload_never_connects(api, tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    headers = await api.user("mallory@example.com")
    content = pickle.dumps(_Payload(socket.create_connection, ("127.0.0.1", port)))
    r = await api.client.post(
        UPLOAD, files={"file": ("s.pkl", content)}, data={"name": "s"}, headers=headers
    )
    assert r.status_code == 422 and "socket" in r.json()["detail"]
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()


@pytest.mark.parametrize(
    ("fields", "status", "needle"),
    [
        ({"name": ""}, 422, "name"),
        ({"name": "../etc/passwd"}, 422, "name"),
        ({"name": "ok", "framework": "tensorflow"}, 422, "framework"),
        ({"name": "ok", "input_schema": "{not json"}, 422, "input_schema"),
        ({"name": "ok", "input_schema": json.dumps({"n_features": 7})}, 422, "7 features"),
        ({"name": "ok", "owner_id": "x"}, 422, "owner_id"),
        ({"name": "ok", "model_id": str(uuid.uuid4())}, 404, "model"),
    ],
)
async def test_upload_bad_fields(api, model_files, fields, status, needle):
    headers = await api.user("ds@example.com")
    r = await api.client.post(
        UPLOAD,
        files={"file": ("iris.pkl", model_files["iris.pkl"].read_bytes())},
        data=fields,
        headers=headers,
    )
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


async def test_upload_bad_files(api, model_files):
    headers = await api.user("ds@example.com")
    cases = [
        ({"file": ("junk.pkl", os.urandom(2048))}, 422),
        ({"file": ("empty.pkl", b"")}, 422),
        ({"other": ("iris.pkl", model_files["iris.pkl"].read_bytes())}, 422),
        ({"file": ("model.onnx", model_files["iris.pkl"].read_bytes())}, 201),  # sniffed: a pickle
    ]
    for files, status in cases:
        r = await api.client.post(UPLOAD, files=files, data={"name": "m"}, headers=headers)
        assert r.status_code == status, r.text
    assert r.json()["framework"] == "sklearn"
    # A declared framework that contradicts the content is refused.
    r = await api.client.post(
        UPLOAD,
        files={"file": ("model.onnx", model_files["iris.pkl"].read_bytes())},
        data={"name": "m", "framework": "onnx"},
        headers=headers,
    )
    assert r.status_code == 422
    r = await api.client.post(UPLOAD, json={"name": "m"}, headers=headers)
    assert r.status_code == 415
    assert (
        await api.client.post(UPLOAD, files={"file": ("a", b"x")}, data={"name": "m"})
    ).status_code == 401


async def test_oversized_upload_is_413_and_leaves_nothing(make_settings, make_api):
    api = await make_api(make_settings(max_upload_mb=1))
    headers = await api.user("big@example.com")

    async def body():
        boundary = b"XyZ"
        yield b'--XyZ\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
        yield b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.pkl"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--" + boundary + b"--\r\n"

    r = await api.client.post(
        UPLOAD,
        content=body(),
        headers={**headers, "content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert r.status_code == 413
    assert not list((api.ctx.settings.data_dir / "tmp").iterdir())
    async with api.ctx.sessions() as session:
        assert (
            await session.execute(select(func.count()).select_from(ModelVersion))
        ).scalar_one() == 0


async def test_concurrent_uploads_get_distinct_consecutive_versions(api, model_files):
    headers = await api.user("race@example.com")
    content = model_files["reg.pkl"].read_bytes()

    async def one():
        return await api.client.post(
            UPLOAD, files={"file": ("r.pkl", content)}, data={"name": "race"}, headers=headers
        )

    results = await asyncio.gather(*[one() for _ in range(20)])
    assert all(r.status_code == 201 for r in results), [
        r.text for r in results if r.status_code != 201
    ]
    assert sorted(r.json()["version"] for r in results) == list(range(1, 21))
    assert len({r.json()["id"] for r in results}) == 1
