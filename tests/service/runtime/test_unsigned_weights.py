"""INT8 weights as uint8 + 128: the same integers, products ONNX Runtime computes exactly on CPUs without VNNI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.runtime.card import load_card
from service.runtime.engines import registry as engine_registry
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from service.runtime.engines.registry import INEXACT_DEEPSPARSE, choose_engine
from service.runtime.graph import unsigned_weights as module
from service.runtime.graph.unsigned_weights import products_saturate, unsigned_weights

K, N = 64, 8


def _matmul_integer(weight: np.ndarray, zero_point: np.ndarray | None) -> onnx.ModelProto:
    """Y = (A - a_zero_point) @ (W - w_zero_point), A uint8 [rows, K], W an int8 initializer [K, N]."""
    initializers = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(0, np.uint8), "a_zero")]
    inputs = ["A", "W", "a_zero"]
    if zero_point is not None:
        initializers.append(numpy_helper.from_array(zero_point, "w_zero"))
        inputs.append("w_zero")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", inputs, ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, N])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0])


def _saturating_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations at 255 against weights near +-127: each pair of products overflows 16 bits."""
    rng = np.random.default_rng(0)
    weight = rng.choice(np.array([-128, -127, 120, 127], dtype=np.int8), size=(K, N))
    activations = rng.choice(np.array([250, 255], dtype=np.uint8), size=(4, K))
    exact = activations.astype(np.int64) @ weight.astype(np.int64)
    return activations, weight, exact


def test_the_rewritten_weights_give_the_exact_products() -> None:
    activations, weight, exact = _saturating_case()
    model = _matmul_integer(weight, np.zeros(N, np.int8))
    assert unsigned_weights(model) == 1
    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    assert stored["W"].dtype == np.uint8 and stored["w_zero"].dtype == np.uint8
    assert np.array_equal(stored["W"].astype(np.int64) - stored["w_zero"], weight)  # the same integers
    assert np.array_equal(_run(model, {"A": activations}), exact)


def test_the_cpu_check_agrees_with_what_onnx_runtime_computes_here() -> None:
    activations, weight, exact = _saturating_case()
    computed = _run(_matmul_integer(weight, np.zeros(N, np.int8)), {"A": activations})
    assert products_saturate() == (not np.array_equal(computed, exact))


def test_a_missing_zero_point_becomes_128_and_a_shared_one_moves_once() -> None:
    activations, weight, exact = _saturating_case()
    model = _matmul_integer(weight, None)
    assert unsigned_weights(model) == 1
    assert np.array_equal(_run(model, {"A": activations}), exact)

    shared = _matmul_integer(weight, np.array(3, np.int8))
    graph = shared.graph
    other = np.flip(weight, axis=0).copy()
    graph.initializer.append(numpy_helper.from_array(other, "W2"))
    graph.node.append(helper.make_node("MatMulInteger", ["A", "W2", "a_zero", "w_zero"], ["Y2"]))
    graph.output.append(helper.make_tensor_value_info("Y2", TensorProto.INT32, [None, N]))
    assert unsigned_weights(shared) == 2
    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    assert int(stored["w_zero"]) == 131
    first, second = ort.InferenceSession(shared.SerializeToString()).run(None, {"A": activations})
    wide = activations.astype(np.int64)
    assert np.array_equal(first, wide @ (weight.astype(np.int64) - 3))
    assert np.array_equal(second, wide @ (other.astype(np.int64) - 3))


def test_a_weight_that_another_node_reads_is_left_as_it_is() -> None:
    _, weight, _ = _saturating_case()
    model = _matmul_integer(weight, np.zeros(N, np.int8))
    model.graph.node.append(helper.make_node("Cast", ["W"], ["W_float"], to=TensorProto.FLOAT))
    assert unsigned_weights(model) == 0
    assert all(tensor.data_type == TensorProto.INT8 for tensor in model.graph.initializer if tensor.name == "W")


def test_qattention_weights_keep_their_outputs() -> None:
    """QAttention reads its weight at input 1 and the weight's zero point at input 7."""
    hidden, heads = 8, 2
    rng = np.random.default_rng(1)
    weight = rng.integers(-60, 60, size=(hidden, 3 * hidden), dtype=np.int8)
    initializers = [numpy_helper.from_array(weight, "W"),
                    numpy_helper.from_array(rng.normal(size=3 * hidden).astype(np.float32), "bias"),
                    numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
                    numpy_helper.from_array(np.full(3 * hidden, 0.02, np.float32), "w_scale"),
                    numpy_helper.from_array(np.array(100, np.uint8), "x_zero"),
                    numpy_helper.from_array(rng.integers(-3, 3, size=3 * hidden, dtype=np.int8), "w_zero")]
    node = helper.make_node("QAttention", ["X", "W", "bias", "x_scale", "w_scale", "", "x_zero", "w_zero"], ["Y"],
                            domain="com.microsoft", num_heads=heads)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.UINT8, [1, 5, hidden])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 5, hidden])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14),
                                                    helper.make_opsetid("com.microsoft", 1)])
    feed = {"X": rng.integers(80, 120, size=(1, 5, hidden), dtype=np.uint8)}  # far from saturating
    before = _run(model, feed)
    assert unsigned_weights(model) == 1
    np.testing.assert_allclose(_run(model, feed), before, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("flags", "saturate"), [("fpu avx2 fma", True), ("fpu avx2 avx512f avx512_vnni", False),
                                                 ("fpu avx2 avx_vnni", False)])
def test_the_cpu_check_reads_the_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str,
                                       saturate: bool) -> None:
    monkeypatch.setattr(module.platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert products_saturate(cpuinfo) == saturate
    monkeypatch.setattr(module.platform, "machine", lambda: "aarch64")
    assert not products_saturate(tmp_path / "other")


def test_the_engine_says_when_it_rewrote_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    activations, weight, exact = _saturating_case()
    path = tmp_path / "int8.onnx"
    onnx.save(_matmul_integer(weight, np.zeros(N, np.int8)), str(path))
    monkeypatch.setattr(module, "products_saturate", lambda: True)
    engine = OnnxRuntimeEngine(path, threads=1)
    assert engine.info()["exact_int8"] == "1 int8 weights run as uint8 (no VNNI on this CPU)"
    assert np.array_equal(engine.run({"A": activations})[0], exact)
    assert "exact_int8" not in OnnxRuntimeEngine(path, threads=1, exact_int8=False).info()  # the file as it is
    monkeypatch.setattr(module, "products_saturate", lambda: False)
    assert "exact_int8" not in OnnxRuntimeEngine(path, threads=1).info()


def test_auto_serves_int8_models_on_onnx_runtime_where_products_saturate(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_registry, "_deepsparse_support", lambda: (True, "deepsparse supports this CPU"))
    monkeypatch.setattr(engine_registry, "products_saturate", lambda: True)
    card = load_card(bert_dir)
    assert choose_engine("auto", card)[0] == "deepsparse"  # an FP32 model computes no integer products
    int8 = card.model_copy(update={"precision": "int8"})
    assert choose_engine("auto", int8) == ("onnxruntime", INEXACT_DEEPSPARSE)
    assert choose_engine("deepsparse", int8) == ("deepsparse", "configured")
    monkeypatch.setattr(engine_registry, "products_saturate", lambda: False)
    assert choose_engine("auto", int8)[0] == "deepsparse"


def test_an_unreadable_file_is_left_to_onnx_runtime_to_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "products_saturate", lambda: True)
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"this is not an ONNX file")
    assert module.exact_source(corrupt) == (str(corrupt), 0)
