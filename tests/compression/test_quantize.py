"""Static INT8 per engine: zeros stay zeros, chosen layers stay FP32, every calibration method runs, and the
integer rewrite computes exact products for weight layers and attention products alike."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from compression.export import export_onnx
from compression.pruning.pruner import Pruner, find_layers
from compression.quantize import integer_matmuls, quantize_for_engine, weight_sparsity
from compression.recipe import EngineQuantization, QuantizationRecipe
from service.runtime.engines.base import EngineOptions
from service.runtime.engines.deepsparse_engine import deepsparse_support
from tests.tiny_models import tiny_classifier, tiny_tokenizer

DEEPSPARSE_USABLE, DEEPSPARSE_REASON = deepsparse_support()
needs_deepsparse = pytest.mark.skipif(not DEEPSPARSE_USABLE, reason=DEEPSPARSE_REASON)


def _calibration(length: int = 12) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "input_ids": rng.integers(5, 40, (4, length), dtype=np.int64),
            "attention_mask": np.ones((4, length), dtype=np.int64),
            "token_type_ids": np.zeros((4, length), dtype=np.int64),
        }
        for _ in range(3)
    ]


@pytest.fixture(scope="module")
def sparse_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_classifier("bert")
    Pruner(find_layers(model), scorer="magnitude", scope="per-layer", group=4).prune(0.75)
    path = tmp_path_factory.mktemp("quantize") / "fp32.onnx"
    with torch.no_grad():
        export_onnx(model, tiny_tokenizer("bert"), path)
    return path


def _static(engine: str) -> EngineQuantization:
    """The engine's static-form settings: the recipe default for DeepSparse, the static form for ONNX Runtime."""
    return QuantizationRecipe.model_validate({}).deepsparse if engine == "deepsparse" else (
        EngineQuantization.model_validate({}))


def _quantized_weights(path: Path) -> list[onnx.TensorProto]:
    """The weight initializers of the INT8 products (QLinearMatMul or MatMulInteger) of a graph."""
    graph = onnx.load(str(path)).graph
    initializers = {t.name: t for t in graph.initializer}
    names = [n.input[3] if n.op_type == "QLinearMatMul" else n.input[1] for n in graph.node
             if n.op_type in ("QLinearMatMul", "MatMulInteger")]
    return [initializers[name] for name in names if name in initializers]


@pytest.mark.parametrize("engine", ["deepsparse", "onnxruntime"])
@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_int8_keeps_sparsity_and_runs(sparse_fp32: Path, tmp_path: Path, engine: str, method: str) -> None:
    out = quantize_for_engine(sparse_fp32, tmp_path / "int8.onnx", engine, _calibration(), method, _static(engine))
    measured = weight_sparsity(out)
    assert measured["matrices"] == 12
    # every pruned zero stays zero; a few tiny weights may also round to the zero point
    assert 0.75 <= measured["sparsity"] < 0.76
    expected = onnx.TensorProto.INT8 if engine == "deepsparse" else onnx.TensorProto.UINT8
    weights = _quantized_weights(out)
    assert len(weights) == 12 and all(w.data_type == expected for w in weights)
    product = {"deepsparse": "MatMulInteger", "onnxruntime": "QLinearMatMul"}[engine]
    assert {n.op_type for n in onnx.load(str(out)).graph.node} >= {product}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, _calibration(7)[0])[0].shape == (4, 2)


def test_the_fused_dynamic_form_keeps_sparsity(sparse_fp32: Path, tmp_path: Path) -> None:
    out = quantize_for_engine(sparse_fp32, tmp_path / "fused.onnx", "onnxruntime", [])
    measured = weight_sparsity(out)
    assert measured["matrices"] == 8  # per layer: the packed Q, K, V of QAttention, the attention output, 2 FFN
    assert 0.75 <= measured["sparsity"] < 0.76


@pytest.mark.parametrize("engine", ["deepsparse", "onnxruntime"])
def test_keep_fp32_leaves_the_matching_layers_in_float(sparse_fp32: Path, tmp_path: Path, engine: str) -> None:
    settings = _static(engine).model_copy(update={"keep_fp32": [r"layer\.0/output/dense/"]})
    out = quantize_for_engine(sparse_fp32, tmp_path / "mixed.onnx", engine, _calibration(), settings=settings)
    nodes = onnx.load(str(out)).graph.node
    float_matmuls = [n.name for n in nodes if n.op_type == "MatMul" and "output/dense" in n.name
                     and "attention" not in n.name]
    assert float_matmuls == ["/model/bert/encoder/layer.0/output/dense/MatMul"]
    measured = weight_sparsity(out)
    assert measured["matrices"] == 12 and 0.75 <= measured["sparsity"] < 0.76


@pytest.mark.parametrize("engine", ["deepsparse", "onnxruntime"])
def test_per_channel_gives_each_output_column_its_weight_scale(sparse_fp32: Path, tmp_path: Path,
                                                               engine: str) -> None:
    settings = _static(engine).model_copy(update={"per_channel": True})
    out = quantize_for_engine(sparse_fp32, tmp_path / "per-channel.onnx", engine, _calibration(), settings=settings)
    graph = onnx.load(str(out)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    scales = []  # (weight, the scale its product's result is multiplied by)
    for node in graph.node:
        if node.op_type == "QLinearMatMul" and node.input[3] in initializers:
            scales.append((initializers[node.input[3]], initializers[node.input[4]]))
        elif node.op_type == "MatMulInteger" and node.input[1] in initializers:
            scales.append((initializers[node.input[1]], initializers[f"{node.name.removesuffix('_integer')}_rescale"]))
    assert len(scales) == 12
    assert all(scale.shape == (weight.shape[1],) for weight, scale in scales)
    assert len({float(v) for _, scale in scales for v in scale}) > 12  # columns really differ
    assert 0.75 <= weight_sparsity(out)["sparsity"] < 0.76
    batch = _calibration(9)[1]
    got, expected = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, batch)[0]
                     for p in (out, sparse_fp32))
    np.testing.assert_allclose(got, expected, atol=0.05)


def _product_graph(b_constant: bool = False, consumer: str = "DequantizeLinear") -> onnx.ModelProto:
    """QuantizeLinear(a) and b (a quantized weight, or QuantizeLinear of an activation) → QLinearMatMul →
    ``consumer``: the pattern of a weight layer or of an attention product."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "a_scale"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zero"),
        numpy_helper.from_array(np.array(0.03, dtype=np.float32), "b_scale"),
        numpy_helper.from_array(np.array(120, dtype=np.uint8), "b_zero"),
        numpy_helper.from_array(np.array(0.2, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(np.array(100, dtype=np.uint8), "y_zero"),
    ]
    inputs = [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [2, 3, 5, 4])]
    nodes = [helper.make_node("QuantizeLinear", ["a", "a_scale", "a_zero"], ["aq"], "qa")]
    if b_constant:
        inits.append(numpy_helper.from_array(rng.integers(0, 256, (4, 6)).astype(np.uint8), "bq"))
    else:
        inputs.append(helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [2, 3, 4, 6]))
        nodes.append(helper.make_node("QuantizeLinear", ["b", "b_scale", "b_zero"], ["bq"], "qb"))
    nodes.append(helper.make_node(
        "QLinearMatMul", ["aq", "a_scale", "a_zero", "bq", "b_scale", "b_zero", "y_scale", "y_zero"], ["yq"], "matmul"
    ))
    if consumer == "DequantizeLinear":
        nodes.append(helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["y"], "dq"))
    else:
        nodes.append(helper.make_node("Identity", ["yq"], ["y"], "other"))
    out_type = onnx.TensorProto.FLOAT if consumer == "DequantizeLinear" else onnx.TensorProto.UINT8
    graph = helper.make_graph(
        nodes, "product", inputs, [helper.make_tensor_value_info("y", out_type, [2, 3, 5, 6])], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("b_constant", [False, True], ids=["activations", "weights"])
def test_integer_matmuls_compute_the_exact_integer_product(b_constant: bool) -> None:
    model = _product_graph(b_constant)
    b_quantized = numpy_helper.to_array(model.graph.initializer[-1]) if b_constant else None
    assert integer_matmuls(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node][-3:] == ["MatMulInteger", "Cast", "Mul"]
    assert "DequantizeLinear" not in {n.op_type for n in model.graph.node}
    assert not {"y_scale", "y_zero"} & {t.name for t in model.graph.initializer}  # unused ones are dropped
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(0, 2, (2, 3, 5, 4)).astype(np.float32)}
    if b_quantized is None:
        feeds["b"] = rng.normal(0, 1, (2, 3, 4, 6)).astype(np.float32)
        b_integer = np.clip(np.round(feeds["b"] / 0.03) + 120, 0, 255) - 120
    else:
        b_integer = b_quantized.astype(np.float64) - 120
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    a_integer = np.clip(np.round(feeds["a"] / 0.05) + 128, 0, 255) - 128
    np.testing.assert_allclose(got, (a_integer @ b_integer) * 0.05 * 0.03, rtol=1e-5, atol=1e-6)


def test_integer_matmuls_refuse_unknown_consumers() -> None:
    with pytest.raises(ValueError, match="expected one DequantizeLinear"):
        integer_matmuls(_product_graph(consumer="Identity"))


def test_int8_attention_quantizes_both_attention_products(sparse_fp32: Path, tmp_path: Path) -> None:
    weights_only = EngineQuantization.model_validate({"integer_matmuls": True})
    plain = quantize_for_engine(sparse_fp32, tmp_path / "plain.onnx", "deepsparse", _calibration(),
                                settings=weights_only)
    attention = quantize_for_engine(sparse_fp32, tmp_path / "attention.onnx", "deepsparse", _calibration(),
                                    settings=weights_only.model_copy(update={"int8_attention": True}))
    count = {path: sum(n.op_type == "MatMulInteger" for n in onnx.load(str(path)).graph.node)
             for path in (plain, attention)}
    assert count == {plain: 12, attention: 16}  # plus scores and context in each of 2 layers
    assert "MatMul" not in {n.op_type for n in onnx.load(str(attention)).graph.node}
    assert weight_sparsity(attention) == weight_sparsity(plain)
    batch = _calibration(9)[1]
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, batch)[0]
               for p in (plain, attention, sparse_fp32)]
    np.testing.assert_allclose(outputs[0], outputs[2], atol=0.05)
    np.testing.assert_allclose(outputs[1], outputs[2], atol=0.05)


@needs_deepsparse
def test_deepsparse_runs_its_int8_file_like_onnxruntime(sparse_fp32: Path, tmp_path: Path) -> None:
    from service.runtime.engines.deepsparse_engine import DeepSparseEngine

    path = quantize_for_engine(sparse_fp32, tmp_path / "int8.onnx", "deepsparse", _calibration())
    engine = DeepSparseEngine(path, EngineOptions(max_length=16, max_batch_size=4, threads=1,
                                                  sequence_buckets=(16,), batch_buckets=(4,)))
    assert engine.info()["fraction_of_supported_ops"] > 0
    batch = _calibration(16)[2]
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, batch)[0]
    np.testing.assert_allclose(engine.run(batch)[0], expected, atol=0.02)


def _quantizer_records(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if "onnxruntime" in r.pathname and "quantization" in r.pathname]


def test_the_quantizer_chatter_stays_out_of_the_default_log_level(
    sparse_fp32: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = EngineQuantization(int8_attention=False)  # one "Ignore MatMul" line per attention product
    with caplog.at_level(logging.INFO):
        quantize_for_engine(sparse_fp32, tmp_path / "quiet.onnx", "onnxruntime", _calibration(), settings=settings)
    assert _quantizer_records(caplog.records) == []
    assert "Please consider pre-processing" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        quantize_for_engine(sparse_fp32, tmp_path / "verbose.onnx", "onnxruntime", _calibration(), settings=settings)
    kept = _quantizer_records(caplog.records)
    assert any("Ignore MatMul" in r.getMessage() for r in kept)
    assert any("Please consider pre-processing" in r.getMessage() for r in kept)
    assert {r.levelname for r in kept} == {"DEBUG"}
    assert logging.getLogger().filters == []  # the filter is gone after quantization
