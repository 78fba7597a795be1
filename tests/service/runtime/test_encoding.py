"""Tokenizing shortcuts that must not change a token: the ASCII twin of a BERT tokenizer (the same tokens, type ids
and offsets on plain ASCII text), and cutting a long text to the words that can reach the kept tokens."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from tokenizers import Encoding, Tokenizer

from service.runtime.tasks.encoding import (
    TextEncoder,
    TextInput,
    ascii_twin,
    head,
    is_plain_ascii,
    load_tokenizer,
    words_kept,
)
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
    encoder = TextEncoder(tokenizer, 128)
    for text in others:  # the twin would differ on them, which is why they never reach it
        assert encoder.encode([text])[0].ids == _whole(tokenizer, text).ids
    mixed = [*PLAIN[:2], "Café"] * 4  # one text not plain: the whole call goes to the tokenizer
    assert [e.ids for e in encoder.encode(mixed)] == [_whole(tokenizer, text).ids for text in mixed]
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


def _whole(tokenizer: Tokenizer, text: TextInput) -> Encoding:
    return tokenizer.encode(text) if isinstance(text, str) else tokenizer.encode(*text)


def _long_texts() -> list[TextInput]:
    generator = random.Random(1)
    words = ["film", "the", "acting,", "wasn't", "(really)", "Ünïcode", "日本語", "supercalifragilistic" * 6, "--"]
    return [
        " ".join(generator.choices(words, k=2000)),  # a document: cut after its first max_length words
        "  \t leading whitespace " + "word " * 400,
        "\x07 " * 300 + "late words " * 100,  # words of no tokens: the head does not fill, the whole text is read
        "\x07\x07 " * 40 + "a b " * 200,
        ("a pair " * 300, "stays whole " * 100),
        "short text",
    ]


@pytest.mark.parametrize("tokenizer", _tokenizers(), ids=["all-MiniLM-L6-v2", "tiny-wordpiece"])
@pytest.mark.parametrize("count", [1, 12])  # one by one, and encode_batch
@pytest.mark.parametrize("offsets", [True, False])
def test_long_texts_give_the_tokens_of_the_whole_text(tokenizer: Tokenizer, count: int, offsets: bool) -> None:
    max_length = tokenizer.truncation["max_length"]
    encoder = TextEncoder(tokenizer, max_length, word_cache=not offsets)
    for text in _long_texts():
        expected = _whole(tokenizer, text)
        if offsets:
            got = encoder.encode([text] * count)[0]
            assert (got.ids, got.type_ids, got.offsets) == (expected.ids, expected.type_ids, expected.offsets)
        else:
            ids = encoder.encode_ids([text] * count)[0]
            assert (ids.ids, ids.type_ids) == (expected.ids, expected.type_ids)


def test_a_long_text_is_tokenized_from_its_head() -> None:
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    document = "the acting was great " * 500
    got, whole = TextEncoder(tokenizer, 128).encode([document])[0], tokenizer.encode(document)
    assert got.ids == whole.ids
    left_over = sum(len(window.ids) for window in got.overflowing)  # what truncation dropped
    assert left_over < 20 < sum(len(window.ids) for window in whole.overflowing)


def test_head_cuts_at_the_start_of_a_word() -> None:
    assert head("one two  three four", 2) == "one two  "
    assert head("  one two three", 1) == "  one "
    assert head("one two", 2) == "one two" and head("one two three", None) == "one two three"
    assert head(("one two three", "four"), 1) == ("one two three", "four")


def test_words_kept_only_where_truncation_drops_the_tail() -> None:
    assert words_kept(load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]) == 128
    assert words_kept(load_tokenizer(SHIPPED_TOKENIZER, 128, "reject")[0]) is None  # long texts are refused whole
    windows = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    windows.enable_truncation(128, stride=16)
    assert words_kept(windows) is None  # the overflowing windows are read
    left = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    left.enable_truncation(128, direction="left")
    assert words_kept(left) is None
    roberta = tiny_tokenizer("roberta").backend_tokenizer
    roberta.enable_truncation(max_length=32)
    assert words_kept(roberta) is None  # byte-level words carry their leading space
