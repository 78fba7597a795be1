"""The one mapping of domain errors to HTTP: status, headers and body key by protocol, and the status metrics count."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.errors import OPENAI_EMBEDDINGS_PATH, InvalidParameter, install_error_handlers
from service.runtime.errors import (
    BadInput,
    EngineFailed,
    InferenceTimeout,
    ObertaError,
    Overloaded,
    ProtocolError,
    ShuttingDown,
)
from tests.serving import make_app, wait_ready


def _raising_app(error: ObertaError) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    async def fail() -> None:
        raise error

    app.add_api_route("/v1/fail", fail)
    app.add_api_route("/v2/fail", fail)
    app.add_api_route(OPENAI_EMBEDDINGS_PATH, fail)
    return app


@pytest.mark.parametrize(
    ("error", "v1_status", "v2_status"),
    [
        (BadInput("inputs[0] is empty"), 422, 400),
        (ProtocolError("input 'text' must be BYTES"), 400, 400),
        (Overloaded("model 'm' is overloaded", status=429, retry_after_s=2), 429, 429),
        (ShuttingDown(retry_after_s=3), 503, 503),
    ],
)
def test_an_error_has_its_status_headers_and_the_body_key_of_each_protocol(
    error: ObertaError, v1_status: int, v2_status: int
) -> None:
    client = TestClient(_raising_app(error))
    v1, v2 = client.get("/v1/fail"), client.get("/v2/fail")
    assert (v1.status_code, v1.json()) == (v1_status, {"detail": error.message})
    assert (v2.status_code, v2.json()) == (v2_status, {"error": error.message})
    for response in (v1, v2):
        assert {name.lower(): value for name, value in error.headers.items()}.items() <= response.headers.items()


@pytest.mark.parametrize(
    ("error", "status", "kind", "param", "code"),
    [
        (BadInput("inputs[0] is empty"), 400, "invalid_request_error", None, None),
        (InvalidParameter("model 'm' does not embed", "model"), 400, "invalid_request_error", "model", None),
        (Overloaded("model 'm' is overloaded", status=429), 429, "rate_limit_error", None, "rate_limit_exceeded"),
        (ShuttingDown(retry_after_s=3), 503, "server_error", None, None),
        (EngineFailed("the engine failed"), 500, "server_error", None, None),
        (InferenceTimeout("no answer within 30 s"), 504, "server_error", None, None),
    ],
)
def test_an_error_on_the_openai_route_has_openais_shape(
    error: ObertaError, status: int, kind: str, param: str | None, code: str | None
) -> None:
    response = TestClient(_raising_app(error)).get(OPENAI_EMBEDDINGS_PATH)
    assert response.status_code == status
    assert response.json() == {"error": {"message": error.message, "type": kind, "param": param, "code": code}}
    assert {name.lower(): value for name, value in error.headers.items()}.items() <= response.headers.items()


def _requests_by_status(client: TestClient) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    counts = next(family for family in families if family.name == "oberta_requests")
    return {
        sample.labels["status"]: sample.value
        for sample in counts.samples
        if sample.name == "oberta_requests_total" and sample.labels["model"] == "tiny"
    }


def test_an_invalid_input_is_422_on_v1_and_400_on_v2_and_counted_so(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "onnxruntime"}])
    v2_body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [" "]}]}
    with TestClient(app) as client:
        wait_ready(client)
        v1 = client.post("/v1/models/tiny/predict", json={"inputs": [" "]})
        v2 = client.post("/v2/models/tiny/infer", json=v2_body)
        assert (v1.status_code, v1.json()) == (422, {"detail": "inputs[0] is empty"})
        assert (v2.status_code, v2.json()) == (400, {"error": "input 'text' element 0 is empty"})
        assert _requests_by_status(client) == {"422": 1, "400": 1}
