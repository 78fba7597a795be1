"""The engine benchmark's ratios on a made-up result set: over dense FP32 ONNX Runtime and over the fastest dense INT8
peer at the same shape and batch size, in the table, the chart and the card."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import (
    as_the_sparse_model,
    best_peers,
    chart,
    markdown,
    record_speed,
    with_ratios,
)
from service.runtime.card import load_card

ITEMS_PER_SECOND = {  # (shape, model, engine, batch) -> items/s
    ("minilm", "dense-fp32", "onnxruntime", 1): 50.0,
    ("minilm", "dense-int8", "ort-optimized", 1): 100.0,
    ("minilm", "dense-int8", "openvino", 1): 125.0,
    ("minilm", "sparse-int8", "deepsparse", 1): 250.0,
    ("minilm", "dense-fp32", "onnxruntime", 16): 60.0,
    ("minilm", "dense-int8", "ort-optimized", 16): 120.0,
    ("minilm", "dense-int8", "openvino", 16): 90.0,
    ("minilm", "sparse-int8", "deepsparse", 16): 300.0,
    ("bert-base", "dense-fp32", "onnxruntime", 1): 10.0,
    ("bert-base", "dense-int8", "ort-optimized", 1): 20.0,
    ("bert-base", "sparse-int8", "deepsparse", 1): 80.0,
}
SKIPPED = [{"shape": "bert-base", "model": "dense-int8", "engine": "openvino", "reason": "not installed"}]


def _results() -> list[dict[str, Any]]:
    return [
        {"shape": shape, "model": model, "engine": engine, "batch_size": batch, "calls": 10, "items_per_second": rate,
         "median_ms": 1.0, "p99_ms": 2.0, "engine_info": {}}
        for (shape, model, engine, batch), rate in ITEMS_PER_SECOND.items()
    ]


def _ratios(results: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], tuple[float, float]]:
    return {(r["shape"], r["model"], r["engine"], r["batch_size"]):
            (round(r["vs_dense_fp32_onnxruntime"], 3), round(r["vs_best_dense_int8"], 3)) for r in results}


def test_each_case_is_compared_with_dense_fp32_ort_and_the_fastest_dense_int8_peer_at_its_batch_size() -> None:
    results = with_ratios(_results())
    ratios = _ratios(results)
    assert ratios["minilm", "sparse-int8", "deepsparse", 1] == (5.0, 2.0)  # best at batch 1: openvino (125)
    assert ratios["minilm", "sparse-int8", "deepsparse", 16] == (5.0, 2.5)  # best at batch 16: ort-optimized (120)
    assert ratios["minilm", "dense-int8", "openvino", 16] == (1.5, 0.75)
    assert ratios["minilm", "dense-fp32", "onnxruntime", 1] == (1.0, 0.4)
    assert ratios["bert-base", "sparse-int8", "deepsparse", 1] == (8.0, 4.0)  # only one peer there
    assert {(r["shape"], r["batch_size"]): r["best_dense_int8"] for r in results} == {
        ("minilm", 1): "dense-int8 openvino", ("minilm", 16): "dense-int8 ort-optimized",
        ("bert-base", 1): "dense-int8 ort-optimized",
    }
    assert {key: peer["engine"] for key, peer in best_peers(results).items()} == {
        ("minilm", 1): "openvino", ("minilm", 16): "ort-optimized", ("bert-base", 1): "ort-optimized"
    }


def test_without_a_reference_the_ratio_is_empty() -> None:
    only_sparse = [r for r in _results() if r["model"] == "sparse-int8"]
    (row, *_) = with_ratios(only_sparse)
    assert (row["vs_dense_fp32_onnxruntime"], row["vs_best_dense_int8"], row["best_dense_int8"]) == (None, None, None)


META = {"title": "engines", "command": "oberta bench engines --model models/sentiment", "sequence_length": 128,
        "rounds": 5, "skipped": SKIPPED,
        "machine": {"cpu": "a CPU", "cores": 2, "onnxruntime": "1", "deepsparse": "2", "openvino": "3", "nncf": "4",
                    "torch": "5"}}


def test_the_table_shows_both_ratios_the_skipped_peer_and_the_best_peers() -> None:
    text = markdown(with_ratios(_results()), META)
    assert "| minilm | sparse-int8 | deepsparse | 16 | 300.0 | 5.00x | 2.50x | 1.0 | 2.0 |  |" in text
    assert "| bert-base | dense-int8 | openvino | | | | | | | skipped: not installed |" in text
    assert "| minilm | 1 | dense-int8 openvino | 125.0 |" in text
    assert "openvino 3, nncf 4" in text


def test_the_chart_is_drawn(tmp_path: Path) -> None:
    chart(with_ratios(_results()), META, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_the_card_records_every_minilm_case_with_both_ratios(bert_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(bert_dir, model_dir)
    record_speed(model_dir, with_ratios(_results()), {**META, "machine": {"cpu": "a CPU", "cores": 2}})
    speed = load_card(model_dir).metrics["speed"]
    assert speed["items_per_second"]["sparse-int8 deepsparse batch 16"] == 300.0
    assert speed["vs_dense_fp32_onnxruntime"]["sparse-int8 deepsparse batch 16"] == 5.0
    assert speed["vs_best_dense_int8"]["sparse-int8 deepsparse batch 1"] == 2.0
    assert speed["best_dense_int8"] == {"batch 1": "dense-int8 openvino", "batch 16": "dense-int8 ort-optimized"}
    assert len(speed["items_per_second"]) == 8  # the MiniLM shape's cases only
    assert speed["skipped"] == {}  # the skipped peer is of the bert-base shape
    assert speed["machine"] == "a CPU, 2 cores"


def test_a_candidates_card_records_its_own_speed_against_the_same_references(bert_dir: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(bert_dir, candidate)
    rows = _results() + [{**row, "model": "small", "items_per_second": 2 * row["items_per_second"]}
                         for row in _results() if row["model"] == "sparse-int8" and row["shape"] == "minilm"]
    record_speed(candidate, as_the_sparse_model(with_ratios(rows), "small"), {**META, "machine": {"cpu": "a CPU",
                                                                                                "cores": 2}})
    speed = load_card(candidate).metrics["speed"]
    assert speed["items_per_second"]["sparse-int8 deepsparse batch 16"] == 600.0  # the candidate's, not --model's
    assert speed["vs_best_dense_int8"]["sparse-int8 deepsparse batch 16"] == 5.0  # 600 / ort-optimized's 120
    assert speed["items_per_second"]["dense-int8 openvino batch 1"] == 125.0
    assert len(speed["items_per_second"]) == 8


@pytest.mark.parametrize("info", [{"fraction_of_supported_ops": 0.5}, {"fused": {"Attention": 0}},
                                  {"hint": "LATENCY", "requests": 1}])
def test_the_notes_column_names_what_made_the_case(info: dict[str, Any]) -> None:
    results = with_ratios(_results()[:1])
    results[0]["engine_info"] = info
    note = markdown(results, META).split("\n")[8].split("|")[-2].strip()
    assert note == {"fraction_of_supported_ops": "supported ops 0.50", "fused": "fused Attention 0",
                    "hint": "LATENCY, 1 request"}[next(iter(info))]
