"""ONNX export of BERT and RoBERTa classifiers, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer

from compression.export import OPSET, export_model_dir
from service.runtime.card import load_card
from tests.tiny_models import tiny_classifier, tiny_tokenizer


@pytest.mark.parametrize(("arch", "inputs"), [
    ("bert", ["input_ids", "attention_mask", "token_type_ids"]),
    ("roberta", ["input_ids", "attention_mask"]),
])
def test_export_writes_a_model_dir_matching_pytorch(tmp_path: Path, arch: str, inputs: list[str]) -> None:
    model, tokenizer = tiny_classifier(arch, num_labels=3), tiny_tokenizer(arch)
    card = export_model_dir(model, tokenizer, tmp_path / arch, name=f"tiny-{arch}", max_length=64,
                            metrics={"accuracy": 0.5})
    assert load_card(tmp_path / arch) == card
    assert card.inputs == inputs and card.architecture == arch and len(card.labels) == 3
    graph = onnx.load(str(tmp_path / arch / "model.onnx"))
    assert graph.opset_import[0].version == OPSET
    assert {i.name for i in graph.graph.input} == set(inputs)
    served = Tokenizer.from_file(str(tmp_path / arch / "tokenizer.json"))
    session = ort.InferenceSession(str(tmp_path / arch / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, pair in ((1, None), (3, "the plot"), (5, None)):
        texts = ["a good film about love in paris"] * batch
        encodings = [served.encode(t, pair) if pair else served.encode(t) for t in texts]
        feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
        if "token_type_ids" in inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        logits = session.run(None, feed)[0]
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
