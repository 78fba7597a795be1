"""Entity-level precision, recall and F1 over IOB2 tag sequences: an entity counts when its span and type both match.

Entities are read from word tags with the server's own rule
(`service.runtime.tasks.token_classification.entity_chunks`), so the metric measures exactly what the server returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.runtime.tasks.token_classification import entity_chunks


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str | None]]) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 over the entities of every sentence."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    expected = {(i, *chunk) for i, tags in enumerate(gold) for chunk in entity_chunks(tags)}
    found = {(i, *chunk) for i, tags in enumerate(predicted) for chunk in entity_chunks(tags)}
    correct = len(expected & found)
    precision = correct / len(found) if found else 0.0
    recall = correct / len(expected) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
