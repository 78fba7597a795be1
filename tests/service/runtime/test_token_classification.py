"""Token classification: words and their first sub-tokens, and IOB2 entity aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from service.runtime.errors import BadInput
from service.runtime.tasks import PredictOptions
from service.runtime.tasks.token_classification import (
    TokenClassification,
    check_tags,
    entity_chunks,
    first_tokens,
    strip_punctuation,
    word_spans,
)
from tests.tiny_models import NER_TAGS, tiny_subword_tokenizer

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


@pytest.mark.parametrize(
    ("value", "message"), [(["a", "b"], "must be a string"), ("  ", "is empty"), ("\u200b", "has no tokens")]
)
def test_bad_inputs_are_named(tokenizer: Tokenizer, value: object, message: str) -> None:
    with pytest.raises(BadInput, match=rf"inputs\[1\] {message}"):
        _task(tokenizer).preprocess(["fine", value])
