"""tools/sparse_int8_size.py: a magnitude-pruned INT8 served directory, and what its files hold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from service.runtime.card import load_card
from tests.tiny_models import EMBEDDING_DIMENSION, make_tiny_encoder_base

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "sparse_int8_size.py"
_spec = importlib.util.spec_from_file_location("sparse_int8_size", SCRIPT)
assert _spec is not None and _spec.loader is not None
size_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(size_tool)


def test_a_pruned_int8_directory_is_written_and_weighed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_tiny_encoder_base(tmp_path / "base", arch="mpnet")
    texts = tmp_path / "texts.txt"
    texts.write_text("the king lived in paris\nwho built the palace\njohn smithson works at google\n")
    output = tmp_path / "int8"
    assert size_tool.main(["--model", str(base), "--sparsity", "0.75", "--output", str(output),
                           "--calibration-file", str(texts), "--max-length", "32", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)

    card = load_card(output)
    assert (card.task, card.precision, card.architecture) == ("sentence-embedding", "int8", "mpnet")
    assert card.files == {"deepsparse": "model.deepsparse.onnx", "onnxruntime": "model.onnx"}
    assert set(result["megabytes"]) == {"model.fp32.onnx", "model.deepsparse.onnx", "model.onnx"}
    assert all(0 < result["gzip_megabytes"][name] < result["megabytes"][name] for name in card.files.values())
    assert all(size == pytest.approx(0.75, abs=0.01) for size in result["weight_sparsity"].values())
    assert card.sparsity == result["weight_sparsity"]["model.deepsparse.onnx"]
    # the largest tensors (the feed-forward weights, at this size) are FP32 in the export, 8-bit in the INT8 files
    largest = {name: tensors[0] for name, tensors in result["largest_tensors"].items()}
    assert largest["model.fp32.onnx"]["type"] == "float32"
    assert {largest[name]["type"] for name in card.files.values()} <= {"int8", "uint8"}
    assert all(EMBEDDING_DIMENSION in tensor["shape"] for tensor in largest.values())
