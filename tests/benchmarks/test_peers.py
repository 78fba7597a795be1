"""The dense INT8 peers of `oberta bench engines`, made from a tiny random BERT: built, run, measured interleaved with
the dense FP32 case; the OpenVINO one skipped with a note where its packages are missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks import engines as bench_engines
from benchmarks.artifacts import Artifacts, Shape, add_dense_peers, random_model
from benchmarks.engines import build_cases, measure, summarize
from benchmarks.peer_openvino import MISSING, openvino_missing, openvino_runner
from benchmarks.report import table, with_ratios
from compression.export import export_onnx, sample_inputs
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from tests.tiny_models import WORDS, tiny_tokenizer

SHAPE = Shape("tiny", layers=2, hidden=32, heads=2, intermediate=64)  # the default BERT vocabulary: any benchmark id
TEXTS = tuple(" ".join(WORDS[start : start + 6]) for start in range(0, 36, 3))
LENGTH = 16
needs_openvino = pytest.mark.skipif(openvino_missing() is not None, reason=MISSING)


def _tiny_artifacts(workdir: Path) -> tuple[Artifacts, list[str]]:
    model = random_model(SHAPE)
    tokenizer = tiny_tokenizer()
    fp32 = workdir / "dense-fp32.onnx"
    names = export_onnx(model, tokenizer, fp32)
    artifacts = Artifacts(SHAPE, model, {"dense-fp32": fp32})
    add_dense_peers(artifacts, workdir, [sample_inputs(tokenizer, names, (text,)) for text in TEXTS])
    return artifacts, names


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifacts, dict[str, np.ndarray], np.ndarray]:
    """Tiny artifacts with their peers, a batch of real text and the FP32 logits on it."""
    artifacts, names = _tiny_artifacts(tmp_path_factory.mktemp("peers"))
    batch = sample_inputs(tiny_tokenizer(), names, TEXTS[:4], length=LENGTH)
    return artifacts, batch, OnnxRuntimeEngine(artifacts.files["dense-fp32"], threads=1).run(batch)[0]


def test_the_ort_optimized_peer_is_fused_dynamic_int8_and_computes_the_model(
    tiny: tuple[Artifacts, dict[str, np.ndarray], np.ndarray],
) -> None:
    artifacts, batch, expected = tiny
    fused = artifacts.notes["dense-int8-ort-optimized"]["fused"]
    assert fused == {"Attention": 0, "SkipLayerNormalization": 4, "BiasGelu": 2,  # 2 layers; attention: see peer_ort
                     "EmbedLayerNormalization": 0}
    engine = OnnxRuntimeEngine(artifacts.files["dense-int8-ort-optimized"], threads=1)
    ops = {node.op_type for node in onnx.load(str(artifacts.files["dense-int8-ort-optimized"])).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger", "SkipLayerNormalization", "BiasGelu"} <= ops
    np.testing.assert_allclose(engine.run(batch)[0], expected, atol=2e-3)


def test_the_ort_fused_peer_is_the_dense_model_with_int8_attention(
    tiny: tuple[Artifacts, dict[str, np.ndarray], np.ndarray],
) -> None:
    artifacts, batch, expected = tiny
    assert artifacts.notes["dense-int8-ort-fused"]["fused"] == {
        "Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2, "EmbedLayerNormalization": 1}
    ops = {node.op_type for node in onnx.load(str(artifacts.files["dense-int8-ort-fused"])).graph.node}
    assert {"QAttention", "QEmbedLayerNormalization", "MatMulInteger"} <= ops
    engine = OnnxRuntimeEngine(artifacts.files["dense-int8-ort-fused"], threads=1)
    np.testing.assert_allclose(engine.run(batch)[0], expected, atol=2e-2)


@needs_openvino
@pytest.mark.parametrize(("batch_size", "hint"), [(1, "LATENCY"), (4, "THROUGHPUT"), (3, "LATENCY")])
def test_the_openvino_peer_runs_each_batch_size_with_its_hint(
    tiny: tuple[Artifacts, dict[str, np.ndarray], np.ndarray], batch_size: int, hint: str
) -> None:
    artifacts, batch, expected = tiny
    assert artifacts.files["dense-int8-openvino"].with_suffix(".bin").is_file()
    run, info = openvino_runner(artifacts.files["dense-int8-openvino"], batch_size, LENGTH, threads=2)
    assert (info["hint"], info["threads"]) == (hint, 2)  # 2 threads: 2 requests, so 3 rows run as one (LATENCY)
    assert info["requests"] == (2 if hint == "THROUGHPUT" else 1)
    rows = {name: value[:batch_size] for name, value in batch.items()}
    (logits,) = run(rows)
    assert logits.shape == (batch_size, 2)
    np.testing.assert_allclose(logits, expected[:batch_size], atol=2e-3)


def test_the_peers_are_measured_interleaved_with_the_dense_model_and_compared(
    tiny: tuple[Artifacts, dict[str, np.ndarray], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts, _, _ = tiny
    monkeypatch.setattr(bench_engines, "CASES", (("dense-fp32", "onnxruntime"), ("dense-int8", "ort-optimized"),
                                                 ("dense-int8", "openvino")))
    cases, skipped = build_cases(artifacts, [1, 2], LENGTH, threads=1)
    measure(cases, LENGTH, rounds=2, seconds_per_turn=0.01)
    results = with_ratios([summarize(case) for case in cases])
    engines = ["onnxruntime", "ort-optimized"] + (["openvino"] if openvino_missing() is None else [])
    assert [(r["engine"], r["batch_size"]) for r in results] == [(e, b) for e in engines for b in (1, 2)]
    assert skipped == ([] if openvino_missing() is None else [
        {"shape": "tiny", "model": "dense-int8", "engine": "openvino", "reason": MISSING}])
    for r in results:
        assert r["calls"] >= 2 and r["items_per_second"] > 0
        if r["engine"] == "onnxruntime":
            assert r["vs_dense_fp32_onnxruntime"] == 1.0
        assert r["best_dense_int8"] in {"dense-int8 ort-optimized", "dense-int8 openvino"}
    assert sorted(r["vs_best_dense_int8"] for r in results if r["model"] == "dense-int8")[-2:] == [1.0, 1.0]


def test_without_openvino_its_peer_is_skipped_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    assert openvino_missing() == MISSING
    artifacts, _ = _tiny_artifacts(tmp_path)
    assert set(artifacts.files) == {"dense-fp32", "dense-int8-ort-optimized", "dense-int8-ort-fused"}
    assert artifacts.skipped == {"dense-int8-openvino": MISSING}
    monkeypatch.setattr(bench_engines, "CASES", (("dense-int8", "ort-optimized"), ("dense-int8", "openvino")))
    cases, skipped = build_cases(artifacts, [1], LENGTH, threads=1)
    assert [case.engine for case in cases] == ["ort-optimized"]
    assert skipped == [{"shape": "tiny", "model": "dense-int8", "engine": "openvino", "reason": MISSING}]
    row = table([], skipped)[-1]
    assert row == f"| tiny | dense-int8 | openvino | | | | | | | skipped: {MISSING} |"
