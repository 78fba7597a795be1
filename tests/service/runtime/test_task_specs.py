"""The task registry is the one list of tasks: the card, both protocols and compression read it."""

from __future__ import annotations

import dataclasses

import pytest

from compression.tasks import TASKS as TRAINABLE
from service.api.schemas import ModelInfo, PredictRequest, PredictResponse
from service.runtime.card import ModelCard
from service.runtime.errors import BadInput, ConfigError
from service.runtime.tasks import TASKS, PredictOptions, task_spec

CARD = {"name": "m", "labels": [], "max_length": 64, "architecture": "bert", "inputs": ["input_ids"],
        "files": {"onnxruntime": "model.onnx"}}


def test_a_card_names_a_registered_task() -> None:
    with pytest.raises(ValueError, match="unknown task 'summarization'; tasks: text-classification"):
        ModelCard.model_validate({**CARD, "task": "summarization"})
    with pytest.raises(ConfigError, match="unknown task"):
        task_spec("summarization")


def test_task_settings_are_completed_checked_and_read_from_older_cards() -> None:
    card = ModelCard.model_validate({**CARD, "task": "question-answering", "task_settings": {"doc_stride": 32}})
    assert card.task_settings == {"doc_stride": 32, "max_query_length": 64, "max_answer_length": 30}
    older = ModelCard.model_validate({**CARD, "task": "question-answering", "question_answering": {"doc_stride": 16}})
    assert older.task_settings["doc_stride"] == 16
    with pytest.raises(ValueError, match="doc_strde"):
        ModelCard.model_validate({**CARD, "task": "question-answering", "task_settings": {"doc_strde": 1}})
    with pytest.raises(ValueError, match="takes no task settings"):
        ModelCard.model_validate({**CARD, "task": "text-classification", "task_settings": {"doc_stride": 1}})


def test_the_v1_schema_is_the_union_of_the_tasks() -> None:
    outputs = PredictResponse.model_json_schema()["$defs"]
    assert {spec.v1_output.__name__ for spec in TASKS.values()} <= set(outputs)
    assert ModelInfo.model_json_schema()["properties"]["task"]["enum"] == list(TASKS)
    request = PredictRequest.model_validate(
        {"inputs": ["a text", ["a", "pair"], {"question": "q?", "context": "c."}]}
    )
    assert request.inputs == ["a text", ("a", "pair"), {"question": "q?", "context": "c."}]


@pytest.mark.parametrize("name", list(TRAINABLE))
def test_compression_tasks_take_name_and_outputs_from_the_spec(name: str) -> None:
    assert TRAINABLE[name].spec is TASKS[name]
    assert TRAINABLE[name].output_names == TASKS[name].output_names


def test_each_task_names_the_request_options_it_reads() -> None:
    known = {field.name for field in dataclasses.fields(PredictOptions)}
    assert all(spec.options <= known for spec in TASKS.values())
    task_spec("question-answering").check_options(PredictOptions(top_k=2, max_answer_length=5))
    with pytest.raises(BadInput, match=r"^dimensions does not apply to text-classification models$"):
        task_spec("text-classification").check_options(PredictOptions(top_k=2, dimensions=8))
