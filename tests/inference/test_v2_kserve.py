"""The KServe Python client against a live server. Not a dev dependency (it pulls in
kubernetes, grpcio and pandas): the module is skipped where ``kserve`` is not installed, so
no backend variant of it shows up as skipped."""

from __future__ import annotations

import httpx
import pytest
from sklearn.datasets import load_iris

kserve = pytest.importorskip("kserve", reason="the KServe client is not installed")

ROWS = load_iris().data[[0, 50, 100, 149]]
GENEROUS = {"quota_free_per_minute": 10_000, "quota_free_per_day": 0}


async def test_kserve_client_against_a_live_server(
    make_api, make_settings, model_files, live_server
):
    api = await make_api(make_settings(**GENEROUS))
    headers = await api.user("ada@example.com")
    auth = {"X-API-Key": (await api.api_key(headers))["key"]}
    model = await api.upload(headers, model_files["iris.pkl"])
    expected = (
        await api.client.post(
            f"/api/v1/predict/{model['id']}", json={"input": ROWS.tolist()}, headers=auth
        )
    ).json()
    async with live_server(api.app) as address:
        base = f"http://{address}"
        client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2"))
        try:
            assert await client.is_server_live(base) is True
            assert await client.is_server_ready(base) is True
            assert await client.is_model_ready(base, "iris", headers=auth) is True
            assert await client.is_model_ready(base, "nope", headers=auth) is False
            inputs = [kserve.InferInput("input-0", list(ROWS.shape), "FP64", ROWS.tolist())]
            request = kserve.InferRequest(model_name="iris", infer_inputs=inputs)
            response = await client.infer(base, request, model_name="iris", headers=auth)
            predict = next(o for o in response.outputs if o.name == "predict")
            assert predict.data == expected["prediction"]
            # Binary tensors, the way the KServe client sends them (content-type octet-stream).
            binary = kserve.InferInput("input-0", list(ROWS.shape), "FP64")
            binary.set_data_from_numpy(ROWS, binary_data=True)
            request = kserve.InferRequest(model_name="iris", infer_inputs=[binary])
            response = await client.infer(base, request, model_name="iris", headers=dict(auth))
            predict = next(o for o in response.outputs if o.name == "predict")
            assert list(predict.as_numpy()) == expected["prediction"]
            with pytest.raises(httpx.HTTPStatusError, match="No model nope"):
                await client.infer(base, request, model_name="nope", headers=dict(auth))
        finally:
            await client.close()
