"""Sentence embeddings over HTTP: v1, v2, and OpenAI's embeddings API (raw and with the official openai client)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tokenizers import Tokenizer

from tests.serving import live_server, make_app
from tests.tiny_models import EMBEDDING_DIMENSION

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = ["john smithson visited versailles, near paris.", "the king of france", "paris", "new york and london"]
LONG_TEXT = "the king of france lived in versailles " * 10  # 92 tokens with [CLS] and [SEP]; max_length is 32


@pytest.fixture(scope="module")
def server(embedding_dir: Path, bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server with an API key: `tiny-embed` (truncate), `strict` (reject) and the classifier `tiny`."""
    endpoints: list[dict[str, Any]] = [
        {"model_dir": str(embedding_dir), "engine": "onnxruntime", "max_inputs_per_request": 8, "max_wait_ms": 1},
        {"model_dir": str(embedding_dir), "name": "strict", "engine": "onnxruntime", "truncation": "reject"},
        {"model_dir": str(bert_dir), "engine": "onnxruntime"},
    ]
    with live_server(make_app(tmp_path_factory.mktemp("embeddings"), endpoints, api_key=KEY)) as url:
        yield url


def _post(server: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, headers=AUTH, timeout=30)


def _v1(server: str, texts: list[str]) -> list[dict[str, Any]]:
    response = _post(server, "/v1/models/tiny-embed/predict", {"inputs": texts})
    assert response.status_code == 200, response.text
    outputs: list[dict[str, Any]] = response.json()["outputs"]
    return outputs


def _embeddings(server: str, **body: Any) -> dict[str, Any]:
    response = _post(server, "/v1/embeddings", {"model": "tiny-embed", **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _token_ids(embedding_dir: Path, text: str) -> list[int]:
    tokenizer = Tokenizer.from_file(str(embedding_dir / "tokenizer.json"))
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    return ids


def test_v1_predict_returns_one_unit_vector_per_text(server: str) -> None:
    outputs = _v1(server, TEXTS)
    assert [set(output) for output in outputs] == [{"embedding", "tokens"}] * len(TEXTS)
    vectors = np.array([output["embedding"] for output in outputs])
    assert vectors.shape == (len(TEXTS), EMBEDDING_DIMENSION)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert outputs[2]["tokens"] == 3  # [CLS] paris [SEP]
    alone = np.array([_v1(server, [text])[0]["embedding"] for text in TEXTS])  # unpadded, one at a time
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)


def test_the_model_list_and_v2_metadata_show_the_task_and_the_output_shape(server: str) -> None:
    models = {model["name"]: model for model in httpx.get(f"{server}/v1/models", headers=AUTH).json()["models"]}
    assert (models["tiny-embed"]["task"], models["tiny-embed"]["labels"]) == ("sentence-embedding", [])
    assert models["tiny-embed"]["task_settings"]["dimension"] == EMBEDDING_DIMENSION  # the most `dimensions` asked
    assert models["tiny"]["task"] == "text-classification"
    metadata = httpx.get(f"{server}/v2/models/tiny-embed", headers=AUTH).json()
    assert metadata["task"] == "sentence-embedding"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, EMBEDDING_DIMENSION]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_infer_returns_fp32_n_by_dimension(server: str, binary: bool) -> None:
    expected = np.array([output["embedding"] for output in _v1(server, TEXTS)], dtype=np.float32)
    client = triton.InferenceServerClient(server.removeprefix("http://"), network_timeout=30)
    try:
        text = triton.InferInput("text", [len(TEXTS)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary_data=binary)
        outputs = [triton.InferRequestedOutput("embedding", binary_data=binary)]
        result = client.infer("tiny-embed", [text], outputs=outputs, headers=dict(AUTH))  # it adds to the headers
    finally:
        client.close()
    embedding = result.as_numpy("embedding")
    assert (embedding.dtype, embedding.shape) == (np.float32, (len(TEXTS), EMBEDDING_DIMENSION))
    assert result.get_output("embedding")["datatype"] == "FP32"
    np.testing.assert_allclose(embedding, expected, atol=1e-6)


def test_openai_embeddings_as_floats_and_base64_equal_v1(server: str) -> None:
    v1 = _v1(server, TEXTS)
    floats = _embeddings(server, input=TEXTS)
    assert (floats["object"], floats["model"]) == ("list", "tiny-embed")
    assert [(item["object"], item["index"]) for item in floats["data"]] == [("embedding", i) for i in range(4)]
    np.testing.assert_allclose([item["embedding"] for item in floats["data"]],
                               [output["embedding"] for output in v1], atol=1e-6)
    tokens = sum(output["tokens"] for output in v1)
    assert floats["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    encoded = _embeddings(server, input=TEXTS, encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in encoded["data"]]
    assert np.array_equal(decoded, np.array([item["embedding"] for item in floats["data"]], dtype=np.float32))
    one = _embeddings(server, input=TEXTS[2])  # a single string: one embedding
    assert len(one["data"]) == 1 and one["usage"]["prompt_tokens"] == 3
    np.testing.assert_allclose(one["data"][0]["embedding"], v1[2]["embedding"], atol=1e-6)


def test_token_ids_embed_as_their_text(server: str, embedding_dir: Path) -> None:
    v1 = _v1(server, TEXTS[:2])
    ids = [_token_ids(embedding_dir, text) for text in TEXTS[:2]]
    one = _embeddings(server, input=ids[0])  # a list of ids: one text
    several = _embeddings(server, input=ids)  # a list of lists: several texts
    assert len(one["data"]) == 1 and len(several["data"]) == 2
    np.testing.assert_allclose(one["data"][0]["embedding"], v1[0]["embedding"], atol=1e-6)
    np.testing.assert_allclose([item["embedding"] for item in several["data"]],
                               [output["embedding"] for output in v1], atol=1e-6)
    assert several["usage"]["prompt_tokens"] == sum(output["tokens"] for output in v1)  # special tokens included


def test_long_token_ids_are_truncated_or_refused_by_the_endpoints_setting(server: str, embedding_dir: Path) -> None:
    ids = _token_ids(embedding_dir, LONG_TEXT)
    cut = _embeddings(server, input=ids)
    assert cut["usage"]["prompt_tokens"] == 32
    np.testing.assert_allclose(cut["data"][0]["embedding"], _v1(server, [LONG_TEXT])[0]["embedding"], atol=1e-6)
    refused = _post(server, "/v1/embeddings", {"model": "strict", "input": [ids]})
    assert refused.status_code == 400
    assert refused.json() == _error(400, "input[0] is 92 tokens long, more than the model's maximum of 32", "input")


def test_dimensions_keep_the_first_values_renormalised(server: str) -> None:
    full = np.array([output["embedding"] for output in _v1(server, TEXTS[:2])])
    short = np.array([item["embedding"] for item in _embeddings(server, input=TEXTS[:2], dimensions=8)["data"]])
    assert short.shape == (2, 8)
    np.testing.assert_allclose(short, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-5)
    whole = _embeddings(server, input=TEXTS[:1], dimensions=EMBEDDING_DIMENSION)["data"][0]["embedding"]
    np.testing.assert_allclose(whole, full[0], atol=1e-6)


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


SHAPES = "should be a string, a list of strings, a list of token ids or a list of lists of token ids (lists not empty)"


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"model": "tiny", "input": "a"}, 400, _error(
            400, "model 'tiny' serves text-classification, not sentence-embedding; GET /v1/models lists each model's "
            "task", "model")),
        ({"model": "nope", "input": "a"}, 404, _error(
            404, "model 'nope' is not served; GET /v1/models lists the served models", code="model_not_found")),
        ({"model": "tiny-embed", "input": []}, 400, _error(400, f"input: {SHAPES}", "input")),
        ({"model": "tiny-embed", "input": ["a", 5]}, 400, _error(400, f"input: {SHAPES}", "input")),
        ({"model": "tiny-embed", "input": [True]}, 400, _error(400, f"input: {SHAPES}", "input")),
        ({"model": "tiny-embed", "input": ""}, 400, _error(400, "input[0] is empty", "input")),
        ({"model": "tiny-embed", "input": ["paris", " "]}, 400, _error(400, "input[1] is empty", "input")),
        ({"model": "tiny-embed", "input": [[]]}, 400, _error(400, "input[0] is empty", "input")),
        ({"model": "tiny-embed", "input": [[5], []]}, 400, _error(400, "input[1] is empty", "input")),
        ({"model": "tiny-embed", "input": [5, 46]}, 400, _error(
            400, "input[0] has token ids outside the model's vocabulary (0 to 45): [46]", "input")),
        ({"model": "tiny-embed", "input": "a", "dimensions": 0}, 400, _error(
            400, "dimensions: Input should be greater than or equal to 1", "dimensions")),
        ({"model": "tiny-embed", "input": "a", "dimensions": 33}, 400, _error(
            400, "dimensions must be between 1 and 32, the model's dimension; got 33", "dimensions")),
        ({"model": "tiny-embed", "input": "a", "encoding_format": "int8"}, 400, _error(
            400, "encoding_format: Input should be 'float' or 'base64'", "encoding_format")),
        ({"model": "tiny-embed", "input": "a", "top_k": 1}, 400, _error(
            400, "top_k: Extra inputs are not permitted", "top_k")),
        ({"input": "a"}, 400, _error(400, "model: Field required", "model")),
        ({"model": "tiny-embed", "input": ["a"] * 9}, 413, _error(
            413, "9 inputs; model 'tiny-embed' takes at most 8 per request")),
    ],
)
def test_refusals_come_in_openais_shape(server: str, body: dict[str, Any], status: int, expected: Any) -> None:
    response = _post(server, "/v1/embeddings", body)
    assert (response.status_code, response.json()) == (status, expected)


def test_other_refusals_in_openais_shape_and_v1_unchanged(server: str) -> None:
    unauthorized = httpx.post(f"{server}/v1/embeddings", json={"model": "tiny-embed", "input": "a"})
    assert unauthorized.status_code == 401 and unauthorized.headers["www-authenticate"] == "Bearer"
    assert unauthorized.json() == _error(401, "missing API key: send Authorization: Bearer <key>",
                                         code="invalid_api_key")
    broken = httpx.post(f"{server}/v1/embeddings", content=b'{"model": ',
                        headers={**AUTH, "Content-Type": "application/json"})
    assert (broken.status_code, broken.json()) == (400, _error(400, "body is not valid JSON: Expecting value"))
    too_large = httpx.post(f"{server}/v1/embeddings", content=b" " * (2**20 + 1),
                           headers={**AUTH, "Content-Type": "application/json"})
    assert (too_large.status_code, too_large.json()) == (413, _error(413, "request body larger than 1048576 bytes"))
    wrong_method = httpx.get(f"{server}/v1/embeddings", headers=AUTH)
    assert (wrong_method.status_code, wrong_method.json()) == (405, _error(405, "Method Not Allowed"))
    v1 = _post(server, "/v1/models/tiny-embed/predict", {"inputs": [" "]})  # v1 keeps its own shape and status
    assert (v1.status_code, v1.json()) == (422, {"detail": "inputs[0] is empty"})


def _requests(server: str, model: str) -> dict[str, float]:
    families = text_string_to_metric_families(httpx.get(f"{server}/metrics").text)
    counts = next(family for family in families if family.name == "oberta_requests")
    return {sample.labels["status"]: sample.value for sample in counts.samples
            if sample.name == "oberta_requests_total" and sample.labels["model"] == model}


def test_requests_are_counted_under_the_model_the_body_names(server: str) -> None:
    before, unknown = _requests(server, "strict"), _requests(server, "_unknown")
    _embeddings(server, model="strict", input=TEXTS)
    _post(server, "/v1/embeddings", {"model": "strict", "input": "a", "dimensions": 0})
    _post(server, "/v1/embeddings", {"model": "not-served", "input": "a"})
    after = _requests(server, "strict")
    assert (after.get("200", 0) - before.get("200", 0), after.get("400", 0) - before.get("400", 0)) == (1, 1)
    assert _requests(server, "_unknown").get("404", 0) - unknown.get("404", 0) == 1


def test_the_official_openai_client(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=30)
    v1 = _v1(server, TEXTS)
    expected = np.array([output["embedding"] for output in v1])
    tokens = sum(output["tokens"] for output in v1)

    default = client.embeddings.create(model="tiny-embed", input=TEXTS)  # the client asks for base64 and decodes it
    assert [item.index for item in default.data] == [0, 1, 2, 3]
    np.testing.assert_allclose([item.embedding for item in default.data], expected, atol=1e-6)
    assert (default.model, default.usage.prompt_tokens, default.usage.total_tokens) == ("tiny-embed", tokens, tokens)

    floats = client.embeddings.create(model="tiny-embed", input=TEXTS, encoding_format="float")
    np.testing.assert_allclose([item.embedding for item in floats.data], expected, atol=1e-6)

    short = client.embeddings.create(model="tiny-embed", input=TEXTS[0], dimensions=8)
    np.testing.assert_allclose(short.data[0].embedding, expected[0, :8] / np.linalg.norm(expected[0, :8]), atol=1e-5)
    assert short.usage.prompt_tokens == v1[0]["tokens"]

    with pytest.raises(openai.NotFoundError) as not_found:
        client.embeddings.create(model="nope", input="paris")
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="not sentence-embedding") as wrong_task:
        client.embeddings.create(model="tiny", input="paris")
    assert wrong_task.value.param == "model"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="tiny-embed", input="paris"
        )
