"""/v1/models tells which engine `auto` chose for a model and why: under auto with both engines usable, the items/s
each ran at when measured at load."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.runtime.engines.deepsparse_engine import deepsparse_support
from tests.serving import make_app, wait_ready


def test_the_models_list_shows_how_auto_chose_the_engine(bert_dir: Path, tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "auto"}])) as client:
        wait_ready(client, timeout=60)
        (model,) = client.get("/v1/models").json()["models"]
        assert client.post("/v1/models/tiny/predict", json={"inputs": ["good"]}).status_code == 200
    selection = model["engine_info"]["selection"]
    assert selection["configured"] == "auto"
    usable, reason = deepsparse_support()
    if not usable:
        assert (model["engine"], selection["reason"]) == ("onnxruntime", reason)
        return
    rates = selection["items_per_second"]
    assert set(rates) == {"deepsparse", "onnxruntime"} and min(rates.values()) > 0
    assert model["engine"] == max(rates, key=rates.get)
    assert selection["measured_shape"] == [1, 64]
