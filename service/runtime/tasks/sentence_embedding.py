"""Sentence embedding: a text in, one vector out (pooled and, as the model defines, normalised inside the graph).

The exported graph ends in the pooling of the base model's sentence-transformers configuration (mean of the token
states over the attention mask, the [CLS] state, or the maximum) and, where that configuration normalises, the L2
normalisation: its output `sentence_embedding` is [batch, dimension] and serving only reads it. The card's
task_settings record what the graph does, so a request for fewer dimensions can cut and renormalise.

Inputs are texts, or (for the OpenAI-compatible API) token ids of the model's vocabulary, which the server frames
with the tokenizer's special tokens (`token_ids.py`); one request holds one kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer

from service.runtime.errors import BadInput
from service.runtime.tasks.base import PredictOptions
from service.runtime.tasks.encoding import Encoded, TextEncoder, check_input_names, collate_encodings
from service.runtime.tasks.signature import Answers, Signature, TensorSpec, no_options
from service.runtime.tasks.spec import TaskSpec
from service.runtime.tasks.token_ids import Framing, TokenIds

if TYPE_CHECKING:
    from service.runtime.card import ModelCard

Pooling = Literal["mean", "cls", "max"]
FROM_MODEL: dict[str, Any] = {"from_model": True}  # a setting export reads from the model, not a command flag


class SentenceEmbeddingSettings(BaseModel):
    """How the graph turns token states into the sentence vector; the card's task_settings.

    Export writes them from the model (its sentence-transformers configuration), so they are not command flags.
    """

    model_config = ConfigDict(extra="forbid")

    pooling: Pooling = Field(default="mean", description="token states to one vector: mean, cls or max",
                             json_schema_extra=FROM_MODEL)
    normalize: bool = Field(default=True, description="whether the vector is scaled to unit length",
                            json_schema_extra=FROM_MODEL)
    dimension: int | None = Field(default=None, ge=1, description="length of the vector: the model's hidden size",
                                  json_schema_extra=FROM_MODEL)


def settings_of(card: ModelCard) -> SentenceEmbeddingSettings:
    """The card's sentence-embedding settings (defaults filled in)."""
    return SentenceEmbeddingSettings.model_validate(card.task_settings)


def shortened(vector: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """The vector's first `dimensions` values (all when None), scaled back to unit length when the model normalises;
    raises BadInput unless 1 <= dimensions <= the vector's length."""
    if dimensions is None:
        return vector
    if not 1 <= dimensions <= len(vector):
        raise BadInput(f"dimensions must be between 1 and {len(vector)}, the model's dimension; got {dimensions}")
    cut = vector[:dimensions]
    norm = float(np.linalg.norm(cut))
    return cut / norm if normalize and norm > 0 else cut


class SentenceEmbedding:
    """One embedding per text (or per list of token ids), read from the graph's pooled output."""

    def __init__(
        self, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str], max_length: int, normalize: bool
    ) -> None:
        self._encoder = TextEncoder(tokenizer, max_length, word_cache=True)
        self._pad_id = pad_id
        self._input_names = check_input_names(input_names)
        self._normalize = normalize
        try:
            self._framing: Framing | str = Framing(tokenizer, max_length)
        except ValueError as exc:  # texts still work; token-id requests are refused with the reason
            self._framing = str(exc)

    def preprocess(self, inputs: Sequence[object]) -> list[Encoded]:
        """Validate and tokenize texts, or frame token ids; raises BadInput naming the offending input."""
        if any(isinstance(value, TokenIds) for value in inputs):
            return [self._framed(index, value) for index, value in enumerate(inputs)]
        for index, value in enumerate(inputs):
            if not isinstance(value, str):
                raise BadInput(f"inputs[{index}] must be a string")
            if not value.strip():
                raise BadInput(f"inputs[{index}] is empty")
        return self._encoder.encode_ids([str(value) for value in inputs])

    def _framed(self, index: int, value: object) -> Encoded:
        if not isinstance(value, TokenIds):
            raise BadInput(f"inputs[{index}] must be token ids, as the request's other inputs are")
        if isinstance(self._framing, str):
            raise BadInput(f"this model takes texts, not token ids: {self._framing}")
        return self._framing.frame(index, value)

    def tokens(self, item: Encoded) -> int:
        """The input's length in tokens."""
        return len(item.ids)

    def collate(self, items: Sequence[Encoded]) -> dict[str, np.ndarray]:
        """Pad a batch of encodings to its longest."""
        return collate_encodings(items, self._input_names, self._pad_id)

    def answers(
        self, items: Sequence[Encoded], outputs: Sequence[Sequence[np.ndarray]], options: PredictOptions
    ) -> list[dict[str, Any]]:
        """The embedding of each input (its first `options.dimensions` values, when set), with its length in
        tokens."""
        return [
            {
                "embedding": shortened(rows[0].astype(np.float32), options.dimensions, self._normalize).tolist(),
                "tokens": len(item.ids),
            }
            for item, rows in zip(items, outputs, strict=True)
        ]

    def example_inputs(self) -> list[object]:
        """Two texts."""
        return ["oberta warm-up", "a second, somewhat longer text for the warm-up batch"]


class EmbeddingOutput(BaseModel):
    """The answer for one sentence-embedding input."""

    embedding: list[float] = Field(description="the text's vector (unit length when the card says normalize)")
    tokens: int = Field(description="the text's length in tokens, special tokens included")


def _processor(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> SentenceEmbedding:
    return SentenceEmbedding(tokenizer, pad_id, input_names, card.max_length, settings_of(card).normalize)


def v2_signature(card: ModelCard) -> Signature:
    """Input `text`; output `embedding` (FP32 [n, dimension])."""
    dimension = settings_of(card).dimension or -1

    def build_inputs(elements: Mapping[str, list[str]]) -> list[object]:
        return list(elements["text"])

    def build_outputs(answers: Answers) -> dict[str, np.ndarray]:
        return {"embedding": np.asarray([answer["embedding"] for answer in answers], dtype=np.float32)}

    return Signature(
        inputs=(TensorSpec("text", "BYTES"),),
        outputs=(TensorSpec("embedding", "FP32", (-1, dimension)),),
        build_inputs=build_inputs,
        build_outputs=build_outputs,
        build_options=no_options,
    )


SPEC = TaskSpec(
    name="sentence-embedding",
    summary="a text in, its embedding vector out (plain sentences to train: the dense model is the teacher)",
    output_names=("sentence_embedding",),
    per_token=False,
    has_labels=False,
    accepts_text=True,
    build=_processor,
    v1_inputs=(str,),
    v1_output=EmbeddingOutput,
    v2_signature=v2_signature,
    settings=SentenceEmbeddingSettings,
    options=frozenset({"dimensions"}),
)
