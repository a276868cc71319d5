"""Webhooks over HTTP: signed deliveries a Standard Webhooks verifier accepts, retries with
growing delays, Retry-After, 410, redirects, timeouts, rotation, tenancy."""

from __future__ import annotations

import asyncio
import time

import pytest
from jobs_testkit import JOBS, upload, wait_job
from sqlalchemy import select
from standardwebhooks import Webhook as Verifier

from inferx.tables import Webhook

HOOKS = "/api/v1/webhooks"


async def _create(api, headers, url, events, **extra) -> dict:
    r = await api.client.post(HOOKS, json={"url": url, "events": events, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _deliveries(api, headers, hook_id) -> list[dict]:
    r = await api.client.get(f"{HOOKS}/{hook_id}/deliveries", headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def _settled(api, headers, hook_id, n=1, timeout=15.0) -> dict:
    """The newest delivery, once the newest ``n`` have all settled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = await _deliveries(api, headers, hook_id)
        if len(items) >= n and all(i["status"] != "pending" for i in items[:n]):
            return items[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery still pending: {items}")


async def test_job_and_model_events_arrive_signed(hooks_api, receiver, model_files):
    api = hooks_api
    ada = await api.user("ada@example.com")
    hook = await _create(
        api,
        ada,
        receiver.url,
        ["model.version.created", "model.version.status_changed", "job.succeeded"],
        description="ci",
    )
    secret = hook["secret"]
    assert secret.startswith("whsec_") and hook["is_active"] is True
    shown = (await api.client.get(f"{HOOKS}/{hook['id']}", headers=ada)).json()
    assert "secret" not in shown and shown["events"] == [
        "job.succeeded",
        "model.version.created",
        "model.version.status_changed",
    ]
    async with api.ctx.sessions() as session:
        stored = (await session.execute(select(Webhook))).scalar_one()
    assert secret not in stored.secret_enc and secret[6:] not in stored.secret_enc  # encrypted

    model = await upload(api, ada, model_files["iris.pkl"], name="iris")
    r = await api.client.post(
        JOBS, json={"model_id": model["id"], "inputs": [[5.1, 3.5, 1.4, 0.2]]}, headers=ada
    )
    assert r.status_code == 202
    job = await wait_job(api, ada, r.json()["id"])
    assert job["status"] == "succeeded"
    hits = await receiver.wait_hits(2)
    verifier = Verifier(secret)
    payloads = [verifier.verify(h.body, h.headers) for h in hits]
    by_type = {p["type"]: p for p in payloads}
    assert by_type["model.version.created"]["data"]["model_id"] == model["id"]
    done = by_type["job.succeeded"]["data"]
    assert done["id"] == job["id"] and done["status"] == "succeeded"
    assert done["progress"] == {"done": 1, "total": 1}
    assert all(h.headers["webhook-id"].startswith("msg_") for h in hits)
    assert all(h.headers["content-type"] == "application/json" for h in hits)

    await _settled(api, ada, hook["id"], n=2)
    items = await _deliveries(api, ada, hook["id"])
    assert {i["event"] for i in items} == {"model.version.created", "job.succeeded"}
    assert all(i["status"] == "succeeded" and i["attempts"] == 1 for i in items), items
    assert all(i["attempt_log"][0]["status_code"] == 200 for i in items)
    assert {i["msg_id"] for i in items} == {h.headers["webhook-id"] for h in hits}

    # Rotation: the new secret signs, and the old one too for a while.
    r = await api.client.post(f"{HOOKS}/{hook['id']}/rotate-secret", headers=ada)
    assert r.status_code == 200, r.text
    new_secret = r.json()["secret"]
    assert new_secret != secret
    r = await api.client.post(f"{HOOKS}/{hook['id']}/test", headers=ada)
    assert r.status_code == 202 and r.json()["event"] == "webhook.test"
    (*_, test_hit) = await receiver.wait_hits(3)
    assert Verifier(new_secret).verify(test_hit.body, test_hit.headers)["type"] == "webhook.test"
    assert Verifier(secret).verify(test_hit.body, test_hit.headers)["type"] == "webhook.test"
    assert len(test_hit.headers["webhook-signature"].split(" ")) == 2

    r = await api.client.patch(
        f"/api/v1/models/{model['id']}/versions/1", json={"status": "deprecated"}, headers=ada
    )
    assert r.status_code == 200, r.text
    (*_, changed) = await receiver.wait_hits(4)
    event = Verifier(new_secret).verify(changed.body, changed.headers)
    assert event["type"] == "model.version.status_changed"
    assert event["data"]["status"] == "deprecated" and event["data"]["model_id"] == model["id"]


async def test_failures_are_retried_with_growing_delays(hooks_api, receiver):
    api = hooks_api
    ada = await api.user("ada@example.com")
    receiver.answers = [(500, {}, b"boom"), (500, {}, b"boom"), (200, {}, b"ok")]
    hook = await _create(api, ada, receiver.url, ["webhook.test"])
    assert (await api.client.post(f"{HOOKS}/{hook['id']}/test", headers=ada)).status_code == 202
    hits = await receiver.wait_hits(3)
    first, second = hits[1].at - hits[0].at, hits[2].at - hits[1].at
    assert 0.1 < first < second, (first, second)
    assert len({h.headers["webhook-id"] for h in hits}) == 1  # one message, three attempts
    delivery = await _settled(api, ada, hook["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    log = delivery["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 200]
    assert [a["outcome"] for a in log] == ["http_error", "http_error", "success"]
    assert log[0]["response_body"] == "boom" and log[0]["duration_ms"] > 0

    # Retry-After is honoured: the next attempt waits for it, not for the short backoff.
    receiver.hits.clear()
    receiver.answers = [(429, {"Retry-After": "1"}, b""), (200, {}, b"")]
    await api.client.post(f"{HOOKS}/{hook['id']}/test", headers=ada)
    hits = await receiver.wait_hits(2)
    assert hits[1].at - hits[0].at >= 0.95

    # A redirect is a failed attempt, never followed.
    receiver.hits.clear()
    receiver.answers = [(302, {"Location": "http://169.254.169.254/"}, b""), (200, {}, b"")]
    await api.client.post(f"{HOOKS}/{hook['id']}/test", headers=ada)
    await receiver.wait_hits(2)
    delivery = await _settled(api, ada, hook["id"])
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["redirect", "success"]
    assert all(h.path == "/hook" for h in receiver.hits)

    # A receiver that never finishes its body is cut off at the attempt's deadline.
    api.ctx.extras["webhook_sender"].timeout_s = 0.5
    receiver.hits.clear()
    receiver.drip = True
    start = time.monotonic()
    await api.client.post(f"{HOOKS}/{hook['id']}/test", headers=ada)
    await receiver.wait_hits(1)
    while True:
        delivery = (await _deliveries(api, ada, hook["id"]))[0]
        if delivery["attempt_log"]:
            break
        await asyncio.sleep(0.05)
    assert delivery["attempt_log"][0]["outcome"] == "timeout"
    assert time.monotonic() - start < 5
    receiver.drip = False

    # 410 Gone disables the endpoint.
    receiver.hits.clear()
    receiver.answers = [(410, {}, b"")]
    api.ctx.extras["webhook_sender"].timeout_s = 5
    gone = await _create(api, ada, receiver.url, ["webhook.test"])
    await api.client.post(f"{HOOKS}/{gone['id']}/test", headers=ada)
    delivery = await _settled(api, ada, gone["id"])
    assert delivery["status"] == "failed" and delivery["attempt_log"][0]["outcome"] == "gone"
    state = (await api.client.get(f"{HOOKS}/{gone['id']}", headers=ada)).json()
    assert state["is_active"] is False and "410" in state["disabled_reason"]


SSRF_URLS = [
    "http://127.0.0.1:6379/",
    "http://localhost:5432/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://100.64.0.1/",
    "file:///etc/passwd",
    "gopher://x",
    "ftp://x",
    "https://u:p@example.com/",
    "http://example.com:22/",
    "http://redis/",
]


async def test_private_targets_are_refused_without_the_setting(api):
    headers = await api.user("ssrf@example.com")
    for url in SSRF_URLS:
        r = await api.client.post(
            HOOKS, json={"url": url, "events": ["webhook.test"]}, headers=headers
        )
        assert r.status_code == 422, (url, r.text)
    # Plain http is refused when https is required (production).
    import dataclasses

    sender = api.ctx.extras["webhook_sender"]
    sender.policy = dataclasses.replace(sender.policy, https_only=True)
    r = await api.client.post(
        HOOKS, json={"url": "http://8.8.8.8/", "events": ["webhook.test"]}, headers=headers
    )
    assert r.status_code == 422 and "https" in r.json()["detail"]
    assert (await api.client.get(HOOKS, headers=headers)).json()["total"] == 0


async def test_dns_rebinding_is_blocked_at_delivery(make_api, make_settings, receiver):
    api = await make_api(make_settings(webhook_allowed_ports=[]))
    headers = await api.user("rebind@example.com")
    answers = {"hooks.example.com": ["93.184.216.34"]}

    async def stub(host: str, port: int) -> list[str]:
        return answers[host]

    api.ctx.extras["webhook_sender"].resolver = stub
    url = f"http://hooks.example.com:{receiver.port}/hook"
    hook = await _create(api, headers, url, ["webhook.test"])
    answers["hooks.example.com"] = ["127.0.0.1"]  # the name now points inside
    await api.client.post(f"{HOOKS}/{hook['id']}/test", headers=headers)
    delivery = await _settled(api, headers, hook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempt_log"][0]["outcome"] == "blocked_ssrf"
    assert receiver.connections == 0


async def test_other_users_webhooks_answer_404_and_bad_input_422(hooks_api, receiver):
    api = hooks_api
    ada = await api.user("ada@example.com")
    bob = await api.user("bob@example.com")
    hook = await _create(api, ada, receiver.url, ["webhook.test"])
    hid = hook["id"]
    for method, path, body in [
        ("GET", f"{HOOKS}/{hid}", None),
        ("PATCH", f"{HOOKS}/{hid}", {"description": "mine now"}),
        ("DELETE", f"{HOOKS}/{hid}", None),
        ("POST", f"{HOOKS}/{hid}/test", None),
        ("POST", f"{HOOKS}/{hid}/rotate-secret", None),
        ("GET", f"{HOOKS}/{hid}/deliveries", None),
    ]:
        r = await api.client.request(method, path, json=body, headers=bob)
        assert r.status_code == 404, (method, path, r.text)
        assert hook["secret"] not in r.text
    assert (await api.client.get(HOOKS, headers=bob)).json()["total"] == 0
    assert receiver.hits == []

    for body in [
        {"url": receiver.url, "events": ["model.exploded"]},
        {"url": receiver.url, "events": []},
        {"events": ["webhook.test"]},
        {"url": receiver.url, "events": ["webhook.test"], "secret": "mine"},
    ]:
        r = await api.client.post(HOOKS, json=body, headers=ada)
        assert r.status_code == 422, (body, r.text)
    r = await api.client.patch(f"{HOOKS}/{hid}", json={"url": "http://10.0.0.1/"}, headers=bob)
    assert r.status_code == 404

    r = await api.client.patch(
        f"{HOOKS}/{hid}", json={"events": ["job.failed"], "is_active": False}, headers=ada
    )
    assert r.status_code == 200 and r.json()["events"] == ["job.failed"]
    assert r.json()["is_active"] is False
    assert (await api.client.delete(f"{HOOKS}/{hid}", headers=ada)).status_code == 204
    assert (await api.client.get(f"{HOOKS}/{hid}", headers=ada)).status_code == 404


@pytest.mark.parametrize("header", ["3", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", ""])
def test_retry_after_parsing(header):
    from inferx.webhooks.sender import retry_after

    value = retry_after(header)
    assert value == {"3": 3.0, "soon": None, "": None}.get(header, 0.0)
