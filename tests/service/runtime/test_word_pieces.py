"""The word-cache tokenizer must give the tokenizer's tokens: on plain ASCII texts of every kind, truncated or not,
with cached and uncached words, and it must leave to the tokenizer what it cannot tokenize the same way."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from service.runtime.errors import BadInput
from service.runtime.tasks import word_pieces
from service.runtime.tasks.encoding import TextEncoder, TextInput, load_tokenizer
from service.runtime.tasks.word_pieces import CachedWordPieces
from tests.tiny_models import tiny_subword_tokenizer, tiny_tokenizer

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[3] / "models" / "sentiment" / "tokenizer.json"
TEXTS = [
    "The Smithsonian's \"Versailles\" exhibit -- 3.5 stars (out of 4)!",
    "Tabs\tand\nline breaks\r\nand  double  spaces; e-mail: someone@example.com, 50% OFF #deal {x|y} ~`^_",
    "unaffordable antidisestablishmentarianism xqzvwk " + "a" * 101 + " " + "b" * 100,  # pieces, unknowns, overlong
    "",
    "   \t ",
    "a " * 300,  # past the maximum length
]


def _random_texts(count: int, seed: int) -> list[str]:
    generator = random.Random(seed)
    alphabet = string.printable.replace("\x0b", "").replace("\x0c", "")  # letters, digits, punctuation, \t\n\r
    words = ["film", "the", "Acting,", "wasn't", "(really)", "supercalifragilistic", "x" * 120, "--", "42.5%", "a"]
    random_chars = ["".join(generator.choices(alphabet, k=generator.randint(0, 400))) for _ in range(count)]
    random_words = [" ".join(generator.choices(words, k=generator.randint(1, 200))) for _ in range(count)]
    return random_chars + random_words


@pytest.mark.parametrize("truncation", ["truncate", "reject"])
def test_the_cached_pieces_are_the_tokenizers_tokens(truncation: str) -> None:
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate" if truncation == "truncate" else "reject")[0]
    pieces = CachedWordPieces.for_tokenizer(tokenizer, 128)
    assert pieces is not None
    for _ in range(2):  # words first cut, then read from the cache
        for text in [*TEXTS, *_random_texts(150, 0)]:
            got, expected = pieces.encode(text), tokenizer.encode(text)
            assert got is not None and (got.ids, got.type_ids) == (expected.ids, expected.type_ids), text


def test_a_tiny_wordpiece_vocabulary_is_cut_as_the_tokenizer_cuts_it() -> None:
    tokenizer = tiny_subword_tokenizer().backend_tokenizer
    tokenizer.enable_truncation(max_length=32)
    pieces = CachedWordPieces.for_tokenizer(tokenizer, 32)
    assert pieces is not None
    for text in [*TEXTS, *_random_texts(100, 1)]:
        got, expected = pieces.encode(text), tokenizer.encode(text)
        assert got is not None and got.ids == expected.ids, text


def test_texts_holding_a_special_token_go_to_the_tokenizer() -> None:
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    pieces = CachedWordPieces.for_tokenizer(tokenizer, 128)
    assert pieces is not None
    for text in ("a [MASK] here", "[CLS] and [SEP]", "lower [mask] too"):
        assert pieces.encode(text) is None
    encoder = TextEncoder(tokenizer, 128, word_cache=True)
    texts: list[TextInput] = ["the [MASK] of it", "Café", ("a pair", "of texts"), "plain text", "bell\x07"]
    assert [e.ids for e in encoder.encode_ids(texts)] == [
        (tokenizer.encode(text) if isinstance(text, str) else tokenizer.encode(*text)).ids for text in texts]
    assert encoder.encode_ids(["the [MASK] of it"])[0].ids[2] == tokenizer.token_to_id("[MASK]")


def test_no_cached_pieces_for_tokenizers_of_another_form() -> None:
    assert CachedWordPieces.for_tokenizer(tiny_tokenizer("bert").backend_tokenizer, 64) is None  # whitespace split
    assert CachedWordPieces.for_tokenizer(tiny_tokenizer("roberta").backend_tokenizer, 64) is None


def test_the_cache_is_bounded_and_later_words_are_still_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_pieces, "CACHED_WORDS", 5)
    tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "truncate")[0]
    pieces = CachedWordPieces.for_tokenizer(tokenizer, 128)  # its probe text fills the cache
    assert pieces is not None
    text = "ten different words make up this rather short sentence today"
    got = pieces.encode(text)
    assert got is not None and got.ids == tokenizer.encode(text).ids
    assert len(pieces._cache) == 5


def test_too_long_texts_are_refused_under_reject_by_their_index() -> None:
    tokenizer: Tokenizer = load_tokenizer(SHIPPED_TOKENIZER, 128, "reject")[0]
    encoder = TextEncoder(tokenizer, 128, word_cache=True)
    with pytest.raises(BadInput, match=r"inputs\[1\] is 302 tokens long, more than the model's maximum of 128"):
        encoder.encode_ids(["short", "a " * 300])
