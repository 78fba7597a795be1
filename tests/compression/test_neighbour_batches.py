"""Training batches of neighbours in the teacher's space (recipe distillation.neighbour_batches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compression import training
from compression.compress import CompressConfig, compress
from compression.embedding_model import load_embedding_model
from compression.neighbour_batches import NeighbourBatchSampler, forward_in_length_parts, neighbour_batches
from compression.recipe import Recipe
from compression.stages.teacher import BANK_STORE
from compression.tasks import DataConfig
from tests.compression.test_sentence_embedding import STSB, TEXTS
from tests.tiny_models import make_tiny_encoder_base, tiny_subword_tokenizer


def clusters(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in ``count`` tight clusters of ``size``, shuffled; and each row's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, 16))
    labels = np.repeat(np.arange(count), size)
    vectors = centres[labels] + 0.01 * rng.normal(size=(count * size, 16))
    order = rng.permutation(len(labels))
    vectors = vectors[order] / np.linalg.norm(vectors[order], axis=1, keepdims=True)
    return vectors.astype(np.float32), labels[order]


def test_each_batch_is_one_cluster_and_every_text_comes_once() -> None:
    vectors, labels = clusters(count=5, size=8)
    order = neighbour_batches(vectors, 8, np.random.default_rng(1))
    assert sorted(order) == list(range(40))
    batches = [labels[order[start:start + 8]] for start in range(0, 40, 8)]
    assert all(len(set(batch)) == 1 for batch in batches)
    assert len({batch[0] for batch in batches}) == 5


def test_a_last_short_batch_takes_what_is_left() -> None:
    vectors, _ = clusters(count=3, size=7)
    order = neighbour_batches(vectors, 8, np.random.default_rng(0))
    assert sorted(order) == list(range(21))


def test_the_order_comes_from_the_seed_and_the_epoch_alone() -> None:
    vectors = torch.from_numpy(clusters(count=6, size=4)[0]) * 3.0  # not unit length: the sampler normalises
    sampler = NeighbourBatchSampler(vectors, 4, seed=7)
    first = list(sampler)
    assert list(NeighbourBatchSampler(vectors, 4, seed=7)) == first and len(sampler) == 24
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_a_batch_run_in_parts_of_similar_length_gives_the_whole_batchs_outputs(tmp_path: Path) -> None:
    model = load_embedding_model(str(make_tiny_encoder_base(tmp_path / "base"))).eval()
    texts = ["a gorgeous witty movie with great acting and a very good plot", "bad", "the plot was boring",
             "no fun", "john visited london and paris with the story of a film"]
    encoded = tiny_subword_tokenizer()(texts, padding=True, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    kept = inputs["attention_mask"].bool()
    with torch.no_grad():
        whole = model(**inputs, output_hidden_states=True)
        longest = int(kept.sum(dim=1).max())
        for tokens in (1, longest, 2 * longest, 10_000):  # a row a part, one long row a part, ..., all at once
            parts = forward_in_length_parts(model, inputs, tokens, output_hidden_states=True)
            torch.testing.assert_close(parts.sentence_embedding, whole.sentence_embedding, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(parts.pooled_embedding, whole.pooled_embedding, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(parts.token_embeddings[kept], whole.token_embeddings[kept], atol=1e-5, rtol=1e-5)
            assert len(parts.hidden_states) == len(whole.hidden_states)
            for part_layer, whole_layer in zip(parts.hidden_states, whole.hidden_states, strict=True):
                torch.testing.assert_close(part_layer[kept], whole_layer[kept], atol=1e-5, rtol=1e-5)
    gradients = []
    for forward in (lambda: model(**inputs), lambda: forward_in_length_parts(model, inputs, longest)):
        model.zero_grad()
        (forward().sentence_embedding * torch.linspace(-1, 1, 5).unsqueeze(1)).sum().backward()
        gradients.append(model.encoder.layer[0].attention.self.query.weight.grad.clone())
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-6, rtol=1e-4)
    assert gradients[0].abs().sum() > 0


def test_neighbour_batches_need_the_in_batch_similarities() -> None:
    with pytest.raises(ValueError, match="set similarity_weight"):
        Recipe.model_validate({"distillation": {"neighbour_batches": True}})


def test_compress_trains_on_batches_of_neighbours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = make_tiny_encoder_base(tmp_path / "base")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    samplers: list[NeighbourBatchSampler] = []
    real_sampler = training.NeighbourBatchSampler

    def recording(vectors: torch.Tensor, batch_size: int, seed: int) -> NeighbourBatchSampler:
        samplers.append(real_sampler(vectors, batch_size, seed))
        return samplers[-1]

    monkeypatch.setattr(training, "NeighbourBatchSampler", recording)
    recipe = Recipe.model_validate({
        "training": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 100, "max_length": 32},
        "pruning": {"scorer": "magnitude", "initial_sparsity": 0.5, "final_sparsity": 0.5, "end_epoch": 1.0},
        "distillation": {"similarity_weight": 1.0, "neighbour_batches": True},
    })
    data = DataConfig(train_file=str(corpus), task="sentence-embedding", validation_file=STSB, max_length=32)
    run = tmp_path / "run"
    compress(CompressConfig(recipe=recipe, recipe_source="tiny", model=str(base), teacher=str(base), data=data,
                            output_dir=str(run), name="tiny-embeddings", threads=1, stage="train"))
    assert len(samplers) == 1 and samplers[0].batch_size == 4
    with np.load(run / BANK_STORE.cache) as stored:
        assert stored["logits"].shape[0] == len(TEXTS) == len(samplers[0])
