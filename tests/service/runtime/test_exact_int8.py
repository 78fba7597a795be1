"""INT8 products ONNX Runtime computes exactly also on CPUs without VNNI, where the CPU check turns that on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.runtime.card import load_card
from service.runtime.cpu import products_saturate
from service.runtime.engines import onnxruntime_engine
from service.runtime.engines import registry as engine_registry
from service.runtime.engines.onnxruntime_engine import EXACT_PRODUCTS, OnnxRuntimeEngine
from service.runtime.engines.registry import INEXACT_DEEPSPARSE, choose_engine

K, N = 64, 8
A_SCALE, W_SCALE = 2.0**-4, 2.0**-6
"""Powers of two: float results of integer products are exact."""
OPSETS = [helper.make_opsetid("", 14), helper.make_opsetid("com.microsoft", 1)]


def _saturating_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations at 250-255 against weights near +-127: each pair of products overflows 16 bits."""
    rng = np.random.default_rng(0)
    weight = rng.choice(np.array([-128, -127, 120, 127], dtype=np.int8), size=(K, N))
    activations = rng.choice(np.array([250, 255], dtype=np.uint8), size=(4, K))
    activations[0, 0] = 255
    exact = activations.astype(np.int64) @ weight.astype(np.int64)
    return activations, weight, exact


def _tensor(name: str, value: float | int | np.ndarray, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _product_model(op: str, weight: np.ndarray) -> onnx.ModelProto:
    """One quantized product of the int8 initializer W [K, N] (zero point 0): its input A is uint8 [rows, K], float
    for DynamicQuantizeMatMul and the QDQ MatMul; its output Y is float, uint8 for QLinearMatMul (Y scale 16 around
    128), int32 for MatMulInteger."""
    inputs = {
        "MatMulInteger": ["A", "W", "a_zero", "w_zero"],
        "QLinearMatMul": ["A", "a_scale", "a_zero", "W", "w_scale", "w_zero", "y_scale", "y_zero"],
        "QGemm": ["A", "a_scale", "a_zero", "W", "w_scale", "w_zero"],
        "MatMulIntegerToFloat": ["A", "W", "a_scale", "w_scale", "a_zero", "w_zero"],
        "DynamicQuantizeMatMul": ["A", "W", "w_scale", "w_zero"],
    }
    initializers = [numpy_helper.from_array(weight, "W"), _tensor("w_zero", 0, np.int8), _tensor("a_zero", 0, np.uint8),
                    _tensor("a_scale", A_SCALE), _tensor("w_scale", W_SCALE), _tensor("y_scale", 16.0),
                    _tensor("y_zero", 128, np.uint8)]
    if op == "QDQ":  # A float -> QuantizeLinear -> DequantizeLinear -> MatMul <- DequantizeLinear <- W
        nodes = [helper.make_node("QuantizeLinear", ["A", "a_scale", "a_zero"], ["a_q"]),
                 helper.make_node("DequantizeLinear", ["a_q", "a_scale", "a_zero"], ["a_dq"]),
                 helper.make_node("DequantizeLinear", ["W", "w_scale", "w_zero"], ["w_dq"]),
                 helper.make_node("MatMul", ["a_dq", "w_dq"], ["Y"])]
    else:
        domain = "" if op in {"QLinearMatMul", "MatMulInteger"} else "com.microsoft"
        nodes = [helper.make_node(op, inputs[op], ["Y"], domain=domain)]
    read = {name for node in nodes for name in node.input}
    a_type = TensorProto.FLOAT if op in {"DynamicQuantizeMatMul", "QDQ"} else TensorProto.UINT8
    y_type = {"QLinearMatMul": TensorProto.UINT8, "MatMulInteger": TensorProto.INT32}.get(op, TensorProto.FLOAT)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("A", a_type, [None, K])],
                              [helper.make_tensor_value_info("Y", y_type, [None, N])],
                              [tensor for tensor in initializers if tensor.name in read])
    return helper.make_model(graph, opset_imports=OPSETS)


def _engine(model: onnx.ModelProto, tmp_path: Path, exact_int8: bool = True) -> OnnxRuntimeEngine:
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return OnnxRuntimeEngine(path, threads=1, exact_int8=exact_int8)


def _default_run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    """What ONNX Runtime computes with its default options."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0])


@pytest.fixture
def without_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine as it loads files on a CPU without VNNI, whatever this one is."""
    monkeypatch.setattr(onnxruntime_engine, "products_saturate", lambda: True)


def test_the_cpu_check_agrees_with_what_onnx_runtime_computes_here() -> None:
    activations, weight, exact = _saturating_case()
    computed = _default_run(_product_model("MatMulInteger", weight), {"A": activations})
    assert products_saturate() == (not np.array_equal(computed, exact))


@pytest.mark.parametrize("op", ["MatMulInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QDQ",
                                "QLinearMatMul"])
@pytest.mark.usefixtures("without_vnni")
def test_each_operator_gives_the_exact_products(op: str, tmp_path: Path) -> None:
    activations, weight, exact = _saturating_case()
    engine = _engine(_product_model(op, weight), tmp_path)
    float_input = op in {"DynamicQuantizeMatMul", "QDQ"}  # quantized to these integers again: scale 1/16, zero 0
    (computed,) = engine.run({"A": activations * np.float32(A_SCALE) if float_input else activations})
    if op == "MatMulInteger":
        np.testing.assert_array_equal(computed, exact)
    elif op == "QLinearMatMul":  # requantized with Y scale 16 around 128
        expected = np.clip(np.round(exact * A_SCALE * W_SCALE / 16) + 128, 0, 255)
        assert expected.min() > 0 and expected.max() < 255  # not clipped: the products decide every output
        assert np.abs(computed.astype(np.int64) - expected).max() <= 1  # ties may round up
    else:
        np.testing.assert_array_equal(computed, (exact * A_SCALE * W_SCALE).astype(np.float32))


@pytest.mark.usefixtures("without_vnni")
def test_qattention_computes_what_its_weights_stored_as_uint8_compute(tmp_path: Path) -> None:
    """QAttention (weight at input 1, its zero point at input 7) against the same integers written by hand as uint8
    plus 128, whose products ONNX Runtime computes exactly everywhere."""
    hidden, heads = 16, 2
    rng = np.random.default_rng(1)
    weight = rng.choice(np.array([-128, -127, 120, 127], dtype=np.int8), size=(hidden, 3 * hidden))

    def model(weight: np.ndarray, zero_point: np.ndarray) -> onnx.ModelProto:
        initializers = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(zero_point, "w_zero"),
                        _tensor("bias", np.zeros(3 * hidden)), _tensor("x_scale", 2.0**-8),
                        _tensor("w_scale", np.full(3 * hidden, 2.0**-8)), _tensor("x_zero", 0, np.uint8)]
        node = helper.make_node("QAttention", ["A", "W", "bias", "x_scale", "w_scale", "", "x_zero", "w_zero"], ["Y"],
                                domain="com.microsoft", num_heads=heads)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, 5, hidden])],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 5, hidden])], initializers)
        return helper.make_model(graph, opset_imports=OPSETS)

    feed = {"A": rng.choice(np.array([250, 255], dtype=np.uint8), size=(1, 5, hidden))}
    as_uint8 = model((weight.astype(np.int16) + 128).astype(np.uint8), np.full(3 * hidden, 128, np.uint8))
    reference = _default_run(as_uint8, feed)
    signed = model(weight, np.zeros(3 * hidden, np.int8))
    np.testing.assert_array_equal(_engine(signed, tmp_path).run(feed)[0], reference)
    assert products_saturate() == (not np.array_equal(_default_run(signed, feed), reference))


def test_the_engine_says_when_its_products_are_made_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, weight, _ = _saturating_case()
    model = _product_model("MatMulInteger", weight)
    monkeypatch.setattr(onnxruntime_engine, "products_saturate", lambda: True)
    assert EXACT_PRODUCTS in _engine(model, tmp_path).info()["exact_int8"]
    assert "exact_int8" not in _engine(model, tmp_path, exact_int8=False).info()  # the file as users run it
    monkeypatch.setattr(onnxruntime_engine, "products_saturate", lambda: False)
    assert "exact_int8" not in _engine(model, tmp_path).info()  # VNNI: exact as it is, and faster


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
