"""Robustness: schemathesis fuzzes every documented operation, plus hand-picked hostile and unusual inputs.

No request may get a 5xx, and the server must keep answering afterwards.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tests.serving import live_server, make_app

MAX_BODY = 64 * 1024
EXAMPLES = 100  # per operation and generation mode
HOSTILE_TEXTS = {
    "nul": "a\x00b",
    "rtl-override": "\u202egood movie",
    "zero-width": "\u200b\u200c\u200d",
    "bom": "\ufeff",
    "combining": "e\u0301" * 50,
    "emoji": "😀👍🏽👨‍👩‍👧",
    "cjk": "日本語のテキスト",
    "max-code-point": "\U0010ffff",
    "control": "\x07\x1b[31m\x7f",
    "newlines": "good\r\n\tmovie\n",
    "very-long": "good movie " * 1500,  # 16 kB: under the body limit three times over, far over max_length
}


@pytest.fixture(scope="module")
def server(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server with a small body limit: `tiny` (truncate) and `strict` (reject)."""
    endpoints: list[dict[str, Any]] = [
        {"model_dir": str(bert_dir), "engine": "onnxruntime", "max_inputs_per_request": 8, "max_wait_ms": 0},
        {"model_dir": str(bert_dir), "name": "strict", "engine": "onnxruntime", "truncation": "reject",
         "max_wait_ms": 0},
    ]
    with live_server(make_app(tmp_path_factory.mktemp("robust"), endpoints, max_body_bytes=MAX_BODY)) as url:
        yield url


@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_fuzzed_requests_never_get_a_5xx(server: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # with the model name fixed, only request bodies have anything to get wrong
        # unknown model names only reach the 404 branch (tested elsewhere), so every case names a served model
        fixed = {"path_parameters": {"name": "tiny"}} if "{name}" in operation.path else {}

        @given(case=operation.as_strategy(mode, **fixed))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        check()


def _v2(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


@pytest.mark.parametrize("text", HOSTILE_TEXTS.values(), ids=HOSTILE_TEXTS.keys())
@pytest.mark.parametrize("model", ["tiny", "strict"])
def test_unusual_unicode_is_served_or_refused_with_a_4xx(server: str, text: str, model: str) -> None:
    v1 = httpx.post(f"{server}/v1/models/{model}/predict", json={"inputs": [text, [text, text]]})
    v2 = httpx.post(f"{server}/v2/models/{model}/infer", json=_v2([text]))
    if model == "strict" and text == HOSTILE_TEXTS["very-long"]:
        assert (v1.status_code, v2.status_code) == (422, 400)
    elif not text.strip():
        assert (v1.status_code, v2.status_code) == (422, 400)
        assert "is empty" in v1.text and "is empty" in v2.text
    else:
        assert (v1.status_code, v2.status_code) == (200, 200), (v1.text, v2.text)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/tiny/predict", b"{not json", 422),
        ("/v1/models/tiny/predict", b"", 422),
        ("/v1/models/tiny/predict", b"null", 422),
        ("/v1/models/tiny/predict", b"[]", 422),
        ("/v1/models/tiny/predict", b'{"inputs": "text"}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": [null]}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": [{"a": 1}]}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": [["a", 1]]}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": ["a"], "top_k": "many"}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": ["a"], "top_k": 1e400}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": ["a"], "top_k": NaN}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": ["\\ud800 lone surrogate"]}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": [["ok", "\\udfff"]]}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": "\\ud800"}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": [["\\ud800"]]}', 422),
        ("/v1/models/tiny/predict", b'{"\\ud800": 1}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": ["\xff\xfe invalid utf-8"]}', 422),
        ("/v1/models/tiny/predict", b'{"inputs": [' + b'[' * 10000 + b']' * 10000 + b']}', 422),
        ("/v2/models/tiny/infer", b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", '
                                  b'"data": ["\xff\xfe invalid utf-8"]}]}', 400),
        ("/v2/models/tiny/infer", b'{"inputs": [{"name": 5, "shape": "x", "datatype": null}]}', 400),
        ("/v2/models/tiny/infer", b'{"inputs": [{"name": "text", "shape": [1e30], "datatype": "BYTES", '
                                  b'"data": ["a"]}]}', 400),
        ("/v2/models/tiny/infer", b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": '
                                  + b'[' * 10000 + b']' * 10000 + b'}]}', 400),
        ("/v2/models/tiny/infer", b"\x00\x01\x02", 400),
    ],
)
def test_malformed_bodies_get_a_4xx(server: str, path: str, body: bytes, status: int) -> None:
    response = httpx.post(f"{server}{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert httpx.post(f"{server}/v1/models/tiny/predict", json={"inputs": ["still serving"]}).status_code == 200


@pytest.mark.parametrize("path", ["/v1/models/tiny/predict", "/v2/models/tiny/infer"])
def test_huge_bodies_get_413_and_the_server_goes_on(server: str, path: str) -> None:
    texts = ["good movie " * 1000] * 8
    body = {"inputs": texts} if path.startswith("/v1") else _v2(texts)
    headers = {"content-type": "application/json"}
    response = httpx.post(f"{server}{path}", content=json.dumps(body).encode(), headers=headers)
    assert response.status_code == 413
    assert str(MAX_BODY) in response.text
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1])), timeout=10) as raw:
        raw.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {10**12}\r\n\r\n{{}}".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 413 ")  # at once, without waiting for the declared bytes
    assert httpx.post(f"{server}/v1/models/tiny/predict", json={"inputs": ["still serving"]}).status_code == 200
