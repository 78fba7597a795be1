"""Inputs given as token ids: the ids of the model's own vocabulary for a text alone, without special tokens.

The server frames them as the tokenizer frames a text ([CLS] ... [SEP] for BERT, <s> ... </s> for RoBERTa, with
their type ids), reading that framing off the tokenizer once by encoding a probe text with and without its special
tokens. Framed ids are then checked like an encoded text: cut to the model's maximum length when the tokenizer
truncates, refused past it otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from service.runtime.errors import BadInput

PROBE = "a"  # any text the tokenizer turns into at least one token


@dataclass(frozen=True)
class TokenIds:
    """One request input as token ids: a text's ids in the model's vocabulary, without special tokens."""

    ids: Sequence[int]


@dataclass(frozen=True)
class Framed:
    """Token ids with the special tokens around them, and their type ids: what padding reads of an encoding."""

    ids: list[int]
    type_ids: list[int]


class Framing:
    """The special tokens a tokenizer puts around a single text, applied to token-id inputs."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        """Read the framing off `tokenizer`; ValueError when its post-processor does not just add tokens before and
        after the text."""
        framed = tokenizer.encode(PROBE)
        bare = tokenizer.encode(PROBE, add_special_tokens=False).ids
        mask = framed.special_tokens_mask
        start = next((position for position, special in enumerate(mask) if not special), len(mask))
        end = start + len(bare)
        if not bare or framed.ids[start:end] != bare or not all(mask[end:]):
            raise ValueError(f"the tokenizer does not frame a text with special tokens before and after it "
                             f"({framed.tokens} for {PROBE!r}); token-id inputs need that")
        self._before, self._before_types = framed.ids[:start], framed.type_ids[:start]
        self._after, self._after_types = framed.ids[end:], framed.type_ids[end:]
        self._text_type = framed.type_ids[start]
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        truncation = tokenizer.truncation
        self._truncate_to: int | None = truncation["max_length"] if truncation else None
        self._max_length = max_length

    def frame(self, index: int, value: TokenIds) -> Framed:
        """`value`'s ids framed with the special tokens; raises BadInput (naming inputs[index]) for no ids, ids
        outside the vocabulary, or more tokens than the model's maximum when the tokenizer does not truncate."""
        ids = list(value.ids)
        if not ids:
            raise BadInput(f"inputs[{index}] is empty")
        outside = [token for token in ids if not 0 <= token < self._vocab_size]
        if outside:
            raise BadInput(f"inputs[{index}] has token ids outside the model's vocabulary (0 to "
                           f"{self._vocab_size - 1}): {outside[:5]}")
        framed = self.framed(ids)
        if len(framed.ids) > self._max_length:
            raise BadInput(f"inputs[{index}] is {len(framed.ids)} tokens long, more than the model's maximum of "
                           f"{self._max_length}")
        return framed

    @property
    def text_tokens_kept(self) -> int | None:
        """How many of a text's tokens the tokenizer keeps beside the special tokens; None when it does not cut."""
        if self._truncate_to is None:
            return None
        return max(self._truncate_to - len(self._before) - len(self._after), 0)

    def framed(self, ids: list[int]) -> Framed:
        """A text's ids framed with the special tokens, cut first where the tokenizer truncates (no checks)."""
        kept = self.text_tokens_kept
        if kept is not None:
            ids = ids[:kept]
        return Framed(
            ids=self._before + ids + self._after,
            type_ids=self._before_types + [self._text_type] * len(ids) + self._after_types,
        )
