"""Reading v2 requests and writing v2 responses, in JSON or with the binary tensor data extension.

With the extension the body is a JSON header of `Inference-Header-Content-Length` bytes followed by the raw data of
every tensor whose parameters name a `binary_data_size`, in tensor order. BYTES elements are each a 4-byte
little-endian length followed by that many bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from service.api.errors import MAX_PROBLEMS
from service.api.oip.schemas import InferRequest, Parameters, RequestInput
from service.runtime.errors import ProtocolError

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
NUMPY_TYPES: dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}  # numeric outputs served


@dataclass(frozen=True)
class ParsedRequest:
    """A request with every input's elements decoded."""

    request: InferRequest
    elements: dict[str, list[str]]  # input name -> its elements, flattened


@dataclass(frozen=True)
class OutputTensor:
    """An output ready to encode: BYTES outputs hold str elements, numeric ones a numpy array."""

    name: str
    datatype: str
    data: np.ndarray


def deserialize_bytes(buffer: bytes, name: str) -> list[bytes]:
    """The elements of a binary BYTES tensor."""
    elements, offset = [], 0
    while offset < len(buffer):
        if offset + 4 > len(buffer):
            raise ProtocolError(f"input {name!r}: binary data ends inside an element length")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise ProtocolError(f"input {name!r}: binary element of {length} bytes runs past the tensor's data")
        elements.append(buffer[offset : offset + length])
        offset += length
    return elements


def serialize_bytes(elements: Iterable[bytes]) -> bytes:
    """A binary BYTES tensor of `elements`."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data that follows it (empty without the extension)."""
    if header_length is None:
        return body, b""
    length = header_length.strip()
    if not (length.isascii() and length.isdigit()) or int(length) > len(body):
        raise ProtocolError(f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte body")
    return body[: int(length)], body[int(length) :]


def _flatten(data: list[object]) -> list[object]:
    flat: list[object] = []
    for element in data:
        flat.extend(_flatten(element) if isinstance(element, list) else [element])
    return flat


def _texts(tensor: RequestInput, raw: bytes | None) -> list[str]:
    """The elements of a BYTES input as str, from JSON data or binary data (which must be UTF-8)."""
    if tensor.datatype != "BYTES":
        raise ProtocolError(f"input {tensor.name!r} must be BYTES (texts), not {tensor.datatype}")
    if raw is not None:
        texts = []
        for index, element in enumerate(deserialize_bytes(raw, tensor.name)):
            try:
                texts.append(element.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"input {tensor.name!r}[{index}] is not valid UTF-8 ({exc.reason})") from exc
    else:
        elements = _flatten(tensor.data or [])
        if not all(isinstance(element, str) for element in elements):
            raise ProtocolError(f"input {tensor.name!r}: every element of JSON BYTES data must be a string")
        texts = [str(element) for element in elements]
    expected = math.prod(tensor.shape)
    if len(texts) != expected:
        raise ProtocolError(f"input {tensor.name!r} has {len(texts)} elements; shape {tensor.shape} holds {expected}")
    return texts


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """Validate a request body and decode every input; raises ProtocolError."""
    header, binary = split_body(body, header_length)
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:MAX_PROBLEMS]
        )
        raise ProtocolError(f"invalid inference request: {problems}") from None
    asked = [output.name for output in request.outputs or []]
    twice = sorted({name for name in asked if asked.count(name) > 1})
    if twice:
        raise ProtocolError(f"outputs {twice} are asked for more than once")
    elements: dict[str, list[str]] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in elements:
            raise ProtocolError(f"input {tensor.name!r} is given twice")
        size = tensor.parameters.get("binary_data_size")
        raw = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {tensor.name!r}: binary_data_size must be a non-negative integer, "
                                    f"not {size!r}")
            if offset + size > len(binary):
                raise ProtocolError(f"input {tensor.name!r}: binary_data_size {size} exceeds the binary data sent")
            if tensor.data is not None:
                raise ProtocolError(f"input {tensor.name!r} has both data and binary_data_size")
            raw, offset = binary[offset : offset + size], offset + size
        elif tensor.data is None:
            raise ProtocolError(f"input {tensor.name!r} has neither data nor binary_data_size")
        elements[tensor.name] = _texts(tensor, raw)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data follow the last binary input")
    return ParsedRequest(request, elements)


def _flag(parameters: Parameters, name: str, owner: str) -> bool:
    """A boolean parameter, false when absent; ProtocolError for any other value."""
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{owner}parameter {name} must be true or false, not {value!r}")
    return value


def binary_outputs(request: InferRequest, names: Sequence[str]) -> set[str]:
    """The outputs to send as binary data: those asked for so, or all under binary_data_output; raises ProtocolError
    for either parameter when it is not a boolean."""
    every = _flag(request.parameters, "binary_data_output", "")
    if request.outputs is not None:
        return {output.name for output in request.outputs
                if _flag(output.parameters, "binary_data", f"output {output.name!r}: ")}
    return set(names) if every else set()


def encode_response(
    model: str, request_id: str | None, outputs: Sequence[OutputTensor], binary: set[str]
) -> tuple[bytes, dict[str, str], str]:
    """Body, extra headers and media type of a response holding `outputs`."""
    entries, blobs = [], []
    for output in outputs:
        entry: dict[str, object] = {"name": output.name, "datatype": output.datatype, "shape": list(output.data.shape)}
        flat = output.data.reshape(-1)
        if output.name in binary:
            if output.datatype == "BYTES":
                raw = serialize_bytes(str(element).encode("utf-8") for element in flat)
            else:
                raw = np.ascontiguousarray(flat, dtype=NUMPY_TYPES[output.datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = [str(element) for element in flat] if output.datatype == "BYTES" else flat.tolist()
        entries.append(entry)
    body: dict[str, object] = {"model_name": model, "outputs": entries}
    if request_id is not None:
        body["id"] = request_id
    header = json.dumps(body).encode("utf-8")
    if not blobs:
        return header, {}, "application/json"
    return header + b"".join(blobs), {HEADER_LENGTH: str(len(header))}, BINARY_CONTENT_TYPE
