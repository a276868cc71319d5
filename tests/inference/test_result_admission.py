"""The result cache steps aside for versions whose inputs never repeat, and comes back."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_iris

from inferx.inference.results import Admission, Admissions, input_fingerprint

IRIS = load_iris().data


def test_admission_turns_off_below_the_hit_rate_and_back_on_when_inputs_repeat():
    a = Admission(window=10, min_hit_rate=0.2, remember=4)
    for _ in range(9):
        a.looked_up(False)
    a.looked_up(True)  # 1 hit in 10: under 20%
    assert a.caching is False
    for i in range(10):  # new inputs only: stays off
        a.bypassed(i)
    assert a.caching is False
    for i in (1, 1, 2, 2, 3, 3, 4, 4, 5, 5):  # half of them repeats: back on
        a.bypassed(i)
    assert a.caching is True
    for hit in [True, True] + [False] * 8:  # 2 hits in 10 is enough to stay on
        a.looked_up(hit)
    assert a.caching is True


def test_admission_remembers_a_bounded_number_of_inputs():
    a = Admission(window=1000, min_hit_rate=0.5, remember=3)
    a.caching = False
    for i in range(100):
        a.bypassed(i)
    a.bypassed(0)  # forgotten long ago: not a repeat
    assert len(a._seen) == 3 and a._hits == 0
    a.bypassed(99)
    assert a._hits == 1


def test_admissions_are_per_version_and_bounded():
    admissions = Admissions(window=2, min_hit_rate=0.5, remember=8, max_versions=2)
    admissions.of("v1").looked_up(False)
    admissions.of("v1").looked_up(False)
    assert admissions.of("v1").caching is False and admissions.of("v2").caching is True
    admissions.of("v3")  # v1 is the oldest: forgotten, and starts again with the cache on
    assert admissions.of("v1").caching is True
    admissions.forget("v1")
    assert admissions.of("v1").caching is True


def test_fingerprint_tells_inputs_apart():
    x = np.array([[1.0, 2.0]])
    assert input_fingerprint(x) == input_fingerprint(x.copy())
    assert input_fingerprint(x) != input_fingerprint(np.array([[1.0, 2.5]]))
    assert input_fingerprint(np.array([["a", 1]], dtype=object)) == input_fingerprint(
        np.array([["a", 1]], dtype=object)
    )


async def test_a_version_without_repeats_is_served_past_the_cache(
    make_api, make_settings, model_files
):
    api = await make_api(make_settings(quota_free_per_minute=1000, quota_free_per_day=0))
    headers = await api.user("ds@example.com")
    key = {"X-API-Key": (await api.api_key(headers))["key"]}
    model = await api.upload(headers, model_files["iris.pkl"], "iris")
    api.ctx.inference.admissions = Admissions(window=20, min_hit_rate=0.1, remember=64)
    url = f"/api/v1/predict/{model['id']}"
    for i in range(20):  # 20 different rows: no hit
        r = await api.client.post(url, json={"input": [list(IRIS[i + 1])]}, headers=key)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    # Off now: a repeat is computed again, answered right, and the cache is not asked.
    for _ in range(20):
        r = await api.client.post(url, json={"input": [list(IRIS[0])]}, headers=key)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
        assert r.json()["prediction"] == [0] and r.json()["cache_hit"] is False
    metrics = (await api.client.get("/metrics")).text
    assert 'inferx_result_cache_total{outcome="bypass"} 20.0' in metrics
    assert 'inferx_result_cache_total{outcome="miss"} 20.0' in metrics
    # The repeats turned it back on: the next request stores, the one after hits.
    r = await api.client.post(url, json={"input": [list(IRIS[0])]}, headers=key)
    assert r.headers["x-cache"] == "MISS"
    r = await api.client.post(url, json={"input": [list(IRIS[0])]}, headers=key)
    assert r.headers["x-cache"] == "HIT" and r.json()["prediction"] == [0]
