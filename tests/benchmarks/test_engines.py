"""`oberta bench engines` smoke test: the shipped sparse model against its dense references and peers, tiny settings,
sane reports with both ratios."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.peer_openvino import openvino_missing
from service.runtime.engines.deepsparse_engine import deepsparse_support

REPO = Path(__file__).resolve().parents[2]
SPARSE_MODEL = REPO / "models" / "sentiment"
CASES = {
    ("dense-fp32", "pytorch"),
    ("dense-fp32", "onnxruntime"),
    ("dense-int8", "ort-optimized"),
    ("dense-int8", "ort-fused"),
    ("dense-int8", "openvino"),
    ("sparse-int8", "deepsparse"),
    ("sparse-int8", "onnxruntime"),
}


def test_bench_engines_writes_sane_reports_for_the_dense_peers_and_the_sparse_model(tmp_path: Path) -> None:
    supported, reason = deepsparse_support()
    if not supported:
        pytest.skip(f"the benchmark measures DeepSparse, unusable here: {reason}")
    card_before = (SPARSE_MODEL / "model.yaml").read_bytes()
    command = [
        sys.executable, "-m", "oberta.cli", "bench", "engines", "--model", str(SPARSE_MODEL), "--shapes", "minilm",
        "--batch-sizes", "1", "--sequence-length", "16", "--rounds", "1", "--seconds-per-turn", "0.05",
        "--threads", "1", "--output", str(tmp_path), "--stem", "smoke",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "NM_DISABLE_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]

    report = json.loads((tmp_path / "smoke.json").read_text())
    results, meta = report["results"], report["meta"]
    missing = openvino_missing()
    measured = CASES - ({("dense-int8", "openvino")} if missing else set())
    assert {(r["model"], r["engine"]) for r in results} == measured
    assert meta["skipped"] == ([{"shape": "minilm", "model": "dense-int8", "engine": "openvino", "reason": missing}]
                               if missing else [])
    peers = [r for r in results if r["model"] == "dense-int8"]
    best = max(peers, key=lambda r: r["items_per_second"])
    for r in results:
        assert (r["shape"], r["batch_size"]) == ("minilm", 1)
        assert r["calls"] >= 1 and math.isfinite(r["items_per_second"]) and r["items_per_second"] > 0, r
        assert 0 < r["median_ms"] <= r["p99_ms"], r
        assert r["best_dense_int8"] == f"dense-int8 {best['engine']}"
        assert math.isclose(r["vs_best_dense_int8"], r["items_per_second"] / best["items_per_second"])
        assert r["vs_dense_fp32_onnxruntime"] > 0
    (deepsparse,) = [r for r in results if r["engine"] == "deepsparse"]
    assert 0 < deepsparse["engine_info"]["fraction_of_supported_ops"] <= 1
    (ort_optimized,) = [r for r in results if r["engine"] == "ort-optimized"]
    assert ort_optimized["engine_info"]["fused"]["SkipLayerNormalization"] == 12  # 6 layers, 2 each
    (ort_fused,) = [r for r in results if r["engine"] == "ort-fused"]
    assert ort_fused["engine_info"]["fused"]["Attention"] == 6
    assert meta["command"].startswith("oberta bench engines --model")
    assert (meta["sequence_length"], meta["rounds"], meta["sparse_model"]) == (16, 1, str(SPARSE_MODEL))

    table = (tmp_path / "smoke.md").read_text()
    assert "| minilm | sparse-int8 | deepsparse | 1 |" in table and "| minilm | 1 | dense-int8 " in table
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
    assert "| shape | model | engine | batch | items/s | vs dense FP32 ORT | vs best dense INT8 |" in result.stdout
    assert "| minilm | dense-int8 | ort-optimized | 1 |" in result.stdout
    assert (SPARSE_MODEL / "model.yaml").read_bytes() == card_before  # recorded only with --record-in-card
