"""The ASCII twin of a BERT tokenizer: the same tokens, type ids and offsets as the tokenizer, on plain ASCII text."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from service.runtime.tasks.encoding import TextInput, ascii_twin, encode, is_plain_ascii, load_tokenizer
from tests.tiny_models import tiny_subword_tokenizer, tiny_tokenizer

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[3] / "models" / "sentiment" / "tokenizer.json"
PLAIN: list[TextInput] = [
    "The Smithsonian's \"Versailles\" exhibit -- 3.5 stars (out of 4)!",
    "Tabs\tand\nline breaks\r\nand  double  spaces; e-mail: someone@example.com, 50% OFF #deal [CLS] [SEP]",
    ("Who painted it?", "ACME Corp. (NYSE: ACM) said on Tuesday ~$1,200/share & rose 4.2%."),
    "a " * 300,  # cut to the maximum length
]


def _tokenizers() -> list[Tokenizer]:
    shipped = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    tiny = tiny_subword_tokenizer().backend_tokenizer
    tiny.enable_truncation(max_length=32)
    return [shipped, tiny]


@pytest.mark.parametrize("tokenizer", _tokenizers(), ids=["all-MiniLM-L6-v2", "tiny-wordpiece"])
def test_the_twin_tokenizes_plain_ascii_exactly_as_the_tokenizer(tokenizer: Tokenizer) -> None:
    twin = ascii_twin(tokenizer)
    assert twin is not None
    assert all(is_plain_ascii(text) for text in PLAIN)
    for text in PLAIN:
        expected = tokenizer.encode(text) if isinstance(text, str) else tokenizer.encode(*text)
        got = twin.encode(text) if isinstance(text, str) else twin.encode(*text)
        assert (got.ids, got.type_ids, got.offsets) == (expected.ids, expected.type_ids, expected.offsets)


def test_the_twin_agrees_on_random_ascii_text() -> None:
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    twin = ascii_twin(tokenizer)
    assert twin is not None
    generator = random.Random(0)
    alphabet = string.printable.replace("\x0b", "").replace("\x0c", "")  # letters, digits, punctuation, \t\n\r
    texts = ["".join(generator.choices(alphabet, k=generator.randint(1, 400))) for _ in range(300)]
    assert all(is_plain_ascii(text) for text in texts)
    assert [(e.ids, e.offsets) for e in twin.encode_batch(texts)] == [
        (e.ids, e.offsets) for e in tokenizer.encode_batch(texts)]


def test_texts_that_are_not_plain_ascii_go_to_the_tokenizer() -> None:
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    twin = ascii_twin(tokenizer)
    assert twin is not None
    others: list[TextInput] = ["Café CRÈME", "vertical\x0btab joins words", "bell\x07", ("fine", "naïve")]
    assert not any(is_plain_ascii(text) for text in others)
    for text in others:  # the twin would differ on them, which is why they never reach it
        assert encode(tokenizer, [text], 128, ascii_tokenizer=twin)[0].ids == encode(tokenizer, [text], 128)[0].ids
    mixed = [*PLAIN[:2], "Café"] * 4  # one text not plain: the whole call goes to the tokenizer
    assert [e.ids for e in encode(tokenizer, mixed, 128, ascii_tokenizer=twin)] == [
        e.ids for e in encode(tokenizer, mixed, 128)]
    assert twin.encode("Café").ids != tokenizer.encode("Café").ids


def test_no_twin_for_tokenizers_that_normalize_otherwise() -> None:
    assert ascii_twin(tiny_tokenizer("bert").backend_tokenizer) is None  # no normalizer, whitespace pre-tokenizer
    assert ascii_twin(tiny_tokenizer("roberta").backend_tokenizer) is None


def test_the_twin_cuts_question_answering_windows_as_the_tokenizer() -> None:
    """Windows of a long context (truncation with a stride, only the context cut): the same in every window."""
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    tokenizer.enable_truncation(48, stride=16, strategy="only_second")
    twin = ascii_twin(tokenizer)
    assert twin is not None
    pair = ("Where did the Exhibit open?", " ".join(str(text) for text in PLAIN[:2]) * 6)

    def windows(encoder: Tokenizer) -> list[tuple[list[int], list[tuple[int, int]], list[int | None]]]:
        first = encoder.encode(*pair)
        return [(e.ids, e.offsets, e.sequence_ids) for e in [first, *first.overflowing]]

    assert len(windows(tokenizer)) > 3 and windows(twin) == windows(tokenizer)
