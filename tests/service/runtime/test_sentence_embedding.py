"""Sentence embedding: texts or token ids in (framed with the tokenizer's special tokens), vectors out, shortened on
request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from service.runtime.card import load_card
from service.runtime.errors import BadInput
from service.runtime.tasks import PredictOptions, build_task
from service.runtime.tasks.encoding import Truncation, load_tokenizer
from service.runtime.tasks.sentence_embedding import SentenceEmbedding, shortened
from service.runtime.tasks.token_ids import Framing, TokenIds

TEXT = "john smithson visited versailles, near paris."
LONG_TEXT = "the king of france lived in versailles " * 10  # 90 tokens: far over max_length 32


def _task(model_dir: Path, truncation: Truncation = "truncate") -> SentenceEmbedding:
    card = load_card(model_dir)
    tokenizer, pad_id = load_tokenizer(model_dir / card.tokenizer, card.max_length, truncation)
    task = build_task(card, tokenizer, pad_id, card.inputs)
    assert isinstance(task, SentenceEmbedding)
    return task


def _ids_without_specials(model_dir: Path, text: str) -> list[int]:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    return ids


def test_token_ids_are_framed_as_the_tokenizer_frames_their_text(embedding_dir: Path) -> None:
    task = _task(embedding_dir)
    text = task.preprocess([TEXT])[0]
    framed = task.preprocess([TokenIds(_ids_without_specials(embedding_dir, TEXT))])[0]
    assert (framed.ids, framed.type_ids) == (text.ids, text.type_ids)
    assert framed.ids[0] == 2 and framed.ids[-1] == 3  # [CLS] ... [SEP]
    assert task.tokens(framed) == len(text.ids)
    batch = task.collate([text, framed])
    assert (batch["input_ids"][0] == batch["input_ids"][1]).all()


def test_long_token_ids_are_cut_or_refused_as_long_texts_are(embedding_dir: Path) -> None:
    ids = TokenIds(_ids_without_specials(embedding_dir, LONG_TEXT))
    truncating = _task(embedding_dir)
    framed, text = truncating.preprocess([ids])[0], truncating.preprocess([LONG_TEXT])[0]
    assert len(framed.ids) == 32 and framed.ids == text.ids  # the first 30 ids between [CLS] and [SEP]
    with pytest.raises(BadInput, match=r"inputs\[1\] is 92 tokens long, more than the model's maximum of 32"):
        _task(embedding_dir, "reject").preprocess([TokenIds([5]), ids])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([TokenIds([])], r"inputs\[0\] is empty"),
        ([TokenIds([5, -1])], r"inputs\[0\] has token ids outside the model's vocabulary \(0 to 45\): \[-1\]"),
        ([TokenIds([5]), TokenIds([46, 5, 99])], r"inputs\[1\] has token ids outside .*: \[46, 99\]"),
        (["a text", TokenIds([5])], r"inputs\[0\] must be token ids, as the request's other inputs are"),
        ([TokenIds([5]), "a text"], r"inputs\[1\] must be token ids"),
        ([" "], r"inputs\[0\] is empty"),
        (["a text", "\ufeff"], r"inputs\[1\] has no tokens"),
        ([5], r"inputs\[0\] must be a string"),
    ],
)
def test_bad_inputs_are_named(embedding_dir: Path, inputs: list[object], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        _task(embedding_dir).preprocess(inputs)


def test_a_tokenizer_that_does_not_frame_a_text_cannot_take_token_ids() -> None:
    tokenizer = Tokenizer(models.WordLevel({"[CLS]": 0, "[SEP]": 1, "a": 2, "[UNK]": 3}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP] $A", special_tokens=[("[CLS]", 0), ("[SEP]", 1)]
    )
    with pytest.raises(ValueError, match="does not frame a text with special tokens before and after it"):
        Framing(tokenizer, 16)
    processor = SentenceEmbedding(tokenizer, 0, ["input_ids", "attention_mask"], 16, normalize=True)
    assert [item.ids for item in processor.preprocess(["a"])] == [[0, 2, 1, 2]]  # texts still embed
    with pytest.raises(BadInput, match="takes texts, not token ids: the tokenizer does not frame"):
        processor.preprocess([TokenIds([2])])
    tokenizer.post_processor = None  # no special tokens at all: ids go to the engine as they are
    assert Framing(tokenizer, 16).frame(0, TokenIds([2, 2])).ids == [2, 2]


def test_dimensions_keep_the_first_values_renormalised_when_the_model_normalises() -> None:
    vector = np.array([0.6, 0.0, 0.8, 0.0], dtype=np.float32)
    assert shortened(vector, None, True) is vector
    assert shortened(vector, 4, True).tolist() == vector.tolist()
    assert shortened(vector, 1, True).tolist() == [1.0]
    np.testing.assert_allclose(shortened(vector, 2, False), [0.6, 0.0])  # a model that does not normalise: cut only
    assert shortened(np.array([0.0, 0.0, 1.0], dtype=np.float32), 2, True).tolist() == [0.0, 0.0]  # nothing to scale
    for dimensions in (0, 5):
        with pytest.raises(BadInput, match=f"between 1 and 4, the model's dimension; got {dimensions}"):
            shortened(vector, dimensions, True)


def test_answers_are_float32_vectors_with_token_counts(embedding_dir: Path) -> None:
    task = _task(embedding_dir)
    items = task.preprocess(["paris", TEXT])
    rows = [[np.arange(32, dtype=np.float64) / 100], [np.ones(32)]]
    answers = task.answers(items, rows, PredictOptions(dimensions=2))
    assert [answer["tokens"] for answer in answers] == [3, len(items[1].ids)]
    assert answers[0]["embedding"] == [0.0, 1.0]
    assert answers[1]["embedding"] == [pytest.approx(2**-0.5)] * 2
    assert answers[0]["embedding"] == np.float32(answers[0]["embedding"]).tolist()
