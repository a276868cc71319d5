from __future__ import annotations

import uuid

UPLOAD = "/api/v1/models/upload"


async def _model(api, headers, path, name="iris"):
    r = await api.client.post(
        UPLOAD, files={"file": (path.name, path.read_bytes())}, data={"name": name}, headers=headers
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_other_users_get_404_for_everything(api, model_files):
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    bob_key = {"X-API-Key": (await api.api_key(bob))["key"]}
    model_id = await _model(api, alice, model_files["iris.pkl"])
    for headers in (bob, bob_key):
        calls = [
            ("get", f"/api/v1/models/{model_id}", None),
            ("patch", f"/api/v1/models/{model_id}", {"description": "mine"}),
            ("delete", f"/api/v1/models/{model_id}", None),
            ("get", f"/api/v1/models/{model_id}/versions/1", None),
            ("patch", f"/api/v1/models/{model_id}/versions/1", {"status": "archived"}),
            ("get", f"/api/v1/models/{model_id}/shares", None),
            (
                "post",
                f"/api/v1/models/{model_id}/shares",
                {"email": "bob@example.com", "permission": "edit"},
            ),
        ]
        for method, url, body in calls:
            kwargs = {"json": body} if body is not None else {}
            r = await api.client.request(method.upper(), url, headers=headers, **kwargs)
            assert r.status_code == 404, (method, url, r.status_code)
            missing = await api.client.request(
                method.upper(), url.replace(model_id, str(uuid.uuid4())), headers=headers, **kwargs
            )
            assert r.json()["title"] == missing.json()["title"]
        r = await api.client.post(
            UPLOAD,
            files={"file": ("x.pkl", model_files["iris.pkl"].read_bytes())},
            data={"model_id": model_id},
            headers=headers,
        )
        assert r.status_code == 404
    assert (await api.client.get("/api/v1/models", headers=bob)).json()["total"] == 0
    model = (await api.client.get(f"/api/v1/models/{model_id}", headers=alice)).json()
    assert model["description"] is None and model["versions"][0]["status"] == "active"


async def test_share_permissions_allow_exactly_what_they_say(api, model_files):
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    model_id = await _model(api, alice, model_files["iris.pkl"])
    shares = f"/api/v1/models/{model_id}/shares"

    r = await api.client.post(
        shares, json={"email": "BOB@example.com", "permission": "view"}, headers=alice
    )
    assert r.status_code == 201 and r.json()["permission"] == "view"
    share_id = r.json()["id"]
    assert (await api.client.get(f"/api/v1/models/{model_id}", headers=bob)).json()[
        "permission"
    ] == "view"
    listed = (await api.client.get("/api/v1/models", headers=bob)).json()
    assert listed["total"] == 1 and listed["items"][0]["permission"] == "view"
    assert (
        await api.client.patch(f"/api/v1/models/{model_id}", json={"description": "x"}, headers=bob)
    ).status_code == 403
    assert (await api.client.get(shares, headers=bob)).status_code == 403

    r = await api.client.post(
        shares, json={"email": "bob@example.com", "permission": "edit"}, headers=alice
    )
    assert r.status_code == 200 and r.json()["id"] == share_id
    assert (
        await api.client.patch(f"/api/v1/models/{model_id}", json={"description": "x"}, headers=bob)
    ).status_code == 200
    r = await api.client.patch(
        f"/api/v1/models/{model_id}/versions/1", json={"status": "deprecated"}, headers=bob
    )
    assert r.status_code == 200
    r = await api.client.post(
        UPLOAD,
        files={"file": ("x.pkl", model_files["iris.pkl"].read_bytes())},
        data={"model_id": model_id},
        headers=bob,
    )
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["id"] == model_id
    # Editors do not share, and do not delete.
    r = await api.client.post(
        shares, json={"email": "bob@example.com", "permission": "edit"}, headers=bob
    )
    assert r.status_code == 403
    assert (await api.client.delete(f"/api/v1/models/{model_id}", headers=bob)).status_code == 403

    assert (await api.client.delete(f"{shares}/{share_id}", headers=alice)).status_code == 204
    assert (await api.client.get(f"/api/v1/models/{model_id}", headers=bob)).status_code == 404


async def test_share_validation(api, model_files):
    alice = await api.user("alice@example.com")
    model_id = await _model(api, alice, model_files["iris.pkl"])
    shares = f"/api/v1/models/{model_id}/shares"
    assert (
        await api.client.post(
            shares, json={"email": "nobody@example.com", "permission": "use"}, headers=alice
        )
    ).status_code == 404
    assert (
        await api.client.post(
            shares, json={"email": "alice@example.com", "permission": "use"}, headers=alice
        )
    ).status_code == 422
    assert (
        await api.client.post(
            shares, json={"email": "x@example.com", "permission": "owner"}, headers=alice
        )
    ).status_code == 422
    assert (await api.client.delete(f"{shares}/{uuid.uuid4()}", headers=alice)).status_code == 404


async def test_listing_filters_sorting_and_paging(api, model_files):
    alice = await api.user("alice@example.com")
    await _model(api, alice, model_files["iris.pkl"], "b-iris")
    await _model(api, alice, model_files["iris.onnx"], "a-onnx")
    reg = await _model(api, alice, model_files["reg.pkl"], "c-reg")
    await api.client.patch(
        f"/api/v1/models/{reg}/versions/1", json={"status": "deprecated"}, headers=alice
    )

    async def names(**params):
        r = await api.client.get("/api/v1/models", params=params, headers=alice)
        assert r.status_code == 200, r.text
        return [m["name"] for m in r.json()["items"]]

    assert await names(sort="name", order="asc") == ["a-onnx", "b-iris", "c-reg"]
    assert await names(framework="onnx") == ["a-onnx"]
    assert await names(status="deprecated") == ["c-reg"]
    assert sorted(await names(status="active")) == ["a-onnx", "b-iris"]
    assert await names(name="iris") == ["b-iris"]
    assert await names(sort="name", order="asc", limit=1, offset=1) == ["b-iris"]
    page = (await api.client.get("/api/v1/models", params={"limit": 10**9}, headers=alice)).json()
    assert page["limit"] == 100 and page["total"] == 3
    assert (
        await api.client.get("/api/v1/models", params={"sort": "owner_id"}, headers=alice)
    ).status_code == 422
    assert (
        await api.client.get("/api/v1/models", params={"offset": -1}, headers=alice)
    ).status_code == 422


async def test_soft_delete_hides_keeps_history_and_frees_the_name(api, model_files):
    alice = await api.user("alice@example.com")
    admin = await api.user("root@example.com", role="admin")
    model_id = await _model(api, alice, model_files["iris.pkl"])
    assert (await api.client.delete(f"/api/v1/models/{model_id}", headers=alice)).status_code == 204
    assert (await api.client.get(f"/api/v1/models/{model_id}", headers=alice)).status_code == 404
    assert (await api.client.get("/api/v1/models", headers=alice)).json()["total"] == 0
    new_id = await _model(api, alice, model_files["iris.pkl"])
    assert new_id != model_id
    r = await api.client.get(f"/api/v1/models/{new_id}", headers=admin)
    assert r.status_code == 200 and r.json()["versions"][0]["version"] == 1
    events = (
        await api.client.get(
            "/api/v1/admin/audit-events", params={"event": "model.deleted"}, headers=admin
        )
    ).json()
    assert events["total"] == 1
