"""Training the smaller matrices: a structurally pruned student compacted for training computes what its zeros did,
expands back to the same model, prunes to the same targets, and a resumed run compacts as its first start did."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from compression.pruning.pruner import Pruner, find_layers
from compression.stages.train import _compact_structures
from compression.structure import prune_structures
from compression.structure_compaction import (
    STRUCTURES_FILE,
    KeptStructures,
    compact,
    expand,
    kept_structures,
    supports_compaction,
)
from tests.tiny_models import WORDS, make_tiny_encoder_base, tiny_classifier, tiny_tokenizer

TEXTS = [" ".join(WORDS[i : i + 6]) for i in range(0, 24, 3)]


def _structured(arch: str) -> torch.nn.Module:
    """A tiny classifier with 1 of 2 heads (16 rows of 32) and 40 of 64 neurons left in each layer."""
    model = tiny_classifier(arch)
    batch = dict(tiny_tokenizer(arch)(TEXTS, padding=True, return_tensors="pt"))
    prune_structures(model, [batch], heads=1, neurons=40)
    return model


def _logits(model: torch.nn.Module, arch: str) -> torch.Tensor:
    batch = dict(tiny_tokenizer(arch)(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_a_compacted_student_computes_what_its_zeros_did_and_expands_back(arch: str) -> None:
    model = _structured(arch)
    original = copy.deepcopy(model.state_dict())
    expected = _logits(model, arch)
    kept = kept_structures(model)
    assert [len(rows) for rows in kept.head_rows] == [16, 16] and [len(n) for n in kept.neurons] == [40, 40]

    removed = compact(model, kept)
    prefix = f"{'bert' if arch == 'bert' else 'roberta'}.encoder.layer.0"
    assert tuple(model.get_submodule(f"{prefix}.attention.self.query").weight.shape) == (16, 32)
    assert tuple(model.get_submodule(f"{prefix}.attention.output.dense").weight.shape) == (32, 16)
    assert tuple(model.get_submodule(f"{prefix}.output.dense").weight.shape) == (32, 40)
    assert removed[f"{prefix}.attention.self.key"] == 16 * 32 and removed[f"{prefix}.intermediate.dense"] == 24 * 32
    assert sum(removed.values()) == 2 * (4 * 16 * 32 + 2 * 24 * 32)
    torch.testing.assert_close(_logits(model, arch), expected, rtol=1e-5, atol=1e-6)

    expand(model, kept)
    restored = model.state_dict()
    assert restored.keys() == original.keys()
    assert all(torch.equal(restored[key], original[key]) for key in original)


def test_rows_that_are_not_whole_heads_are_refused() -> None:
    model = _structured("bert")
    row = kept_structures(model).head_rows[0][0]
    with torch.no_grad():
        for name in ("query", "key", "value"):
            linear = model.get_submodule(f"bert.encoder.layer.0.attention.self.{name}")
            linear.weight[row] = 0.0
            linear.bias[row] = 0.0
    with pytest.raises(ValueError, match="encoder layer 0: 15 nonzero query/key/value rows are not whole heads of 16"):
        kept_structures(model)


def test_training_steps_on_the_compact_student_leave_the_removed_structures_zero() -> None:
    model = _structured("bert")
    before = copy.deepcopy(model.state_dict())
    kept = kept_structures(model)
    compact(model, kept)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = dict(tiny_tokenizer("bert")(TEXTS, padding=True, return_tensors="pt"))
    for _ in range(2):
        model(**batch, labels=torch.zeros(len(TEXTS), dtype=torch.long)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    expand(model, kept)
    query = model.get_submodule("bert.encoder.layer.1.attention.self.query").weight
    dead = torch.ones(32, dtype=torch.bool)
    dead[kept.head_rows[1]] = False
    assert torch.all(query[dead] == 0) and not torch.equal(
        query, before["bert.encoder.layer.1.attention.self.query.weight"])
    output = model.get_submodule("bert.encoder.layer.1.output.dense").weight
    gone = torch.ones(64, dtype=torch.bool)
    gone[kept.neurons[1]] = False
    assert torch.all(output[:, gone] == 0)


@pytest.mark.parametrize("group", [1, 4])
def test_a_compact_pruner_prunes_what_the_full_one_prunes(group: int) -> None:
    """Targets count the removed weights either way; magnitude pruning then picks the same weights."""
    full = _structured("bert")
    compacted = copy.deepcopy(full)
    kept = kept_structures(compacted)
    removed = compact(compacted, kept)
    full_pruner = Pruner(find_layers(full), scorer="magnitude", group=group)
    compact_pruner = Pruner(find_layers(compacted), scorer="magnitude", group=group, removed_weights=removed)
    assert compact_pruner.sparsity() == pytest.approx(full_pruner.sparsity())
    for pruner in (full_pruner, compact_pruner):
        pruner.prune(0.7)
    assert compact_pruner.sparsity() == pytest.approx(full_pruner.sparsity()) and full_pruner.sparsity() > 0.69
    expand(compacted, kept)
    for name, weight in compacted.state_dict().items():
        assert torch.equal(weight, full.state_dict()[name]), name


def test_a_resumed_run_compacts_as_its_first_start_did(tmp_path: Path) -> None:
    model = _structured("bert")
    first = _compact_structures(model, tmp_path, resumed=False)
    assert first is not None and (tmp_path / STRUCTURES_FILE).is_file()
    assert KeptStructures.load(tmp_path) == first.kept
    again = _compact_structures(_structured("bert"), tmp_path, resumed=True)
    assert again is not None and again.kept == first.kept and again.removed_weights == first.removed_weights
    begun_without = tmp_path / "older"  # checkpoints of full-size layers: training goes on with the zeros
    begun_without.mkdir()
    assert _compact_structures(_structured("bert"), begun_without, resumed=True) is None


def test_mpnet_students_train_with_their_zeros(tmp_path: Path) -> None:
    from compression.embedding_model import load_embedding_model

    model = load_embedding_model(make_tiny_encoder_base(tmp_path / "mpnet", arch="mpnet"))
    assert not supports_compaction(model)
    assert supports_compaction(tiny_classifier("bert"))
