"""`oberta bench engines` smoke test: the shipped sparse model and a candidate against their dense references and
peers, tiny settings, sane reports with both ratios; candidates that cannot be told apart are refused."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.peer_openvino import openvino_missing
from oberta.cli import main
from service.runtime.cpu import products_saturate
from service.runtime.engines.deepsparse_engine import deepsparse_support

REPO = Path(__file__).resolve().parents[2]
SPARSE_MODEL = REPO / "models" / "sentiment"
CANDIDATE = REPO / "models" / "ner"
CASES = {
    ("dense-fp32", "pytorch"),
    ("dense-fp32", "onnxruntime"),
    ("dense-int8", "ort-optimized"),
    ("dense-int8", "ort-fused"),
    ("dense-int8", "openvino"),
    ("sparse-int8", "deepsparse"),
    ("sparse-int8", "onnxruntime"),
}


def test_bench_engines_writes_sane_reports_for_the_dense_peers_the_sparse_model_and_a_candidate(
    tmp_path: Path,
) -> None:
    supported, reason = deepsparse_support()
    if not supported:
        pytest.skip(f"the benchmark measures DeepSparse, unusable here: {reason}")
    card_before = (SPARSE_MODEL / "model.yaml").read_bytes()
    command = [
        sys.executable, "-m", "oberta.cli", "bench", "engines", "--model", str(SPARSE_MODEL), "--shapes", "minilm",
        "--batch-sizes", "1", "--sequence-length", "16", "--rounds", "1", "--seconds-per-turn", "0.05",
        "--threads", "1", "--output", str(tmp_path), "--stem", "smoke", "--candidates", f"ner-candidate={CANDIDATE}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "NM_DISABLE_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]

    report = json.loads((tmp_path / "smoke.json").read_text())
    results, meta = report["results"], report["meta"]
    missing = openvino_missing()
    measured = CASES - ({("dense-int8", "openvino")} if missing else set())
    candidate = {("ner-candidate", "deepsparse"), ("ner-candidate", "onnxruntime")}
    assert {(r["model"], r["engine"]) for r in results} == measured | candidate
    assert meta["candidates"] == {"ner-candidate": str(CANDIDATE)}
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
    for deepsparse in (r for r in results if r["engine"] == "deepsparse"):
        assert 0 < deepsparse["engine_info"]["fraction_of_supported_ops"] <= 1
    exact = {(r["model"], r["engine"]) for r in results if "exact_int8" in r["engine_info"]}
    served = {("sparse-int8", "onnxruntime"), ("ner-candidate", "onnxruntime")}
    assert exact == (served if products_saturate() else set())  # the dense peers run as users would run them
    (ort_optimized,) = [r for r in results if r["engine"] == "ort-optimized"]
    assert ort_optimized["engine_info"]["fused"]["SkipLayerNormalization"] == 12  # 6 layers, 2 each
    (ort_fused,) = [r for r in results if r["engine"] == "ort-fused"]
    assert ort_fused["engine_info"]["fused"]["Attention"] == 6
    assert meta["command"].startswith("oberta bench engines --model")
    assert (meta["sequence_length"], meta["rounds"], meta["sparse_model"]) == (16, 1, str(SPARSE_MODEL))

    table = (tmp_path / "smoke.md").read_text()
    assert "| minilm | sparse-int8 | deepsparse | 1 |" in table and "| minilm | 1 | dense-int8 " in table
    assert "| minilm | ner-candidate | onnxruntime | 1 |" in table
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
    assert "| shape | model | engine | batch | items/s | vs dense FP32 ORT | vs best dense INT8 |" in result.stdout
    assert "| minilm | dense-int8 | ort-optimized | 1 |" in result.stdout
    assert (SPARSE_MODEL / "model.yaml").read_bytes() == card_before  # recorded only with --record-in-card


@pytest.mark.parametrize(("candidates", "error"), [
    ([f"sparse-int8={CANDIDATE}"], "not one of the benchmark's own models"),
    ([str(REPO / "benchmarks")], "is not a model directory (no model.yaml)"),
    ([str(CANDIDATE), f"ner={SPARSE_MODEL}"], "two --candidates share a name; name them NAME=DIR"),
])
def test_candidates_that_cannot_be_told_apart_or_are_no_model_are_refused_before_any_work(
    candidates: list[str], error: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "engines", "--model", str(SPARSE_MODEL), "--candidates", *candidates])
    assert stopped.value.code not in (0, None)
    assert error in str(stopped.value.code) + capsys.readouterr().err
