"""Request bodies on the three protocols: compressed ones refused alike, JSON read whatever the Content-Type, and v1's
malformed bodies answered with one readable message."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.serving import make_app, wait_ready

V1 = ("/v1/models/tiny/predict", {"inputs": ["a gorgeous witty movie"]})
V2 = ("/v2/models/tiny/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}]})
OPENAI = ("/v1/embeddings", {"model": "tiny-embed", "input": "a gorgeous witty movie"})
REFUSED = "Content-Encoding 'gzip' is not supported: send the request body uncompressed"


@pytest.fixture(scope="module")
def client(bert_dir: Path, embedding_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    endpoints = [{"model_dir": str(bert_dir), "engine": "onnxruntime"},
                 {"model_dir": str(embedding_dir), "engine": "onnxruntime"}]
    with TestClient(make_app(tmp_path_factory.mktemp("bodies"), endpoints)) as test_client:
        wait_ready(test_client)
        yield test_client


def _message(path: str, response: httpx.Response) -> str:
    """The error message in the protocol's shape: v1 `detail`, v2 `error`, OpenAI's `error.message`."""
    body = response.json()
    message: str = body["error"]["message"] if path == OPENAI[0] else body["detail"] if path == V1[0] else body["error"]
    return message


@pytest.mark.parametrize(("path", "body"), [V1, V2, OPENAI], ids=["v1", "v2", "openai"])
@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "labelled-gzip"])
def test_a_compressed_body_gets_the_same_415_in_each_protocol_s_shape(
    client: TestClient, path: str, body: dict[str, Any], compressed: bool
) -> None:
    raw = json.dumps(body).encode()
    response = client.post(path, content=gzip.compress(raw) if compressed else raw,
                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 415, response.text
    assert _message(path, response) == REFUSED
    if path == OPENAI[0]:
        assert response.json()["error"]["type"] == "invalid_request_error"
    plain = {"Content-Type": "application/json", "Content-Encoding": "identity"}
    identity = client.post(path, content=raw, headers=plain)
    assert identity.status_code == 200, identity.text


@pytest.mark.parametrize(("path", "body"), [V1, V2, OPENAI], ids=["v1", "v2", "openai"])
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_is_read_whatever_the_content_type(
    client: TestClient, path: str, body: dict[str, Any], content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post(path, content=json.dumps(body).encode(), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == client.post(path, json=body).json()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"inputs": [123]}', "inputs[0]: expected a text, a [text, text] list or a {question, context} object"),
        (b'{"inputs": ["ok", {"question": "who?"}]}',
         "inputs[1]: expected a text, a [text, text] list or a {question, context} object"),
        (b'{"inputs": ["\xff\xfe not utf-8"]}', "body is not valid JSON: not UTF-8 (invalid start byte)"),
        (b'{"inputs": [' + b"[" * 10000 + b"]" * 10000 + b"]}", "body is not valid JSON: nested too deeply"),
        (b'{"inputs": [', "body is not valid JSON: Expecting value"),
        (b"", "body: Field required"),
        (b'{"inputs": []}', "inputs: List should have at least 1 item after validation, not 0"),
        (b'{"inputs": ["a"], "top_k": "many", "x": 1}',
         "top_k: Input should be a valid integer; x: Extra inputs are not permitted"),
    ],
)
def test_v1_malformed_bodies_get_422_with_one_message_naming_the_field(
    client: TestClient, body: bytes, detail: str
) -> None:
    response = client.post(V1[0], content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (422, {"detail": detail})


def test_the_openapi_document_describes_v1_s_422(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    unprocessable = document["paths"]["/v1/models/{name}/predict"]["post"]["responses"]["422"]
    assert unprocessable["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert document["components"]["schemas"]["ErrorResponse"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in document["components"]["schemas"]
