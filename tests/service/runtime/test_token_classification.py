"""Token classification: words and their first sub-tokens, IOB2 entity aggregation, and the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tokenizers import Tokenizer

from service.runtime.tasks import InputError, PredictOptions
from service.runtime.tasks.token_classification import (
    TokenClassification,
    check_tags,
    entity_chunks,
    first_tokens,
    strip_punctuation,
    word_spans,
)
from tests.conftest import make_app, wait_ready
from tests.tiny_models import NER_TAGS, make_tiny_token_classifier_dir, tiny_subword_tokenizer

TEXT = "John Smithson visited  Versailles, near Paris."


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return tiny_subword_tokenizer().backend_tokenizer


def test_words_are_whitespace_pieces_and_map_to_their_first_sub_token(tokenizer: Tokenizer) -> None:
    spans = word_spans(TEXT)
    assert [TEXT[s:e] for s, e in spans] == ["John", "Smithson", "visited", "Versailles,", "near", "Paris."]
    encoding = tokenizer.encode(TEXT)
    assert encoding.tokens == ["[CLS]", "john", "smith", "##son", "visited", "vers", "##ail", "##les", ",", "near",
                               "paris", ".", "[SEP]"]
    assert first_tokens(encoding, spans) == [1, 2, 4, 5, 9, 10]
    tokenizer = Tokenizer.from_str(tokenizer.to_str())
    tokenizer.enable_truncation(max_length=7)
    assert first_tokens(tokenizer.encode(TEXT), spans) == [1, 2, 4, 5, None, None]  # cut off by truncation


@pytest.mark.parametrize(
    ("tags", "chunks"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),  # B- always starts a new entity
        (["I-LOC", "I-LOC", "O", "I-ORG"], [("LOC", 0, 1), ("ORG", 3, 3)]),  # a stray I- starts one
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # I- of another type starts one
        (["B-ORG", None, "I-ORG"], [("ORG", 0, 0), ("ORG", 2, 2)]),  # a word without a tag closes the entity
        (["O", "O"], []),
    ],
)
def test_iob2_tags_merge_into_entities(tags: list[str | None], chunks: list[tuple[str, int, int]]) -> None:
    assert entity_chunks(tags) == chunks


@pytest.mark.parametrize(
    ("text", "kept"),
    [("Paris.", "Paris"), ("(Google),", "Google"), ("U.S.", "U.S"), ("O'Neil", "O'Neil"), ("--", "--")],
)
def test_entity_text_loses_edge_punctuation(text: str, kept: str) -> None:
    start, end = strip_punctuation("x " + text, 2, 2 + len(text))
    assert ("x " + text)[start:end] == kept


def test_tags_must_be_iob2() -> None:
    check_tags(NER_TAGS)
    with pytest.raises(ValueError, match="IOB2"):
        check_tags(["O", "PER", "B-"])


def _task(tokenizer: Tokenizer) -> TokenClassification:
    return TokenClassification(tokenizer, 0, NER_TAGS, ["input_ids", "attention_mask", "token_type_ids"], 64)


def test_postprocess_reads_first_sub_tokens_and_reports_character_offsets(tokenizer: Tokenizer) -> None:
    task = _task(tokenizer)
    item = task.preprocess([TEXT])[0]
    logits = np.zeros((len(item.encoding.ids) + 2, len(NER_TAGS)), dtype=np.float32)  # padded engine row
    tag = {name: index for index, name in enumerate(NER_TAGS)}
    for position, name in {1: "B-PER", 2: "I-PER", 5: "B-LOC", 10: "B-LOC"}.items():
        logits[position, tag[name]] = 4.0
    logits[3, tag["B-LOC"]] = 9.0  # ##son is not a first sub-token: ignored
    logits[6, tag["B-ORG"]] = 9.0  # ##ail neither
    entities = task.postprocess(item, [logits], PredictOptions())["entities"]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in entities] == [
        ("PER", "John Smithson", 0, 13), ("LOC", "Versailles", 23, 33), ("LOC", "Paris", 40, 45),
    ]
    expected = np.exp(4.0) / (np.exp(4.0) + len(NER_TAGS) - 1)
    assert all(e["score"] == pytest.approx(expected) for e in entities)
    assert task.answers([item], [[logits]], PredictOptions()) == [{"entities": entities}]
    with pytest.raises(ValueError, match="do not match"):
        task.postprocess(item, [logits[:, :3]], PredictOptions())


@pytest.mark.parametrize(("value", "message"), [(["a", "b"], "must be a string"), ("  ", "is empty")])
def test_bad_inputs_are_named(tokenizer: Tokenizer, value: object, message: str) -> None:
    with pytest.raises(InputError, match=rf"inputs\[1\] {message}"):
        _task(tokenizer).preprocess(["fine", value])


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
