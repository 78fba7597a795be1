"""Which texts hold a given text: token-aligned containment after a light normalisation, indexed by token.

A text is normalised to its lowercase tokens (runs of word characters, and each other non-space character on its
own) joined by single spaces, with a space at either end: ``"It's  GOOD."`` becomes ``" it ' s good . "``. Text A
is inside text B when A's normalised form is a substring of B's, so containment is whole tokens only ("fun" is not
inside "funny"), and raw and pre-tokenized text (SST-2's "it 's") compare alike within one file.

An index looks a text up only among the indexed texts holding its rarest token instead of comparing every pair:
finding SST-2's sentences (each of its 67k phrases looked up among all of them) takes about half a second.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

TOKEN = re.compile(r"\w+|[^\w\s]")


def normalise(text: str) -> str:
    """The text's lowercase tokens joined and wrapped by single spaces (idempotent)."""
    return f" {' '.join(TOKEN.findall(text.lower()))} "


class ContainmentIndex:
    """Distinct normalised texts, with the texts each token occurs in; it is given and asked normalised texts."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = list(dict.fromkeys(texts))
        postings: defaultdict[str, list[int]] = defaultdict(list)
        for number, text in enumerate(self.texts):
            for token in set(text.split()):
                postings[token].append(number)
        self._postings = dict(postings)

    def holds(self, needle: str, *, strictly: bool = False) -> bool:
        """Whether an indexed text contains the (normalised) needle; ``strictly``: a text other than the needle."""
        return any(not (strictly and self.texts[n] == needle) for n in self.holders(needle))

    def holders(self, needle: str) -> list[int]:
        """The positions (in ``texts``) of the indexed texts that contain the (normalised) needle."""
        candidates = [self._postings.get(token, []) for token in set(needle.split())]
        rarest = min(candidates, key=len, default=[])
        return [n for n in rarest if needle in self.texts[n]]
