"""Token classification over HTTP: entities with character offsets, merged spans, and truncation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.serving import make_app, wait_ready
from tests.tiny_models import NER_TAGS, make_tiny_token_classifier_dir

TEXT = "John Smithson visited  Versailles, near Paris."


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Two token classifiers: `every-word` tags every word B-PER, `one-entity` tags every word I-LOC."""
    root = tmp_path_factory.mktemp("ner")
    endpoints = [
        {"model_dir": str(make_tiny_token_classifier_dir(root, "every-word", {"B-PER": 6.0})), "engine": "onnxruntime"},
        {"model_dir": str(make_tiny_token_classifier_dir(root, "one-entity", {"I-LOC": 6.0})), "engine": "onnxruntime"},
    ]
    with TestClient(make_app(tmp_path_factory.mktemp("app"), endpoints)) as client:
        wait_ready(client)
        yield client


def test_http_token_classification(client: TestClient) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [(m["task"], m["labels"]) for m in models] == [("token-classification", list(NER_TAGS))] * 2
    response = client.post("/v1/models/every-word/predict", json={"inputs": [TEXT, "Paris"]})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [entity["text"] for entity in outputs[0]["entities"]] == [w.strip(",.") for w in TEXT.split()]
    assert all(TEXT[e["start"]:e["end"]] == e["text"] and e["type"] == "PER" for e in outputs[0]["entities"])
    assert outputs[1]["entities"][0]["score"] == pytest.approx(np.exp(6.0) / (np.exp(6.0) + len(NER_TAGS) - 1))
    merged = client.post("/v1/models/one-entity/predict", json={"inputs": [TEXT]}).json()["outputs"][0]["entities"]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in merged] == [("LOC", TEXT[:-1], 0, len(TEXT) - 1)]
    refused = client.post("/v1/models/one-entity/predict", json={"inputs": [["a", "pair"]]})
    assert refused.status_code == 422 and "must be a string" in refused.text


def test_long_text_entities_stop_where_truncation_cuts(client: TestClient) -> None:
    text = "Paris " * 100
    entities = client.post("/v1/models/every-word/predict", json={"inputs": [text]}).json()["outputs"][0]["entities"]
    assert len(entities) == 62  # 64 tokens less [CLS] and [SEP]


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"top_k": 2}, "top_k does not apply to token-classification models"),
        ({"top_k": 2, "max_answer_length": 3}, "top_k and max_answer_length do not apply to token-classification"),
        ({"top_k": True}, "top_k: Input should be a valid integer"),
        ({"top_k": "2"}, "top_k: Input should be a valid integer"),
    ],
)
def test_options_the_task_does_not_read_are_refused(
    client: TestClient, options: dict[str, object], detail: str
) -> None:
    response = client.post("/v1/models/every-word/predict", json={"inputs": [TEXT], **options})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail)
