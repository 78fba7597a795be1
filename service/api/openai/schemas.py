"""Bodies of OpenAI's embeddings API (`POST /v1/embeddings`) as pydantic models: validation and OpenAPI docs."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Literal, cast

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from service.runtime.tasks.token_ids import TokenIds

EncodingFormat = Literal["float", "base64"]
EmbeddingInput = (
    StrictStr
    | Annotated[list[StrictStr], Field(min_length=1)]
    | Annotated[list[StrictInt], Field(min_length=1)]
    | Annotated[list[list[StrictInt]], Field(min_length=1)]
)
INPUT_SHAPES = "a string, a list of strings, a list of token ids or a list of lists of token ids (lists not empty)"


class EmbeddingRequest(BaseModel):
    """Texts (or token ids) to embed with a sentence-embedding model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "embed", "input": ["a gorgeous, witty movie", "a dull film"]}]},
    )

    model: str = Field(description="a served sentence-embedding model (GET /v1/models lists each model's task)")
    input: EmbeddingInput = Field(
        description="a text, texts, or token ids of the model's vocabulary for one text or several, without special "
        "tokens (the server adds the model's, such as [CLS] and [SEP]); one embedding per text, in order"
    )
    encoding_format: EncodingFormat = Field(
        default="float", description="float: lists of numbers; base64: each vector's little-endian float32 bytes"
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="keep the first n values of each vector (renormalised when the model "
        "normalises); at most the model's dimension"
    )
    user: str | None = Field(default=None, description="an end-user id; accepted for compatibility and ignored")

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_shape(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        """One clear message for an input of none of the four shapes, instead of one error per shape."""
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("embedding_input", f"should be {INPUT_SHAPES}") from None

    def task_inputs(self) -> list[str] | list[TokenIds]:
        """The sentence-embedding task's inputs: texts, or token ids for each text."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if isinstance(value[0], str):
            return cast(list[str], value)
        if isinstance(value[0], int):
            return [TokenIds(cast(list[int], value))]
        return [TokenIds(ids) for ids in cast(list[list[int]], value)]


class Embedding(BaseModel):
    """One input's vector."""

    object: Literal["embedding"] = "embedding"
    index: int = Field(description="the input's position in the request")
    embedding: list[float] | str = Field(description="the vector, or its little-endian float32 bytes in base64")


class Usage(BaseModel):
    """Tokens the model read: every input's tokens after framing and truncation, special tokens included."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """One embedding per input, in order."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str = Field(description="the model that answered")
    usage: Usage


def encoded(vector: Sequence[float], encoding_format: EncodingFormat) -> list[float] | str:
    """A vector as the request asked: the floats, or base64 of their little-endian float32 bytes."""
    if encoding_format == "float":
        return list(vector)
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


class ErrorDetail(BaseModel):
    """What went wrong, as OpenAI's clients read it."""

    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error")
    param: str | None = Field(description="the request field at fault, when one is")
    code: str | None = Field(description="model_not_found, invalid_api_key, rate_limit_exceeded, or null")


class ErrorBody(BaseModel):
    """Every error of the OpenAI-compatible route."""

    error: ErrorDetail
