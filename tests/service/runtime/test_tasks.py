"""Text classification: input checks, truncation or rejection, padding, softmax and top_k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.runtime.card import load_card
from service.runtime.errors import BadInput
from service.runtime.tasks import PredictOptions, build_task
from service.runtime.tasks.base import Task
from service.runtime.tasks.encoding import SEQUENTIAL_TEXTS, TextEncoder, TextInput, Truncation, load_tokenizer
from service.runtime.tasks.text_classification import TextClassification, softmax, softmax_row
from tests.tiny_models import tiny_subword_tokenizer

LONG_TEXT = "good movie " * 100


def _task(model_dir: Path, truncation: Truncation = "truncate") -> Task:
    card = load_card(model_dir)
    tokenizer, pad_id = load_tokenizer(model_dir / card.tokenizer, card.max_length, truncation)
    return build_task(card, tokenizer, pad_id, card.inputs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"inputs\[1\] is empty"),
        ("   ", r"inputs\[1\] is empty"),
        (["a", ""], r"inputs\[1\]\[1\] is empty"),
        (["a"], "a string or a"),
        (["a", "b", "c"], "a string or a"),
        (5, "a string or a"),
        (None, "a string or a"),
    ],
)
def test_bad_inputs_are_named(bert_dir: Path, value: object, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        _task(bert_dir).preprocess(["fine", value])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("\u200b\u200b", r"inputs\[1\] has no tokens: it holds only characters the tokenizer drops"),
        ("\x00 \ufeff", r"inputs\[1\] has no tokens"),
        (["a", "\u200b"], r"inputs\[1\]\[1\] has no tokens"),
    ],
)
def test_texts_of_no_tokens_are_refused(value: object, message: str) -> None:
    """A BERT tokenizer drops control and zero-width characters: such a text would be classified as an empty one."""
    task = TextClassification(tiny_subword_tokenizer().backend_tokenizer, 0, ["a", "b"], ["input_ids"], 64)
    assert len(task.preprocess(["a\u200b"])[0].ids) == 3
    with pytest.raises(BadInput, match=message):
        task.preprocess(["fine", value])


def test_long_inputs_are_truncated_or_rejected(bert_dir: Path) -> None:
    assert len(_task(bert_dir).preprocess([LONG_TEXT])[0].ids) == 64
    assert len(_task(bert_dir).preprocess([[LONG_TEXT, LONG_TEXT]])[0].ids) == 64
    with pytest.raises(BadInput, match=r"inputs\[1\] is 20\d tokens long, more than the model's maximum of 64"):
        _task(bert_dir, "reject").preprocess(["short", LONG_TEXT])


def test_many_texts_without_offsets_give_the_same_tokens(bert_dir: Path) -> None:
    card = load_card(bert_dir)
    tokenizer, _ = load_tokenizer(bert_dir / card.tokenizer, card.max_length, "reject")
    texts: list[TextInput] = [f"good movie number {index}" for index in range(SEQUENTIAL_TEXTS)]
    texts += [("bad movie", "great plot"), "the end"]  # past SEQUENTIAL_TEXTS: one batch call
    encoder = TextEncoder(tokenizer, card.max_length, word_cache=True)
    with_offsets, without = encoder.encode(texts), encoder.encode_ids(texts)
    assert [(e.ids, e.type_ids) for e in with_offsets] == [(e.ids, e.type_ids) for e in without]
    assert with_offsets[1].offsets[1] == (0, 4)  # "good": mapped back to its characters where asked
    with pytest.raises(BadInput, match=r"inputs\[9\] is 20\d tokens long"):
        encoder.encode_ids([*texts[:-1], LONG_TEXT])


def test_collate_pads_to_the_longest_with_type_ids_for_pairs(bert_dir: Path) -> None:
    task = _task(bert_dir)
    batch = task.collate(task.preprocess(["good", ["bad movie", "great plot"]]))
    assert list(batch) == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(array.dtype == np.int64 and array.shape == (2, 7) for array in batch.values())
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0], [1] * 7]
    assert batch["input_ids"][0, 3:].tolist() == [0, 0, 0, 0]  # [PAD] is id 0
    assert batch["token_type_ids"].tolist() == [[0] * 7, [0, 0, 0, 0, 1, 1, 1]]


def test_roberta_collate_has_no_type_ids(roberta_dir: Path) -> None:
    task = _task(roberta_dir)
    batch = task.collate(task.preprocess(["good", ["bad", "great"]]))
    assert list(batch) == ["input_ids", "attention_mask"]
    assert batch["input_ids"].shape == (2, 6)  # <s> bad </s> </s> great </s>


def test_postprocess_softmax_and_top_k(bert_dir: Path) -> None:
    task = _task(bert_dir)
    item = task.preprocess(["good"])[0]
    logits = np.array([0.5, 2.0, -1.0], dtype=np.float32)
    scores = softmax(logits)
    assert task.postprocess(item, [logits], PredictOptions()) == {"label": "label_1", "score": pytest.approx(scores[1])}
    ranked = task.postprocess(item, [logits], PredictOptions(top_k=2))["labels"]
    assert [entry["label"] for entry in ranked] == ["label_1", "label_0"]
    assert ranked[1]["score"] == pytest.approx(scores[0])
    assert len(task.postprocess(item, [logits], PredictOptions(top_k=10))["labels"]) == 3
    with pytest.raises(ValueError, match="do not match"):
        task.postprocess(item, [np.zeros(2, dtype=np.float32)], PredictOptions())


def test_softmax_is_stable_and_sums_to_one() -> None:
    scores = softmax(np.array([[1000.0, 1000.0], [-1000.0, 0.0]]))
    assert np.allclose(scores.sum(axis=-1), 1.0)
    assert scores[0].tolist() == [0.5, 0.5]


def test_softmax_of_one_row_in_python_floats_matches_numpy_s() -> None:
    for row in ([1000.0, 1000.0], [-1000.0, 0.0], [0.5, 2.0, -1.0]):
        assert softmax_row(np.array(row, dtype=np.float32)) == pytest.approx(softmax(np.array(row)).tolist())
    tie = softmax_row(np.array([1.0, 3.0, 3.0], dtype=np.float32))
    assert tie[1] == tie[2]
