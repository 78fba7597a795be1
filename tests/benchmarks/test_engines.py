"""`oberta bench engines` smoke test: the shipped sparse model against its dense peers, tiny settings, sane reports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.runtime.engines.deepsparse_engine import deepsparse_support

REPO = Path(__file__).resolve().parents[2]
SPARSE_MODEL = REPO / "models" / "sentiment"
CASES = {
    ("dense-fp32", "pytorch"),
    ("dense-fp32", "onnxruntime"),
    ("dense-int8", "onnxruntime"),
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
    assert {(r["model"], r["engine"]) for r in results} == CASES
    for r in results:
        assert (r["shape"], r["batch_size"]) == ("minilm", 1)
        assert r["calls"] >= 1 and math.isfinite(r["items_per_second"]) and r["items_per_second"] > 0, r
        assert 0 < r["median_ms"] <= r["p99_ms"], r
    (deepsparse,) = [r for r in results if r["engine"] == "deepsparse"]
    assert 0 < deepsparse["engine_info"]["fraction_of_supported_ops"] <= 1
    assert meta["command"].startswith("oberta bench engines --model")
    assert (meta["sequence_length"], meta["rounds"], meta["sparse_model"]) == (16, 1, str(SPARSE_MODEL))
    (speedup,) = meta["speedups"]
    assert (speedup["shape"], speedup["batch_size"]) == ("minilm", 1) and speedup["speedup"] > 0

    table = (tmp_path / "smoke.md").read_text()
    assert "| minilm | sparse-int8 | deepsparse | 1 |" in table and "| minilm | 1 |" in table
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
    assert "sparse INT8 DeepSparse / dense FP32 ONNX Runtime" in result.stdout
    assert (SPARSE_MODEL / "model.yaml").read_bytes() == card_before  # recorded only with --record-in-card
