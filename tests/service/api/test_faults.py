"""Faults: an engine error fails its batch only, a corrupt model is not served while the others are, bugs give JSON."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.recording_engine import RecordingFactory
from tests.serving import make_app, wait_loaded, wait_ready

V2_BODY = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["boom"]}]}


def test_an_engine_error_fails_that_v2_request_only(bert_dir: Path, tmp_path: Path) -> None:
    factory = RecordingFactory()
    app = make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "onnxruntime", "max_wait_ms": 0}], factory)
    with TestClient(app) as client:
        wait_ready(client)
        factory.engines[0].fail_next = True
        response = client.post("/v2/models/tiny/infer", json=V2_BODY)
        assert response.status_code == 500
        assert response.json() == {"error": "the engine failed on a batch of 1 items: injected engine failure"}
        assert client.post("/v2/models/tiny/infer", json=V2_BODY).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200


def test_a_corrupt_model_file_marks_that_model_failed_and_the_others_serve(
    bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bert_dir, corrupt)
    (corrupt / "model.onnx").write_bytes(b"this is not an ONNX file")
    endpoints = [
        {"model_dir": str(corrupt), "name": "broken", "engine": "onnxruntime"},
        {"model_dir": str(bert_dir), "engine": "onnxruntime"},
    ]
    with (
        caplog.at_level(logging.ERROR, logger="service.runtime.state"),
        TestClient(make_app(tmp_path, endpoints)) as client,
    ):
        wait_loaded(client)
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "failed", "models": {"broken": "failed",
                                                                                         "tiny": "ready"}})
        assert client.get("/v2/health/ready").json() == {"ready": False}
        assert client.get("/v2/models/broken/ready").status_code == 503
        info = {model["name"]: model for model in client.get("/v1/models").json()["models"]}
        assert str(corrupt / "model.onnx") in info["broken"]["error"]
        v1 = client.post("/v1/models/broken/predict", json={"inputs": ["x"]})
        assert v1.status_code == 503
        assert v1.json()["detail"].startswith("model 'broken' failed to load (")
        v2 = client.post("/v2/models/broken/infer", json=V2_BODY)
        assert (v2.status_code, v2.json()["error"]) == (503, v1.json()["detail"])
        assert client.post("/v1/models/tiny/predict", json={"inputs": ["x"]}).status_code == 200
    assert any("model broken failed to load and is not served" in record.getMessage() for record in caplog.records)


def test_an_unexpected_error_is_a_json_500(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "onnxruntime", "max_wait_ms": 0}])
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        task = app.state.service.slots["tiny"].task

        def broken(*_: object) -> list[dict[str, Any]]:
            raise KeyError("bug")

        task.answers = broken
        v1 = client.post("/v1/models/tiny/predict", json={"inputs": ["x"]})
        v2 = client.post("/v2/models/tiny/infer", json=V2_BODY)
    assert (v1.status_code, v1.json()) == (500, {"detail": "internal error (KeyError); the server logs say more"})
    assert (v2.status_code, v2.json()) == (500, {"error": "internal error (KeyError); the server logs say more"})
