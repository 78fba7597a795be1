"""Limits, auth and CORS: body size, bounded queues (429/503 at once, nothing lost), timeouts, API keys, origins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi import FastAPI
from tritonclient.utils import InferenceServerException

from benchmarks.http_load import post_requests, request_bodies, run_level
from tests.recording_engine import RecordingFactory
from tests.serving import live_server, make_app, serving, wait_until_async

V1 = "/v1/models/tiny/predict"
V2 = "/v2/models/tiny/infer"


def _v2_body(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def _endpoint(bert_dir: Path, **config: Any) -> list[dict[str, Any]]:
    return [{"model_dir": str(bert_dir), "engine": "onnxruntime", "max_wait_ms": 0, **config}]


@pytest.mark.parametrize("status", [503, 429])
def test_a_full_queue_refuses_at_once_and_loses_no_request(bert_dir: Path, tmp_path: Path, status: int) -> None:
    factory = RecordingFactory()
    endpoint = _endpoint(bert_dir, max_queue_items=4, max_inputs_per_request=2, max_batch_size=2)
    app = make_app(tmp_path, endpoint, factory, overload_status=status, retry_after_s=2)

    async def main() -> tuple[list[httpx.Response], list[httpx.Response], httpx.Response]:
        async with serving(app) as client:
            engine = factory.engines[0]
            engine.gate.clear()
            try:
                tasks = [asyncio.create_task(client.post(V1, json={"inputs": [f"text {i}"]})) for i in range(10)]
                await wait_until_async(lambda: sum(task.done() for task in tasks) >= 6, "six refusals", timeout=10)
                refused = [task.result() for task in tasks if task.done()]
                assert app.state.service.slots["tiny"].admission.pending == 4
                v2 = await client.post(V2, json=_v2_body(["one more"]))
            finally:
                engine.gate.set()
            answered = list(await asyncio.gather(*tasks))
            assert app.state.service.slots["tiny"].admission.pending == 0
            return refused, answered, v2

    refused, answered, v2 = asyncio.run(main())
    assert len(refused) == 6
    for response in refused:
        assert (response.status_code, response.headers["retry-after"]) == (status, "2")
        assert "model 'tiny' is overloaded (4 of 4 inputs queued)" in response.json()["detail"]
    assert (v2.status_code, v2.headers["retry-after"]) == (status, "2")
    assert "overloaded" in v2.json()["error"]
    assert sorted(response.status_code for response in answered) == sorted([200] * 4 + [status] * 6)


def test_overload_over_http_answers_every_request_at_once(bert_dir: Path, tmp_path: Path) -> None:
    """32 clients against a slow model with room for 4 inputs: each request gets 200 or 503, none hangs or is lost."""
    factory = RecordingFactory()
    endpoint = _endpoint(bert_dir, max_queue_items=4, max_inputs_per_request=1, max_batch_size=2)
    app = make_app(tmp_path, endpoint, factory)
    with live_server(app) as url:
        factory.engines[0].delay_s = 0.02
        requests = post_requests(url, V1, request_bodies(["good movie", "bad film"], 1, "v1"), {})
        level = asyncio.run(run_level(url, requests, concurrency=32, max_requests=300, seconds=60, timeout_s=10))
    assert sum(level.statuses.values()) == 300
    assert set(level.statuses) == {"200", "503"}, level.statuses
    assert level.statuses["503"] > 0 and level.statuses["200"] >= 4


def test_a_request_past_its_timeout_gets_504_and_the_server_goes_on(bert_dir: Path, tmp_path: Path) -> None:
    factory = RecordingFactory()
    app = make_app(tmp_path, _endpoint(bert_dir), factory, request_timeout_s=0.3)

    async def main() -> tuple[httpx.Response, float, httpx.Response, httpx.Response]:
        async with serving(app) as client:
            engine = factory.engines[0]
            engine.gate.clear()
            start = time.monotonic()
            try:
                late = await client.post(V1, json={"inputs": ["held in the engine"]})
                elapsed = time.monotonic() - start
                late_v2 = await client.post(V2, json=_v2_body(["held too"]))
            finally:
                engine.gate.set()
            after = await client.post(V1, json={"inputs": ["served again"]})
            assert app.state.service.slots["tiny"].admission.pending == 0
            return late, elapsed, late_v2, after

    late, elapsed, late_v2, after = asyncio.run(main())
    assert (late.status_code, late.json()["detail"]) == (504, "model 'tiny' did not answer within 0.3 s")
    assert elapsed < 5
    assert (late_v2.status_code, late_v2.json()["error"]) == (504, "model 'tiny' did not answer within 0.3 s")
    assert after.status_code == 200


def test_bodies_over_the_limit_get_413(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, _endpoint(bert_dir), max_body_bytes=4096)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"inputs": ["'
        for _ in range(10):
            yield b"good " * 200
        yield b'"]}'

    async def main() -> list[httpx.Response]:
        async with serving(app) as client:
            big = "good " * 1000
            return [
                await client.post(V1, json={"inputs": [big]}),
                await client.post(V2, json=_v2_body([big])),
                await client.post(V1, content=chunks(), headers={"content-type": "application/json"}),
                await client.post(V1, json={"inputs": ["good " * 500]}),
            ]

    v1, v2, streamed, fits = asyncio.run(main())
    assert (v1.status_code, v1.json()) == (413, {"detail": "request body larger than 4096 bytes"})
    assert (v2.status_code, v2.json()) == (413, {"error": "request body larger than 4096 bytes"})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert fits.status_code == 200


def test_api_key_guards_inference_and_models_while_health_and_metrics_stay_open(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, _endpoint(bert_dir), api_key="s3cret")
    good = {"Authorization": "Bearer s3cret"}

    async def main() -> None:
        async with serving(app) as client:
            refused = [
                (await client.post(V1, json={"inputs": ["x"]}), "missing API key"),
                (await client.post(V1, json={"inputs": ["x"]}, headers={"Authorization": "Bearer nope"}), "invalid"),
                (await client.post(V1, json={"inputs": ["x"]}, headers={"Authorization": "Basic czNjcmV0"}), "missing"),
                (await client.get("/v1/models"), "missing"),
            ]
            for response, reason in refused:
                assert response.status_code == 401, response.text
                assert response.headers["www-authenticate"] == "Bearer"
                assert reason in response.json()["detail"]
            for path in ("/v2/models/tiny", V2):
                response = await (client.get(path) if path != V2 else client.post(path, json=_v2_body(["x"])))
                assert (response.status_code, set(response.json())) == (401, {"error"})
            assert (await client.post(V1, json={"inputs": ["x"]}, headers=good)).status_code == 200
            assert (await client.post(V2, json=_v2_body(["x"]), headers=good)).status_code == 200
            assert (await client.get("/v1/models", headers=good)).status_code == 200
            open_paths = ("/health/live", "/health/ready", "/metrics", "/v2", "/v2/health/ready",
                          "/v2/models/tiny/ready", "/docs", "/openapi.json")
            for path in open_paths:
                assert (await client.get(path)).status_code == 200, path
            openapi = (await client.get("/openapi.json")).json()
            assert openapi["components"]["securitySchemes"] == {"HTTPBearer": {
                "type": "http", "scheme": "bearer", "description": "the server's API key (OBERTA_API_KEY)"}}
            for path, method in (("/v1/models/{name}/predict", "post"), ("/v2/models/{name}/infer", "post"),
                                 ("/v1/embeddings", "post"), ("/v1/models", "get")):
                assert openapi["paths"][path][method]["security"] == [{"HTTPBearer": []}], path

    asyncio.run(main())


def test_health_and_metrics_can_require_the_key(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, _endpoint(bert_dir), api_key="s3cret", auth_health=True, auth_metrics=True)

    async def main() -> None:
        async with serving(app) as client:
            for path in ("/health/live", "/health/ready", "/metrics", "/v2", "/v2/health/live",
                         "/v2/models/tiny/ready"):
                assert (await client.get(path)).status_code == 401, path
                assert (await client.get(path, headers={"Authorization": "Bearer s3cret"})).status_code == 200, path
            assert (await client.get("/openapi.json")).status_code == 200

    asyncio.run(main())


def test_tritonclient_sends_the_key_as_a_header(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, _endpoint(bert_dir), api_key="s3cret")
    with live_server(app) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        text = triton.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"good"], dtype=np.object_))
        with pytest.raises(InferenceServerException, match="missing API key"):
            client.infer("tiny", [text])
        result = client.infer("tiny", [text], headers={"Authorization": "Bearer s3cret"})
        assert result.as_numpy("label").shape == (1,)
        client.close()


def test_cors_is_off_by_default_and_follows_the_origins_setting(bert_dir: Path, tmp_path: Path) -> None:
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}

    async def main(app: FastAPI) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with serving(app) as client:
            return (
                await client.options(V1, headers=preflight),
                await client.post(V1, json={"inputs": ["x"]}, headers={"Origin": "https://ui.example"}),
                await client.post(V1, json={"inputs": ["x"]}, headers={"Origin": "https://evil.example"}),
            )

    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    options, allowed, other = asyncio.run(main(make_app(tmp_path / "off", _endpoint(bert_dir))))
    assert options.status_code == 405
    assert "access-control-allow-origin" not in allowed.headers

    app = make_app(tmp_path / "on", _endpoint(bert_dir), cors_origins=["https://ui.example"])
    options, allowed, other = asyncio.run(main(app))
    assert options.status_code == 200
    assert options.headers["access-control-allow-origin"] == "https://ui.example"
    assert "authorization" in options.headers["access-control-allow-headers"].lower()
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in other.headers
