"""The Open Inference Protocol (v2): the official tritonclient over JSON and binary data, and the codec's edge cases."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.api.oip.codec import deserialize_bytes, parse_request, serialize_bytes
from service.runtime.card import ModelCard
from service.runtime.errors import ProtocolError
from service.runtime.tasks.question_answering import v2_signature
from tests.serving import live_server, make_app
from tests.tiny_models import NUM_LABELS, make_tiny_question_answering_dir, make_tiny_token_classifier_dir

LABELS = [f"label_{index}" for index in range(NUM_LABELS)]
TEXTS = ["a gorgeous witty movie", "dull film", "a gorgeous witty movie", "日本語 😀 \u202etxet"]
ONE_TEXT = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}'
PAIRS = [("dull film", "no point at all"), ("great acting", "the plot was boring")]


@pytest.fixture(scope="module")
def server(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server: `tiny` (truncate, at most 8 inputs) and `strict` (reject) over the same model."""
    endpoints: list[dict[str, Any]] = [
        {"model_dir": str(bert_dir), "engine": "onnxruntime", "max_inputs_per_request": 8, "max_wait_ms": 1},
        {"model_dir": str(bert_dir), "name": "strict", "engine": "onnxruntime", "truncation": "reject"},
    ]
    with live_server(make_app(tmp_path_factory.mktemp("oip"), endpoints)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    triton_client = triton.InferenceServerClient(server.removeprefix("http://"), network_timeout=30)
    yield triton_client
    triton_client.close()


def _v1(server: str, inputs: list[Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{server}/v1/models/tiny/predict", json={"inputs": inputs, "top_k": NUM_LABELS})
    assert response.status_code == 200, response.text
    outputs: list[dict[str, Any]] = response.json()["outputs"]
    return outputs


def _labels(result: triton.InferResult) -> list[str]:
    """The label output as str (tritonclient gives bytes for binary data, str for JSON data)."""
    return [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]


def _bytes_input(name: str, texts: list[str], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([text.encode() for text in texts], dtype=np.object_), binary_data=binary)
    return tensor


def test_health_and_metadata_through_tritonclient(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("tiny")
    assert not client.is_model_ready("missing")
    assert client.get_server_metadata() == {"name": "oberta", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    metadata = client.get_model_metadata("tiny")
    assert metadata["platform"] == "onnxruntime"
    assert (metadata["task"], metadata["labels"]) == ("text-classification", LABELS)
    assert metadata["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "text_pair", "datatype": "BYTES", "shape": [-1]},
    ]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("score", "FP32", [-1]),
        ("scores", "FP32", [-1, NUM_LABELS]),
    ]
    with pytest.raises(InferenceServerException, match="model 'missing' is not served"):
        client.get_model_metadata("missing")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_predictions_match_v1(client: triton.InferenceServerClient, server: str, binary: bool) -> None:
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("label", "score", "scores")]
    result = client.infer("tiny", [_bytes_input("text", TEXTS, binary)], outputs=outputs, request_id="req-1")
    expected = _v1(server, TEXTS)
    assert _labels(result) == [answer["label"] for answer in expected]
    np.testing.assert_allclose(result.as_numpy("score"), [answer["score"] for answer in expected], rtol=1e-5)
    scores = result.as_numpy("scores")
    assert scores.shape == (len(TEXTS), NUM_LABELS) and scores.dtype == np.float32
    for row, answer in zip(scores, expected, strict=True):
        np.testing.assert_allclose(row, [dict((e["label"], e["score"]) for e in answer["labels"])[x] for x in LABELS],
                                   rtol=1e-5)
    assert result.get_response()["id"] == "req-1"
    assert result.get_response()["model_name"] == "tiny"
    has_binary = "parameters" in result.get_output("label")
    assert has_binary == binary


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_pairs_and_default_outputs(
    client: triton.InferenceServerClient, server: str, binary: bool
) -> None:
    inputs = [
        _bytes_input("text", [text for text, _ in PAIRS], binary),
        _bytes_input("text_pair", [pair for _, pair in PAIRS], binary),
    ]
    result = client.infer("tiny", inputs)  # no outputs named: all of them, as binary data
    expected = _v1(server, [list(pair) for pair in PAIRS])
    assert _labels(result) == [answer["label"] for answer in expected]
    np.testing.assert_allclose(result.as_numpy("score"), [answer["score"] for answer in expected], rtol=1e-5)
    assert all("parameters" in output for output in result.get_response()["outputs"])


def test_tritonclient_with_a_subset_of_outputs_and_errors(client: triton.InferenceServerClient) -> None:
    good = [_bytes_input("text", ["good"], True)]
    result = client.infer("tiny", good, outputs=[triton.InferRequestedOutput("score")])
    assert [output["name"] for output in result.get_response()["outputs"]] == ["score"]
    assert result.as_numpy("label") is None
    with pytest.raises(InferenceServerException, match="unknown outputs"):
        client.infer("tiny", [_bytes_input("text", ["good"], True)], outputs=[triton.InferRequestedOutput("logits")])
    with pytest.raises(InferenceServerException, match="do not match the model's"):
        client.infer("tiny", [_bytes_input("sentence", ["good"], True)])
    with pytest.raises(InferenceServerException, match="input 'text' element 1 is empty"):
        client.infer("tiny", [_bytes_input("text", ["good", " "], False)])
    with pytest.raises(InferenceServerException, match="9 inputs; model 'tiny' takes at most 8"):
        client.infer("tiny", [_bytes_input("text", ["good"] * 9, True)])
    with pytest.raises(InferenceServerException, match="more than the model's maximum of 64"):
        client.infer("strict", [_bytes_input("text", ["good movie " * 40], True)])
    assert client.infer("tiny", [_bytes_input("text", ["good movie " * 40], True)]).as_numpy("label").shape == (1,)


@pytest.fixture(scope="module")
def task_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server with a question-answering model and a token classifier that tags every word B-PER."""
    root = tmp_path_factory.mktemp("tasks")
    endpoints = [
        {"model_dir": str(make_tiny_question_answering_dir(root)), "engine": "onnxruntime"},
        {"model_dir": str(make_tiny_token_classifier_dir(root, "tiny-ner", {"B-PER": 6.0})), "engine": "onnxruntime"},
    ]
    with live_server(make_app(root, endpoints)) as url:
        yield url


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_question_answering_and_token_classification(task_server: str, binary: bool) -> None:
    client = triton.InferenceServerClient(task_server.removeprefix("http://"))
    try:
        questions = ["who built a palace?", "where did louis live?"]
        contexts = ["john smithson built a palace near paris.", "the king of france lived in versailles near paris."]
        metadata = client.get_model_metadata("tiny-qa")
        assert [tensor["name"] for tensor in metadata["inputs"]] == ["question", "context"]
        assert [tensor["name"] for tensor in metadata["outputs"]] == ["answer", "score", "start", "end"]
        inputs = [_bytes_input("question", questions, binary), _bytes_input("context", contexts, binary)]
        names = ("answer", "score", "start", "end")
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names]
        result = client.infer("tiny-qa", inputs, outputs=outputs)
        body = {"inputs": [{"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)]}
        expected = httpx.post(f"{task_server}/v1/models/tiny-qa/predict", json=body).json()["outputs"]
        answers = [a.decode() if isinstance(a, bytes) else a for a in result.as_numpy("answer")]
        assert answers == [answer["answer"] for answer in expected]
        assert result.as_numpy("start").tolist() == [answer["start"] for answer in expected]
        assert result.as_numpy("end").tolist() == [answer["end"] for answer in expected]
        np.testing.assert_allclose(result.as_numpy("score"), [answer["score"] for answer in expected], rtol=1e-5)

        texts = ["john smithson visited versailles", "paris"]
        result = client.infer("tiny-ner", [_bytes_input("text", texts, binary)])
        expected = httpx.post(f"{task_server}/v1/models/tiny-ner/predict", json={"inputs": texts}).json()["outputs"]
        entities = [json.loads(element) for element in result.as_numpy("entities")]
        assert entities == [answer["entities"] for answer in expected]
        assert [entity["text"] for entity in entities[0]] == ["john", "smithson", "visited", "versailles"]
    finally:
        client.close()


def _bytes_tensor(name: str, texts: list[str]) -> dict[str, Any]:
    return {"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": texts}


def test_input_errors_name_the_tensor_and_the_element(task_server: str, server: str) -> None:
    questions = _bytes_tensor("question", ["who?", "where?"])
    context = httpx.post(f"{task_server}/v2/models/tiny-qa/infer",
                         json={"inputs": [questions, _bytes_tensor("context", ["john did", " "])]})
    pairs = [_bytes_tensor("text", ["good", "fine"]), _bytes_tensor("text_pair", ["ok", ""])]
    pair = httpx.post(f"{server}/v2/models/tiny/infer", json={"inputs": pairs})
    long_pair = httpx.post(f"{server}/v2/models/strict/infer", json={"inputs": [
        _bytes_tensor("text", ["good"]), _bytes_tensor("text_pair", ["good movie " * 40])]})
    assert (context.status_code, context.json()) == (400, {"error": "input 'context' element 1 is empty"})
    assert (pair.status_code, pair.json()) == (400, {"error": "input 'text_pair' element 1 is empty"})
    assert (long_pair.status_code, long_pair.json()) == (400, {
        "error": "inputs 'text' and 'text_pair' element 0 is 84 tokens long, more than the model's maximum of 64"})


def _raw(server: str, body: bytes, headers: dict[str, str] | None = None, model: str = "tiny") -> httpx.Response:
    return httpx.post(f"{server}/v2/models/{model}/infer", content=body, headers=headers or {})


def _binary_request(elements: list[bytes], extra: dict[str, Any]) -> tuple[bytes, str]:
    data = serialize_bytes(elements)
    header = {
        "inputs": [{"name": "text", "shape": [len(elements)], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)}}],
        **extra,
    }
    encoded = json.dumps(header).encode()
    return encoded + data, str(len(encoded))


def test_raw_binary_request_and_binary_response_layout(server: str) -> None:
    body, length = _binary_request(["é café".encode(), b"good"], extra={"outputs": [
        {"name": "label", "parameters": {"binary_data": True}}, {"name": "score"}]})
    response = _raw(server, body, {"Inference-Header-Content-Length": length})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header_length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:header_length])
    label, score = header["outputs"]
    assert (label["shape"], score["shape"]) == ([2], [2])
    assert "data" not in label and len(score["data"]) == 2
    blob = response.content[header_length:]
    assert len(blob) == label["parameters"]["binary_data_size"]
    assert [element.decode() for element in deserialize_bytes(blob, "label")] == [
        answer["label"] for answer in _v1(server, ["é café", "good"])
    ]


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{not json", {}, "invalid inference request"),
        (b"", {}, "invalid inference request"),
        (b'{"inputs": []}', {}, "at least 1 item"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}', {}, "must be BYTES"),
        (b'{"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}', {}, "shape [2] holds 2"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [5]}]}', {}, "must be a string"),
        (b'{"inputs": [{"name": "text", "shape": [-1], "datatype": "BYTES", "data": ["a"]}]}', {}, "greater than"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}', {}, "neither data nor"),
        (b'{"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}', {}, "no elements"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}', {}, "Invalid JSON"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},'
         b' {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["b"]}]}', {}, "given twice"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},'
         b' {"name": "text_pair", "shape": [2], "datatype": "BYTES", "data": ["b", "c"]}]}', {}, "as many elements"),
        (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": "x"}}]}',
         {}, "input 'text': binary_data_size must be a non-negative integer, not 'x'"),
        (ONE_TEXT[:-1] + b', "parameters": {"binary_data_output": "yes"}}', {},
         "parameter binary_data_output must be true or false, not 'yes'"),
        (ONE_TEXT[:-1] + b', "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}', {},
         "output 'label': parameter binary_data must be true or false, not 1"),
        (ONE_TEXT[:-1] + b', "outputs": [{"name": "label"}, {"name": "score"}, {"name": "label"}]}', {},
         "outputs ['label'] are asked for more than once"),
        (ONE_TEXT, {"Inference-Header-Content-Length": "999"}, "not a length within"),
        (ONE_TEXT + b"xyz", {"Inference-Header-Content-Length": str(len(ONE_TEXT))}, "3 bytes of binary data follow"),
    ],
)
def test_malformed_requests_get_400_with_an_error(
    server: str, body: bytes, headers: dict[str, str], message: str
) -> None:
    response = _raw(server, body, headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("elements_data", "size", "message"),
    [
        (serialize_bytes([b"\xff\xfe bad"]), None, "not valid UTF-8"),
        (struct.pack("<I", 50) + b"short", None, "runs past"),
        (b"\x01\x00", None, "ends inside an element length"),
        (serialize_bytes([b"ok"]), 100, "exceeds the binary data"),
    ],
)
def test_bad_binary_data_gets_400(server: str, elements_data: bytes, size: int | None, message: str) -> None:
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": size or len(elements_data)}}]}).encode()
    response = _raw(server, header + elements_data, {"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_an_unknown_model_gets_the_same_message_on_every_route(server: str) -> None:
    message = "model 'nope' is not served; GET /v1/models lists the served models"
    for response in [httpx.post(f"{server}/v2/models/nope/infer", content=ONE_TEXT),
                     httpx.get(f"{server}/v2/models/nope"), httpx.get(f"{server}/v2/models/nope/ready")]:
        assert (response.status_code, response.json()) == (404, {"error": message})
    v1 = httpx.post(f"{server}/v1/models/nope/predict", json={"inputs": ["a"]})
    assert (v1.status_code, v1.json()) == (404, {"detail": message})


def test_the_openapi_document_gives_v2_routes_400_in_the_error_shape_and_no_422(server: str) -> None:
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for operation in operations.values():
            if path.startswith("/v2"):
                assert "422" not in operation["responses"], path
    infer = paths["/v2/models/{name}/infer"]["post"]["responses"]
    for status in ("400", "default"):
        schema = infer[status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("oip__schemas__ErrorBody"), status


def test_v2_errors_use_the_error_shape(server: str) -> None:
    for response, status in [
        (httpx.post(f"{server}/v2/models/nope/infer", json={}), 404),
        (httpx.get(f"{server}/v2/models/nope"), 404),
        (httpx.get(f"{server}/v2/models/nope/ready"), 404),
        (httpx.get(f"{server}/v2/nothing/here"), 404),
        (httpx.get(f"{server}/v2/models/tiny/infer"), 405),
        (httpx.post(f"{server}/v2/models/tiny/infer", content=b"x", headers={"Content-Encoding": "gzip"}), 415),
    ]:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}


def test_codec_round_trips_and_nested_json_data() -> None:
    elements = [b"", b"a", "ü😀".encode(), b"\x00" * 3]
    assert deserialize_bytes(serialize_bytes(elements), "x") == elements
    parsed = parse_request(
        b'{"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]}]}', None
    )
    assert parsed.elements == {"text": ["a", "b"]}
    for length in ("-1", "²", "1e3", ""):
        with pytest.raises(ProtocolError, match="not a length"):
            parse_request(b"{}", length)


def test_question_answering_signature() -> None:
    card = ModelCard(name="qa", task="question-answering", labels=[], max_length=64, architecture="bert",
                     inputs=["input_ids"], files={"onnxruntime": "model.onnx"})
    signature = v2_signature(card)
    assert signature.task_inputs({"question": ["who?"], "context": ["john did"]}) == [
        {"question": "who?", "context": "john did"}
    ]
    assert signature.build_options({"max_answer_length": 5}).max_answer_length == 5
    with pytest.raises(ProtocolError, match="max_answer_length"):
        signature.build_options({"max_answer_length": "long"})
    answers = [{"answer": "john", "score": 0.5, "start": 0, "end": 4}]
    tensors = {spec.name: data for spec, data in signature.output_arrays(answers, signature.outputs)}
    assert tensors["answer"].tolist() == ["john"]
    assert (tensors["start"].dtype, tensors["end"].tolist()) == (np.int64, [4])
