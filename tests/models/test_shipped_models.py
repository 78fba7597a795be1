"""Golden answers of the shipped models: each model in models/ is served on every usable engine and answers fixed
inputs as recorded here (labels, entity spans, answer spans; scores are left out, as engines round differently).

When a shipped model is rebuilt on purpose, its expectations here are updated with it; any other change that moves
an answer is an export or serving regression. Models absent from models/ (a slimmed clone) are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.runtime.engines.deepsparse_engine import deepsparse_support
from service.runtime.cpu import products_saturate
from tests.serving import make_app, wait_ready

MODELS = Path(__file__).resolve().parents[2] / "models"
CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It was completed in 1889 "
    "and named after the engineer Gustave Eiffel, whose company designed and built the tower."
)
# model name -> (request body, what each output must say)
GOLDEN: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "sentiment": (
        {"inputs": ["a gorgeous, witty, seductive movie.", ["it is not bad", "really"], "dull and lifeless"]},
        ["positive", "positive", "negative"],
    ),
    "ner": (
        {"inputs": ["Angela Merkel met Emmanuel Macron in Paris.", "The U.S. Open is in New York."]},
        [
            [("PER", "Angela Merkel", 0, 13), ("PER", "Emmanuel Macron", 18, 33), ("LOC", "Paris", 37, 42)],
            [("MISC", "U.S. Open", 4, 13), ("LOC", "New York", 20, 28)],
        ],
    ),
    "qa": (
        {"inputs": [{"question": "Where is the Eiffel Tower?", "context": CONTEXT},
                    {"question": "When was it completed?", "context": CONTEXT}]},
        [("Champ de Mars in Paris, France", 56, 86), ("1889", 108, 112)],
    ),
}
SHIPPED = [name for name in GOLDEN if (MODELS / name / "model.yaml").is_file()]
ENGINES = ["onnxruntime", *([pytest.param("deepsparse", marks=pytest.mark.skipif(
    products_saturate(), reason="DeepSparse's INT8 results differ on a CPU without VNNI (registry.py)"))]
    if deepsparse_support()[0] else [])]


def _essentials(output: dict[str, Any]) -> Any:
    """What an output must keep: the label, the entities' types and spans, or the answer's span."""
    if "label" in output:
        return output["label"]
    if "entities" in output:
        return [(entity["type"], entity["text"], entity["start"], entity["end"]) for entity in output["entities"]]
    return (output["answer"], output["start"], output["end"])


@pytest.fixture(scope="module", params=ENGINES)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not SHIPPED:
        pytest.skip("models/ holds none of the shipped models")
    endpoints = [{"model_dir": str(MODELS / name), "engine": request.param} for name in SHIPPED]
    with TestClient(make_app(tmp_path_factory.mktemp(request.param), endpoints)) as served:
        wait_ready(served, timeout=240)
        yield served


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_answers_as_recorded(client: TestClient, name: str) -> None:
    body, expected = GOLDEN[name]
    response = client.post(f"/v1/models/{name}/predict", json=body)
    assert response.status_code == 200, response.text
    assert [_essentials(output) for output in response.json()["outputs"]] == expected
