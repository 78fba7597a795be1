"""The v1 prediction route's direct path: what it answers itself, what it hands to the app, and that both agree."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.requests import Request

from service.api import direct_predict
from service.api.direct_predict import DirectPredict, key_accepted, model_of, plain_json
from service.runtime.config import Settings
from tests.serving import make_app, wait_ready

JSON = {b"content-type": b"application/json", b"content-length": b"20"}


def test_only_posts_to_a_model_s_predict_route_are_direct() -> None:
    def scope(method: str, path: str, kind: str = "http") -> dict[str, Any]:
        return {"type": kind, "method": method, "path": path}

    assert model_of(scope("POST", "/v1/models/sentiment/predict")) == "sentiment"
    for method, path in [("GET", "/v1/models/sentiment/predict"), ("POST", "/v1/models//predict"),
                         ("POST", "/v1/models/a/b/predict"), ("POST", "/v2/models/sentiment/infer"),
                         ("POST", "/v1/models")]:
        assert model_of(scope(method, path)) is None, (method, path)
    assert model_of({"type": "lifespan"}) is None


def test_which_requests_the_direct_path_takes() -> None:
    assert plain_json(JSON, 1024)
    assert plain_json({**JSON, b"content-type": b"application/json; charset=utf-8"}, 1024)
    for headers in [{b"content-type": b"application/json"},  # chunked: no length
                    {**JSON, b"content-length": b"1025"}, {**JSON, b"content-type": b"text/plain"},
                    {**JSON, b"content-encoding": b"gzip"}, {**JSON, b"origin": b"https://example.com"}]:
        assert not plain_json(headers, 1024), headers


def test_the_direct_path_takes_the_key_the_routes_take() -> None:
    def request(settings: Settings, authorization: bytes | None) -> Request:
        app = SimpleNamespace(state=SimpleNamespace(service=SimpleNamespace(settings=settings)))
        headers = [] if authorization is None else [(b"authorization", authorization)]
        return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "app": app})

    open_server, keyed = Settings(), Settings(api_key=SecretStr("k"))
    assert asyncio.run(key_accepted(request(open_server, None)))
    assert asyncio.run(key_accepted(request(keyed, b"Bearer k")))
    assert asyncio.run(key_accepted(request(keyed, b"bearer k")))
    for authorization in [None, b"Bearer x", b"Basic k", b"k"]:
        assert not asyncio.run(key_accepted(request(keyed, authorization))), authorization


@pytest.fixture(scope="module")
def client(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    endpoints = [{"model_dir": str(bert_dir), "engine": "onnxruntime", "max_wait_ms": 1, "max_inputs_per_request": 4}]
    with TestClient(make_app(tmp_path_factory.mktemp("app"), endpoints)) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture
def direct_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models the direct path answered for, in order."""
    answered: list[str] = []
    answer = DirectPredict._answer

    async def recording(scope: Any, state: Any, name: str, body: Any) -> Any:
        answered.append(name)
        return await answer(scope, state, name, body)

    monkeypatch.setattr(direct_predict.DirectPredict, "_answer", staticmethod(recording))
    return answered


def _requests_total(client: TestClient, status: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("oberta_requests_total{") and 'model="tiny"' in line and f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_well_formed_requests_are_answered_directly_like_the_route(client: TestClient,
                                                                   direct_answers: list[str]) -> None:
    body = {"inputs": ["a gorgeous witty movie", ["dull film", "no point"]], "top_k": 2}
    before = _requests_total(client, "200")
    direct = client.post("/v1/models/tiny/predict", json=body)
    through_app = client.post("/v1/models/tiny/predict", json=body, headers={"Origin": "https://example.com"})
    assert direct_answers == ["tiny"]
    assert direct.status_code == through_app.status_code == 200
    assert direct.json() == through_app.json()
    assert direct.headers["content-type"] == through_app.headers["content-type"] == "application/json"
    assert _requests_total(client, "200") == before + 2


def test_errors_of_the_runtime_are_answered_directly_in_the_route_s_shape(client: TestClient,
                                                                          direct_answers: list[str]) -> None:
    before = _requests_total(client, "413")
    too_many = client.post("/v1/models/tiny/predict", json={"inputs": ["a"] * 5})
    missing = client.post("/v1/models/nope/predict", json={"inputs": ["a"]})
    assert direct_answers == ["tiny", "nope"]
    assert too_many.status_code == 413 and "at most 4" in too_many.json()["detail"]
    assert missing.status_code == 404 and missing.json()["detail"].startswith("model 'nope' is not served")
    assert _requests_total(client, "413") == before + 1


def test_invalid_bodies_go_to_the_app_which_reads_them_again(client: TestClient, direct_answers: list[str]) -> None:
    empty = client.post("/v1/models/tiny/predict", json={"inputs": []})
    broken = client.post("/v1/models/tiny/predict", content=b'{"inputs": [',
                         headers={"Content-Type": "application/json"})
    assert direct_answers == []
    assert (empty.status_code, empty.json()) == (
        422, {"detail": "inputs: List should have at least 1 item after validation, not 0"}
    )
    assert (broken.status_code, broken.json()) == (422, {"detail": "body is not valid JSON: Expecting value"})
