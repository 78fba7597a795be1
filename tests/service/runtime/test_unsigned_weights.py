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


def _float(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, np.float32), name)


def _operator_model(op: str, weight: np.ndarray) -> tuple[onnx.ModelProto, TensorProto.DataType]:
    """One quantized product with the int8 initializer W [K, N] as its weight; its input A (uint8 [rows, K], float
    for DynamicQuantizeMatMul) and the type of its output. Scales are powers of two, so float results are exact."""
    inputs = {
        "QLinearMatMul": ["A", "a_scale", "a_zero", "W", "w_scale", "w_zero", "y_scale", "y_zero"],
        "QGemm": ["A", "a_scale", "a_zero", "W", "w_scale", "w_zero"],
        "MatMulIntegerToFloat": ["A", "W", "a_scale", "w_scale", "a_zero", "w_zero"],
        "DynamicQuantizeMatMul": ["A", "W", "w_scale", "w_zero"],
    }[op]
    initializers = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
                    numpy_helper.from_array(np.array(0, np.uint8), "a_zero"), _float("a_scale", 2.0**-4),
                    _float("w_scale", 2.0**-6), _float("y_scale", 16.0),
                    numpy_helper.from_array(np.array(128, np.uint8), "y_zero")]
    initializers = [tensor for tensor in initializers if tensor.name in inputs]
    domain = "" if op == "QLinearMatMul" else "com.microsoft"
    a_type = TensorProto.FLOAT if op == "DynamicQuantizeMatMul" else TensorProto.UINT8
    y_type = TensorProto.UINT8 if op == "QLinearMatMul" else TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node(op, inputs, ["Y"], domain=domain)], "g",
                              [helper.make_tensor_value_info("A", a_type, [None, K])],
                              [helper.make_tensor_value_info("Y", y_type, [None, N])], initializers)
    opsets = [helper.make_opsetid("", 14), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets), y_type


OPERATORS = ["QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"]


@pytest.mark.parametrize("op", OPERATORS)
def test_each_operators_rewritten_weights_keep_its_outputs(op: str) -> None:
    """Weights within +-60 cannot saturate: the rewritten graph computes exactly what the original does."""
    rng = np.random.default_rng(2)
    model, y_type = _operator_model(op, rng.integers(-60, 61, size=(K, N), dtype=np.int8))
    activations = rng.integers(0, 256, size=(4, K), dtype=np.uint8)
    feed = {"A": activations.astype(np.float32) / 16 if y_type == TensorProto.FLOAT and op.startswith("Dynamic")
            else activations}
    before = _run(model, feed)
    assert unsigned_weights(model) == 1
    assert np.array_equal(_run(model, feed), before)


@pytest.mark.parametrize("op", ["QGemm", "MatMulIntegerToFloat", "QLinearMatMul"])
def test_each_operators_rewritten_weights_give_the_exact_products(op: str) -> None:
    activations, weight, exact = _saturating_case()
    model, y_type = _operator_model(op, weight)
    assert unsigned_weights(model) == 1
    scaled = exact * 2.0**-10  # a_scale x w_scale
    if y_type == TensorProto.UINT8:  # requantized with y_scale 16 around 128
        expected = np.clip(np.round(scaled / 16) + 128, 0, 255)
        assert expected.min() > 0 and expected.max() < 255  # not clipped: the products decide every output
        assert np.abs(_run(model, {"A": activations}).astype(np.int64) - expected).max() <= 1  # ties may round up
    else:
        np.testing.assert_array_equal(_run(model, {"A": activations}), scaled.astype(np.float32))
