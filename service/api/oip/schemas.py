"""Bodies of the v2 protocol as pydantic models: request validation and OpenAPI docs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Parameter = StrictBool | int | float | StrictStr
Parameters = dict[str, Parameter]
Shape = list[Annotated[int, Field(ge=0)]]


class RequestInput(BaseModel):
    """An input tensor: its elements in `data` (row-major, possibly nested) or, with the binary extension, in
    `parameters.binary_data_size` bytes after the JSON header."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, description="input name from the model metadata, e.g. text")
    shape: Shape = Field(description="e.g. [2] for two texts")
    datatype: str = Field(description="BYTES for texts")
    parameters: Parameters = Field(default_factory=dict, description="binary_data_size with the binary extension")
    data: list[Any] | None = Field(default=None, description="the elements, e.g. two strings")


class RequestOutput(BaseModel):
    """An output asked for; `parameters.binary_data: true` returns it as binary data."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, description="output name from the model metadata")
    parameters: Parameters = Field(default_factory=dict, description="binary_data: true for binary data")


class InferRequest(BaseModel):
    """An inference request (its JSON part when the binary extension is used)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"id": "1", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]}
            ]
        },
    )

    id: str | None = Field(default=None, description="echoed in the response")
    parameters: Parameters = Field(
        default_factory=dict, description="binary_data_output: true returns every output as binary data"
    )
    inputs: list[RequestInput] = Field(min_length=1, description="input tensors")
    outputs: list[RequestOutput] | None = Field(default=None, description="outputs to return; default: all")


class ResponseOutput(BaseModel):
    """An output tensor: data in JSON, or `parameters.binary_data_size` bytes after the JSON header."""

    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    """An inference response (its JSON part when binary outputs follow)."""

    model_name: str
    id: str | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    """Name, datatype and shape of a model input or output (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """A model's tensors, plus oberta's task and labels (the column order of `scores`)."""

    name: str
    platform: str = Field(description="the engine: deepsparse or onnxruntime (the configured choice until loaded)")
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    task: str
    labels: list[str]


class ServerMetadata(BaseModel):
    """Server name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    """Liveness."""

    live: bool


class ServerReady(BaseModel):
    """Readiness of every model."""

    ready: bool


class ModelReady(BaseModel):
    """Readiness of one model."""

    name: str
    ready: bool


class ErrorBody(BaseModel):
    """Every v2 error."""

    error: str


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs references inlined (for a hand-written OpenAPI request body)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
