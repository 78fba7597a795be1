"""MPNet (all-mpnet-base-v2's architecture) on the sentence-embedding path: the pruner's layers, the pooling model,
the export of its relative position bias with a dynamic sequence length, and the base-model alias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from compression.base_models import mpnet_dir, resolve_base_model
from compression.embedding_model import load_embedding_model, model_settings
from compression.export import export_model_dir
from compression.pruning.pruner import find_layers
from service.runtime.card import load_card
from service.runtime.errors import MissingFile
from tests.tiny_models import EMBEDDING_DIMENSION, make_tiny_encoder_base, tiny_subword_tokenizer

LINEARS_PER_LAYER = ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                     "intermediate.dense", "output.dense")


@pytest.fixture(scope="module")
def mpnet_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MPNet encoder (2 layers, 32 wide) saved as a mean-pooling, normalising sentence-transformers
    model."""
    return make_tiny_encoder_base(tmp_path_factory.mktemp("mpnet"), arch="mpnet")


def test_the_pruner_finds_the_six_linears_of_each_mpnet_layer(mpnet_base: Path) -> None:
    model = load_embedding_model(str(mpnet_base))
    names = [layer.name for layer in find_layers(model)]
    assert names == [f"encoder.layer.{n}.{linear}" for n in range(2) for linear in LINEARS_PER_LAYER]
    assert all(isinstance(layer.module, torch.nn.Linear) for layer in find_layers(model))


def test_the_mpnet_model_pools_as_its_sentence_transformers_files_say(mpnet_base: Path) -> None:
    model = load_embedding_model(str(mpnet_base))
    assert type(model).__name__ == "MPNetModelForSentenceEmbedding"
    assert model_settings(model).model_dump() == {"pooling": "mean", "normalize": True,
                                                  "dimension": EMBEDDING_DIMENSION}


def test_the_relative_position_bias_exports_with_a_dynamic_sequence_length(mpnet_base: Path, tmp_path: Path) -> None:
    model = load_embedding_model(str(mpnet_base))
    card = export_model_dir(model, tiny_subword_tokenizer(), tmp_path / "embed", "embed", 64,
                            task="sentence-embedding", task_settings=model_settings(model).model_dump())
    assert card.architecture == "mpnet" and load_card(tmp_path / "embed").inputs == ["input_ids", "attention_mask"]
    session = ort.InferenceSession(str(tmp_path / "embed" / card.files["onnxruntime"]),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    vocab = len(tiny_subword_tokenizer().get_vocab())
    # lengths below, at and far beyond the tracing batch's; past 8 tokens apart, the bias buckets grow logarithmically
    for batch, length in ((1, 2), (2, 11), (3, 40), (2, 70)):
        ids = rng.integers(5, vocab, (batch, length))
        mask = np.ones((batch, length), dtype=np.int64)
        mask[-1, length // 2 + 1 :] = 0
        onnx_vectors = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        with torch.no_grad():
            torch_vectors = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        np.testing.assert_allclose(onnx_vectors, torch_vectors.sentence_embedding.numpy(), atol=1e-5)


def test_the_mpnet_alias_resolves_the_fetched_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(MissingFile, match=r"tools/fetch_mpnet\.sh"):
        resolve_base_model("all-mpnet-base-v2")
    mpnet_dir().mkdir(parents=True)
    (mpnet_dir() / "config.json").write_text("{}")
    assert resolve_base_model("sentence-transformers/all-mpnet-base-v2") == str(
        tmp_path / ".cache" / "oberta" / "mpnet" / "all-mpnet-base-v2")
