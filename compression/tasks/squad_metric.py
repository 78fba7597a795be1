"""SQuAD answer scoring: exact match and token F1 after the official answer normalisation.

Normalisation (as in the SQuAD v1.1 evaluation): lower case, drop ASCII punctuation, drop the articles a, an and the
as whole words, collapse whitespace. F1 is over the bags of normalised tokens; when either side has no tokens it is
1.0 if both are empty and 0.0 otherwise. A prediction scores the best value over the gold answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

PUNCTUATION = frozenset(string.punctuation)
ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation of an answer."""
    text = "".join(char for char in text.lower() if char not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised answers are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 between the normalised tokens of two answers."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1 (fractions) of predictions, each against its best gold answer."""
    if len(predictions) != len(golds) or not predictions:
        raise ValueError("need one or more predictions, each with its gold answers")
    em = sum(max(exact_match(p, g) for g in gold) for p, gold in zip(predictions, golds, strict=True))
    f1 = sum(max(token_f1(p, g) for g in gold) for p, gold in zip(predictions, golds, strict=True))
    return {"exact_match": em / len(predictions), "f1": f1 / len(predictions)}
