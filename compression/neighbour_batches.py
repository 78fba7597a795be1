"""Training batches of neighbours: each batch a random text and the unused texts nearest to it in the teacher's space.

In a batch drawn at random (or grouped by length) the in-batch similarity target mostly ranks texts that have nothing
in common; retrieval has to tell apart paragraphs of one article. Batches of neighbours make every in-batch ranking
one among close texts, where the teacher's fine distinctions are. Each text is used once an epoch, and the order
comes from (seed, epoch) alone, so a resumed run sees the batches of the uninterrupted one. Such a batch mixes
lengths, so its forward passes run in parts of similar length (`forward_in_length_parts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from compression.embedding_model import SentenceEmbeddingOutput

PART_TOKENS = 1024
"""Tokens in each part of a batch of neighbours' forward pass (`forward_in_length_parts`): long texts 8 rows a part."""


def neighbour_batches(vectors: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``vectors`` (rows of unit length) as consecutive batches of ``batch_size``: anchors in random order,
    each with its nearest unused rows by cosine similarity (the last batch takes what is left)."""
    unused = np.arange(len(vectors))
    remaining = vectors
    order: list[int] = []
    while len(unused):
        anchor = int(rng.integers(len(unused)))
        size = min(batch_size, len(unused))
        similarities = remaining @ remaining[anchor]
        similarities[anchor] = np.inf  # the anchor itself, whatever rounding gives its own similarity
        chosen = np.argpartition(-similarities, size - 1)[:size]
        chosen = chosen[np.argsort(-similarities[chosen], kind="stable")]
        order.extend(int(index) for index in unused[chosen])
        kept = np.ones(len(unused), dtype=bool)
        kept[chosen] = False
        unused, remaining = unused[kept], remaining[kept]
    return order


class NeighbourBatchSampler(Sampler[int]):
    """Training order of neighbour batches (`neighbour_batches`) drawn from (seed, epoch) alone."""

    def __init__(self, vectors: torch.Tensor, batch_size: int, seed: int) -> None:
        unit = torch.nn.functional.normalize(vectors.float(), dim=1)
        self.vectors, self.batch_size, self.seed = unit.numpy(), batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.vectors)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed * 100_003 + self.epoch)
        return iter(neighbour_batches(self.vectors, self.batch_size, rng))


def forward_in_length_parts(model: Any, inputs: dict[str, torch.Tensor], max_tokens: int,
                            **options: Any) -> SentenceEmbeddingOutput:
    """``model(**inputs, **options)`` for a sentence-embedding batch run in parts: its rows sorted by length, each part
    cut to its own longest row and holding at most ``max_tokens`` tokens (at least one row). A batch of neighbours mixes
    paragraphs with short questions; padded together, every row would cost the longest one's work. The outputs are
    the whole batch's (padding is masked, so the rows' states do not change) at its tokens; at padding past a part's
    longest row the token states are zero (the losses read the tokens alone)."""
    mask = inputs["attention_mask"]
    rows, length = mask.shape
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    parts: list[tuple[torch.Tensor, int]] = []
    start = 0
    while start < rows:
        cut = max(1, int(lengths[order[start]]))
        count = max(1, max_tokens // cut)
        parts.append((order[start:start + count], cut))
        start += count
    outputs = [model(**{name: _part(value, indices, cut, rows, length) for name, value in inputs.items()}, **options)
               for indices, cut in parts]
    restore = torch.argsort(order)

    def rows_of(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(values)[restore]

    def tokens_of(values: list[torch.Tensor]) -> torch.Tensor:
        return rows_of([F.pad(value, (0, 0, 0, length - value.shape[1])) for value in values])

    hidden = outputs[0].hidden_states
    return SentenceEmbeddingOutput(
        sentence_embedding=rows_of([output.sentence_embedding for output in outputs]),
        pooled_embedding=rows_of([output.pooled_embedding for output in outputs]),
        token_embeddings=tokens_of([output.token_embeddings for output in outputs]),
        hidden_states=None if hidden is None else tuple(
            tokens_of([output.hidden_states[layer] for output in outputs]) for layer in range(len(hidden))),
    )


def _part(value: torch.Tensor, indices: torch.Tensor, cut: int, rows: int, length: int) -> torch.Tensor:
    """The part's rows of an input, cut to ``cut`` tokens where it has a token dimension."""
    if value.dim() >= 2 and value.shape[:2] == (rows, length):
        return value[indices, :cut]
    return value[indices]
