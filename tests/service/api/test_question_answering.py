"""Question answering over HTTP: ranked answers across windows, option and input checks, and classifiers refusing
question objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.recording_engine import RecordingFactory
from tests.serving import make_app, wait_ready
from tests.tiny_models import make_tiny_question_answering_dir

SHORT = "Louis lived in Versailles, near Paris."
LONG = ("The king of France lived in Paris. " * 4) + "John Smithson built a palace near London. " + "The palace."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, RecordingFactory]]:
    model_dir = make_tiny_question_answering_dir(tmp_path_factory.mktemp("qa"))
    factory = RecordingFactory()
    app = make_app(tmp_path_factory.mktemp("app"), [{"model_dir": str(model_dir), "engine": "onnxruntime"}], factory)
    with TestClient(app) as client:
        wait_ready(client)
        yield client, factory


def test_http_question_answering(served: tuple[TestClient, RecordingFactory]) -> None:
    client, factory = served
    model = client.get("/v1/models").json()["models"][0]
    assert (model["name"], model["task"], model["labels"]) == ("tiny-qa", "question-answering", [])
    assert set(model["task_settings"]) == {"doc_stride", "max_query_length", "max_answer_length"}
    factory.engines[0].calls.clear()
    body = {"inputs": [{"question": "Who built a palace?", "context": LONG}], "top_k": 3, "max_answer_length": 2}
    response = client.post("/v1/models/tiny-qa/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()["outputs"][0]
    assert set(answer) == {"answer", "score", "start", "end", "answers"}
    assert factory.engines[0].calls == [2]  # one engine row per window of the long context
    ranked = answer["answers"]
    assert ranked[0] == {key: answer[key] for key in ("answer", "score", "start", "end")}
    assert len(ranked) == 3 and [a["score"] for a in ranked] == sorted((a["score"] for a in ranked), reverse=True)
    for span in ranked:
        assert span["answer"] == LONG[span["start"]:span["end"]] and 0.0 <= span["score"] <= 1.0
        assert len(span["answer"].split()) <= 2
    plain = client.post("/v1/models/tiny-qa/predict", json={"inputs": [{"question": "Where?", "context": SHORT}]})
    assert set(plain.json()["outputs"][0]) == {"answer", "score", "start", "end"}


def test_contexts_of_more_windows_than_the_model_takes_are_refused(tmp_path: Path) -> None:
    """Windows, not inputs, are the engine's work: a request within the input limit may still ask for too many."""
    endpoint = {"model_dir": str(make_tiny_question_answering_dir(tmp_path / "qa")), "engine": "onnxruntime",
                "max_inputs_per_request": 2, "max_rows_per_request": 3}
    factory = RecordingFactory()
    with TestClient(make_app(tmp_path, [endpoint], factory)) as client:
        wait_ready(client)
        factory.engines[0].calls.clear()
        question = {"question": "Who built a palace?", "context": LONG}  # two windows
        assert client.post("/v1/models/tiny-qa/predict", json={"inputs": [question]}).status_code == 200
        refused = client.post("/v1/models/tiny-qa/predict", json={"inputs": [question, question]})
        assert refused.status_code == 413
        assert refused.json()["detail"] == (
            "the inputs make 4 engine rows (a long question-answering context is cut into several windows); "
            "model 'tiny-qa' takes at most 3 per request"
        )
        assert factory.engines[0].calls == [2]  # the refused request never reached the engine


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"inputs": ["just a text"]}, "must be a"),
        ({"inputs": [{"question": "q", "context": "c", "more": "x"}]}, "inputs"),
        ({"inputs": [{"question": "", "context": "c"}]}, "question is empty"),
        ({"inputs": [{"question": "q", "context": "c"}], "max_answer_length": 0}, "greater than or equal to 1"),
    ],
)
def test_http_bad_question_inputs(served: tuple[TestClient, RecordingFactory], body: object, detail: str) -> None:
    client, _ = served
    response = client.post("/v1/models/tiny-qa/predict", json=body)
    assert response.status_code == 422, response.text
    assert detail in response.text


def test_a_classifier_refuses_question_objects(bert_dir: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path, [{"model_dir": str(bert_dir), "engine": "onnxruntime"}])
    with TestClient(app) as client:
        wait_ready(client)
        response = client.post("/v1/models/tiny/predict", json={"inputs": [{"question": "q", "context": "c"}]})
        assert response.status_code == 422
        assert "must be a string or a [text, text_pair] list" in response.text
