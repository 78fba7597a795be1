"""Static INT8 per engine: zeros stay zeros, chosen layers stay FP32, every calibration method runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from compression.export import export_onnx
from compression.pruning.pruner import Pruner, find_layers
from compression.quantize import quantize_for_engine, weight_sparsity
from tests.tiny_models import tiny_classifier, tiny_tokenizer


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


@pytest.mark.parametrize("engine", ["deepsparse", "onnxruntime"])
@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_int8_keeps_sparsity_and_runs(sparse_fp32: Path, tmp_path: Path, engine: str, method: str) -> None:
    out = quantize_for_engine(sparse_fp32, tmp_path / "int8.onnx", engine, _calibration(), method)
    measured = weight_sparsity(out)
    assert measured["matrices"] == 12
    # every pruned zero stays zero; a few tiny weights may also round to the zero point
    assert 0.75 <= measured["sparsity"] < 0.76
    weights = {t.name: t.data_type for t in onnx.load(str(out)).graph.initializer}
    signed = engine == "deepsparse"
    expected = onnx.TensorProto.INT8 if signed else onnx.TensorProto.UINT8
    quantized = [n for n in onnx.load(str(out)).graph.node if n.op_type == "QLinearMatMul"]
    assert len(quantized) >= 12
    assert all(weights[n.input[3]] == expected for n in quantized if n.input[3] in weights)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, _calibration(7)[0])[0].shape == (4, 2)


def test_keep_fp32_leaves_the_matching_layers_in_float(sparse_fp32: Path, tmp_path: Path) -> None:
    out = quantize_for_engine(sparse_fp32, tmp_path / "mixed.onnx", "deepsparse", _calibration(),
                              keep_fp32=[r"layer\.0/output/dense/"])
    nodes = onnx.load(str(out)).graph.node
    float_matmuls = [n.name for n in nodes if n.op_type == "MatMul" and "output/dense" in n.name
                     and "attention" not in n.name]
    assert float_matmuls == ["/model/bert/encoder/layer.0/output/dense/MatMul"]
    measured = weight_sparsity(out)
    assert measured["matrices"] == 12 and 0.75 <= measured["sparsity"] < 0.76
