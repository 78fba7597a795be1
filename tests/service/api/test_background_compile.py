"""A DeepSparse model is ready on its first compiled shape; the server compiles the others in the background."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.runtime.engines.deepsparse_engine import deepsparse_support
from tests.serving import make_app, wait_ready
from tests.waiting import wait_until

USABLE, REASON = deepsparse_support()


@pytest.mark.skipif(not USABLE, reason=REASON)
def test_ready_before_every_shape_is_compiled_then_all_compiled(bert_dir: Path, tmp_path: Path) -> None:
    endpoint = {"model_dir": str(bert_dir), "engine": "deepsparse", "max_batch_size": 4}
    with TestClient(make_app(tmp_path, [endpoint])) as client:
        wait_ready(client, timeout=60)
        answer = client.post(f"/v1/models/{bert_dir.name}/predict", json={"inputs": ["a short text"]})
        assert answer.status_code == 200

        def compiled() -> list[list[int]]:
            info = client.get("/v1/models").json()["models"][0]["engine_info"]
            return sorted(info["compiled_shapes"])

        expected = sorted([batch, length] for batch in (1, 4) for length in (32, 64))
        wait_until(lambda: compiled() == expected, "every shape to be compiled", 60, detail=compiled)
        assert client.post(f"/v1/models/{bert_dir.name}/predict", json={"inputs": ["a short text"]}).json() == (
            answer.json()
        )
