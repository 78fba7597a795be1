"""The HTTP API end to end on a tiny BERT served by ONNX Runtime."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.runtime.card import ModelCard
from service.runtime.config import EngineChoice
from service.runtime.engines import Engine, EngineOptions
from tests.recording_engine import RecordingFactory
from tests.serving import make_app, serving, wait_loaded, wait_ready
from tests.tiny_models import NUM_LABELS
from tests.waiting import wait_until_async

LONG_TEXT = "good movie " * 100
LABELS = [f"label_{index}" for index in range(NUM_LABELS)]


@pytest.fixture(scope="module")
def served(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, RecordingFactory]]:
    """One app for the module: `tiny` (truncate, at most 4 inputs) and `strict` (reject) over the same model."""
    factory = RecordingFactory()
    endpoints: list[dict[str, Any]] = [
        {"model_dir": str(bert_dir), "engine": "onnxruntime", "max_inputs_per_request": 4, "max_wait_ms": 1},
        {"model_dir": str(bert_dir), "name": "strict", "engine": "onnxruntime", "truncation": "reject"},
    ]
    app = make_app(tmp_path_factory.mktemp("app"), endpoints, factory)
    with TestClient(app) as client:
        wait_ready(client)
        yield client, factory


def test_model_list(served: tuple[TestClient, RecordingFactory]) -> None:
    client, _ = served
    models = client.get("/v1/models").json()["models"]
    assert [model["name"] for model in models] == ["tiny", "strict"]
    tiny = models[0]
    assert tiny["task"] == "text-classification"
    assert tiny["labels"] == LABELS
    assert tiny["engine"] == "onnxruntime"
    assert tiny["status"] == "ready"
    assert (tiny["max_length"], tiny["precision"], tiny["sparsity"]) == (64, "fp32", None)
    assert (tiny["max_inputs_per_request"], models[1]["truncation"]) == (4, "reject")
    assert (tiny["max_queue_items"], tiny["max_rows_per_request"], tiny["task_settings"]) == (256, 256, {})


def test_predict_single_pair_and_top_k(served: tuple[TestClient, RecordingFactory]) -> None:
    client, _ = served
    texts = ["a gorgeous witty movie", ["dull film", "no point at all"], "a gorgeous witty movie"]
    response = client.post("/v1/models/tiny/predict", json={"inputs": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny"
    outputs = body["outputs"]
    assert len(outputs) == 3
    assert all(set(output) == {"label", "score"} for output in outputs)
    assert all(output["label"] in LABELS and 0 < output["score"] <= 1 for output in outputs)
    assert outputs[0]["label"] == outputs[2]["label"]
    assert outputs[0]["score"] == pytest.approx(outputs[2]["score"], abs=1e-5)
    alone = client.post("/v1/models/tiny/predict", json={"inputs": [texts[1]]}).json()["outputs"][0]
    assert alone["label"] == outputs[1]["label"]
    assert alone["score"] == pytest.approx(outputs[1]["score"], abs=1e-5)

    ranked = client.post("/v1/models/tiny/predict", json={"inputs": [texts[0]], "top_k": 2}).json()["outputs"][0]
    assert ranked["labels"][0]["label"] == ranked["label"] == outputs[0]["label"]
    assert ranked["labels"][0]["score"] >= ranked["labels"][1]["score"]
    every = client.post("/v1/models/tiny/predict", json={"inputs": [texts[0]], "top_k": 99}).json()["outputs"][0]
    assert sorted(entry["label"] for entry in every["labels"]) == LABELS
    assert sum(entry["score"] for entry in every["labels"]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("model", "body", "status", "detail"),
    [
        ("tiny", {"inputs": []}, 422, "at least 1 item"),
        ("tiny", {"inputs": [""]}, 422, "inputs[0] is empty"),
        ("tiny", {"inputs": ["ok", "   "]}, 422, "inputs[1] is empty"),
        ("tiny", {"inputs": [["ok", ""]]}, 422, "inputs[0][1] is empty"),
        ("tiny", {"inputs": [5]}, 422, "inputs[0]: expected a text, a [text, text] list or a {question, context}"),
        ("tiny", {"inputs": [["only one"]]}, 422, "inputs"),
        ("tiny", {"inputs": [["a", "b", "c"]]}, 422, "inputs"),
        ("tiny", {"inputs": "not a list"}, 422, "valid list"),
        ("tiny", {"texts": ["a"]}, 422, "Field required"),
        ("tiny", {"inputs": ["a"], "top_k": 0}, 422, "greater than or equal to 1"),
        ("tiny", {"inputs": ["a"] * 5}, 413, "5 inputs; model 'tiny' takes at most 4 per request"),
        ("missing", {"inputs": ["a"]}, 404, "model 'missing' is not served"),
        ("strict", {"inputs": ["ok", LONG_TEXT]}, 422, "inputs[1] is 202 tokens long, more than the model's maximum"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(
    served: tuple[TestClient, RecordingFactory], model: str, body: object, status: int, detail: str
) -> None:
    client, _ = served
    response = client.post(f"/v1/models/{model}/predict", json=body)
    assert response.status_code == status, response.text
    assert detail in response.text
    assert client.post("/v1/models/tiny/predict", json={"inputs": ["still serving"]}).status_code == 200


def test_invalid_json_and_long_text_under_truncate(served: tuple[TestClient, RecordingFactory]) -> None:
    client, _ = served
    response = client.post(
        "/v1/models/tiny/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (
        422, {"detail": "body is not valid JSON: Expecting property name enclosed in double quotes"}
    )
    assert client.post("/v1/models/tiny/predict", json={"inputs": [LONG_TEXT]}).status_code == 200


def test_an_engine_error_fails_that_request_only(served: tuple[TestClient, RecordingFactory]) -> None:
    client, factory = served
    factory.engines[0].fail_next = True
    response = client.post("/v1/models/tiny/predict", json={"inputs": ["boom"]})
    assert response.status_code == 500
    assert "injected engine failure" in response.json()["detail"]
    assert client.post("/v1/models/tiny/predict", json={"inputs": ["fine again"]}).status_code == 200


def test_metrics_expose_every_series(served: tuple[TestClient, RecordingFactory]) -> None:
    client, _ = served
    assert client.post("/v1/models/tiny/predict", json={"inputs": ["counted"]}).status_code == 200
    client.post("/v1/models/nope/predict", json={"inputs": ["x"]})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    types = {
        name: f.type for name, f in families.items() if name.startswith("oberta_") and not name.endswith("_created")
    }
    assert types == {
        "oberta_requests": "counter",
        "oberta_request_duration_seconds": "histogram",
        "oberta_stage_duration_seconds": "histogram",
        "oberta_batch_size": "histogram",
        "oberta_items": "counter",
        "oberta_engine_seconds": "counter",
        "oberta_inflight_requests": "gauge",
        "oberta_queue_depth": "gauge",
        "oberta_model_ready": "gauge",
    }
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("oberta_requests_total", (("model", "tiny"), ("status", "200")))] >= 1
    assert samples[("oberta_requests_total", (("model", "_unknown"), ("status", "404")))] >= 1
    assert samples[("oberta_model_ready", (("model", "tiny"),))] == 1
    assert samples[("oberta_inflight_requests", (("model", "tiny"),))] == 0
    assert samples[("oberta_queue_depth", (("model", "tiny"),))] == 0
    assert samples[("oberta_items_total", (("model", "tiny"),))] >= 1
    assert samples[("oberta_batch_size_count", (("model", "tiny"),))] >= 1
    assert samples[("oberta_request_duration_seconds_count", (("model", "tiny"),))] >= 1
    for stage in ("tokenize", "queue", "engine", "postprocess"):
        assert samples[("oberta_stage_duration_seconds_count", (("model", "tiny"), ("stage", stage)))] >= 1


def test_health_live_and_ready(served: tuple[TestClient, RecordingFactory]) -> None:
    client, _ = served
    assert client.get("/health/live").json() == {"status": "alive", "models": {}}
    assert client.get("/health/ready").json() == {"status": "ready", "models": {"tiny": "ready", "strict": "ready"}}
    assert client.get("/docs").status_code == 200
    assert "/v1/models/{name}/predict" in client.get("/openapi.json").json()["paths"]


def test_health_answers_head_like_get_without_a_body(served: tuple[TestClient, RecordingFactory]) -> None:
    client, _ = served
    for path in ("/health/live", "/health/ready"):
        head, get = client.head(path), client.get(path)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
        assert head.headers["content-length"] == get.headers["content-length"]


def test_readiness_is_503_until_the_model_is_loaded(bert_dir: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    factory = RecordingFactory()

    def gated(choice: EngineChoice, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
        assert gate.wait(timeout=30)
        return factory(choice, model_dir, card, options)

    app = make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "onnxruntime"}], gated)
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        response = client.get("/health/ready")
        assert (response.status_code, response.json()["status"]) == (503, "loading")
        assert client.head("/health/ready").status_code == 503
        busy = client.post("/v1/models/tiny/predict", json={"inputs": ["early"]})
        assert (busy.status_code, busy.json()["detail"]) == (503, "model 'tiny' is loading")
        assert client.get("/metrics").text.count('oberta_model_ready{model="tiny"} 0.0') == 1
        gate.set()
        wait_ready(client)
        assert client.post("/v1/models/tiny/predict", json={"inputs": ["ready now"]}).status_code == 200


def test_a_model_that_fails_to_load_keeps_readiness_at_503(bert_dir: Path, tmp_path: Path) -> None:
    def broken(choice: EngineChoice, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
        raise RuntimeError("no such engine today")

    app = make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "onnxruntime"}], broken)
    with TestClient(app) as client:
        wait_loaded(client)
        response = client.get("/health/ready")
        assert (response.status_code, response.json()) == (503, {"status": "failed", "models": {"tiny": "failed"}})
        detail = client.post("/v1/models/tiny/predict", json={"inputs": ["x"]}).json()["detail"]
        assert detail == "model 'tiny' failed to load (RuntimeError: no such engine today)"


def test_requests_arriving_while_the_engine_is_busy_share_one_engine_call(bert_dir: Path, tmp_path: Path) -> None:
    factory = RecordingFactory()
    endpoint = {"model_dir": str(bert_dir), "engine": "onnxruntime", "max_batch_size": 8, "max_wait_ms": 2000}
    app = make_app(tmp_path, [endpoint], factory)

    async def main() -> list[httpx.Response]:
        async with serving(app) as client:
            engine = factory.engines[0]
            engine.calls.clear()  # forget the warm-up batch
            engine.gate.clear()
            post = [client.post("/v1/models/tiny/predict", json={"inputs": [f"text {i}"]}) for i in range(9)]
            first = asyncio.create_task(post[0])  # at an idle engine: runs at once, held at the gate
            await wait_until_async(lambda: engine.calls == [1], "the first request to enter the engine", 10)
            rest = [asyncio.create_task(request) for request in post[1:]]
            registry = app.state.service.metrics.registry
            await wait_until_async(lambda: registry.get_sample_value("oberta_queue_depth", {"model": "tiny"}) == 8,
                                   "8 requests waiting for the engine", 10)
            engine.gate.set()
            return list(await asyncio.gather(first, *rest))

    responses = asyncio.run(main())
    assert [response.status_code for response in responses] == [200] * 9
    assert factory.engines[0].calls == [1, 8]
    metrics = app.state.service.metrics.registry
    assert metrics.get_sample_value("oberta_batch_size_count", {"model": "tiny"}) == 2
    assert metrics.get_sample_value("oberta_batch_size_sum", {"model": "tiny"}) == 9


def test_max_batch_tokens_splits_a_batch_by_its_padded_tokens(bert_dir: Path, tmp_path: Path) -> None:
    factory = RecordingFactory()
    endpoint = {"model_dir": str(bert_dir), "engine": "onnxruntime", "max_batch_size": 8, "max_wait_ms": 2000,
                "max_batch_tokens": 40}
    app = make_app(tmp_path, [endpoint], factory)
    long_text = " ".join(["word"] * 30)  # over 30 tokens: with any other text the batch would pass 40

    async def main() -> list[httpx.Response]:
        async with serving(app) as client:
            engine = factory.engines[0]
            engine.calls.clear()
            engine.gate.clear()
            first = asyncio.create_task(client.post("/v1/models/tiny/predict", json={"inputs": ["hold"]}))
            await wait_until_async(lambda: engine.calls == [1], "the first request to enter the engine", 10)
            rest = asyncio.create_task(
                client.post("/v1/models/tiny/predict", json={"inputs": ["short", "text", long_text, "short"]})
            )
            registry = app.state.service.metrics.registry
            await wait_until_async(lambda: registry.get_sample_value("oberta_queue_depth", {"model": "tiny"}) == 4,
                                   "4 items waiting for the engine", 10)
            engine.gate.set()
            return [await first, await rest]

    responses = asyncio.run(main())
    assert [response.status_code for response in responses] == [200, 200]
    assert factory.engines[0].calls == [1, 2, 1, 1]  # the long text runs alone
