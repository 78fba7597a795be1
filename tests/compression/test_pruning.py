"""oBERT pruning: Fisher inverse, OBS saliency and update, schedule, target sparsity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compression.pruning.fisher import BlockFisherInverse
from compression.pruning.obs import group_inverse_blocks, obs_saliency, obs_update
from compression.pruning.pruner import PrunableLayer, Pruner, find_layers
from compression.pruning.schedule import CubicSchedule


def _fisher_and_inverse(block: int = 8, numel: int = 24, m: int = 16, damp: float = 1e-2):
    torch.manual_seed(0)
    grads = torch.randn(m, numel, dtype=torch.float64)
    finv = BlockFisherInverse(numel, block, m, damp, dtype=torch.float64)
    finv.add_gradients(grads[:5])
    for g in grads[5:]:
        finv.add_gradients(g.unsqueeze(0))
    return grads, finv


def test_block_fisher_inverse_matches_dense_inverse() -> None:
    grads, finv = _fisher_and_inverse()
    for b in range(finv.num_blocks):
        g = grads[:, b * 8 : (b + 1) * 8]
        fisher = 1e-2 * torch.eye(8, dtype=torch.float64) + g.T @ g / len(grads)
        torch.testing.assert_close(finv.inverse[b], torch.linalg.inv(fisher), rtol=1e-8, atol=1e-8)


def test_padded_last_block_is_consistent() -> None:
    finv = BlockFisherInverse(10, 4, 3, 1e-3)
    assert finv.num_blocks == 3 and finv.padding == 2
    x = torch.arange(10.0)
    assert torch.equal(finv.unblock(finv.blocks(x)), x)


def test_single_weight_saliency_and_update_match_closed_form() -> None:
    _, finv = _fisher_and_inverse(block=8, numel=8)
    w = torch.randn(1, 8, dtype=torch.float64)
    finv_dense = finv.inverse[0]
    saliency = obs_saliency(w, finv, group=1)
    torch.testing.assert_close(saliency[0], w[0] ** 2 / (2 * torch.diagonal(finv_dense)))
    q = 3
    pruned = torch.zeros(1, 8, dtype=torch.bool)
    pruned[0, q] = True
    updated = obs_update(w, finv, pruned, group=1)
    expected = w[0] - w[0, q] / finv_dense[q, q] * finv_dense[:, q]
    torch.testing.assert_close(updated[0], expected)
    assert updated[0, q] == 0


def test_group_saliency_and_update_match_closed_form() -> None:
    _, finv = _fisher_and_inverse(block=8, numel=8)
    w = torch.randn(1, 8, dtype=torch.float64)
    finv_dense = finv.inverse[0]
    q = [4, 5, 6, 7]
    sub_inverse = torch.linalg.inv(finv_dense[q][:, q])
    torch.testing.assert_close(group_inverse_blocks(finv, 4)[0, 1], finv_dense[q][:, q])
    saliency = obs_saliency(w, finv, group=4)
    torch.testing.assert_close(saliency[0, 1], 0.5 * w[0, q] @ sub_inverse @ w[0, q])
    pruned = torch.zeros(1, 8, dtype=torch.bool)
    pruned[0, q] = True
    updated = obs_update(w, finv, pruned, group=4)
    expected = w[0] - finv_dense[:, q] @ sub_inverse @ w[0, q]
    torch.testing.assert_close(updated[0], expected)
    assert torch.all(updated[0, q] == 0)


def test_obs_update_minimises_the_quadratic_loss_increase() -> None:
    """Among updates that zero weight q, OBS's gives the smallest increase of dw^T F dw / 2."""
    _, finv = _fisher_and_inverse(block=8, numel=8)
    fisher = torch.linalg.inv(finv.inverse[0])
    w = torch.randn(1, 8, dtype=torch.float64)
    pruned = torch.zeros(1, 8, dtype=torch.bool)
    pruned[0, 2] = True
    dw = obs_update(w, finv, pruned, group=1)[0] - w[0]
    best = 0.5 * dw @ fisher @ dw
    torch.testing.assert_close(best, obs_saliency(w, finv, 1)[0, 2])
    naive = torch.zeros(8, dtype=torch.float64)
    naive[2] = -w[0, 2]
    assert best <= 0.5 * naive @ fisher @ naive


def test_cubic_schedule_end_points_and_shape() -> None:
    schedule = CubicSchedule(initial=0.7, final=0.9, start_step=10, end_step=110, interval=25)
    assert schedule.sparsity_at(9) == 0.0
    assert schedule.sparsity_at(10) == pytest.approx(0.7)
    assert schedule.sparsity_at(110) == pytest.approx(0.9)
    assert schedule.sparsity_at(500) == pytest.approx(0.9)
    assert schedule.sparsity_at(60) == pytest.approx(0.9 - 0.2 * 0.5**3)
    assert schedule.update_steps() == [10, 35, 60, 85, 110]
    assert all(schedule.is_update_step(s) for s in schedule.update_steps())
    assert not schedule.is_update_step(11)
    with pytest.raises(ValueError):
        CubicSchedule(initial=0.9, final=0.7, start_step=0, end_step=1, interval=1)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(16, 12)
        self.second = nn.Linear(12, 20)
        self.head = nn.Linear(20, 2)


def _layers(model: _Encoder) -> list[PrunableLayer]:
    return find_layers(model, [r"^(first|second)$"])


class _Samples:
    def __init__(self, model: _Encoder, count: int) -> None:
        self.model, self.count = model, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):  # type: ignore[no-untyped-def]
        generator = torch.Generator().manual_seed(1)
        for _ in range(self.count):
            yield {
                "first": torch.randn(12, 16, generator=generator),
                "second": torch.randn(20, 12, generator=generator),
            }


@pytest.mark.parametrize("scorer", ["obs", "magnitude"])
@pytest.mark.parametrize("scope", ["global", "per-layer"])
@pytest.mark.parametrize("group", [1, 4])
def test_exact_target_sparsity(scorer: str, scope: str, group: int) -> None:
    torch.manual_seed(0)
    model = _Encoder()
    pruner = Pruner(_layers(model), scorer=scorer, group=group, scope=scope, block_size=8, damp=1e-4)
    samples = _Samples(model, 16) if scorer == "obs" else None
    for target in (0.5, 0.75):
        pruner.prune(target, samples)
        total_groups = sum(layer.mask.numel() for layer in pruner.layers) // group
        assert pruner.sparsity() == pytest.approx(round(target * total_groups) / total_groups)
        if scope == "per-layer":
            for layer in pruner.layers:
                groups = layer.mask.numel() // group
                assert (~layer.mask).sum().item() == round(target * groups) * group
        for layer in pruner.layers:
            assert torch.all(layer.weight[~layer.mask] == 0)
            rows = layer.mask.reshape(-1, group)
            assert torch.all(rows.all(dim=-1) | ~rows.any(dim=-1)), "groups are pruned whole"
    assert torch.count_nonzero(model.head.weight) == model.head.weight.numel(), "the head stays dense"


def test_masks_follow_the_model_to_another_device() -> None:
    """The Trainer moves the model after the pruner is built (to a GPU); masks, gradient hooks and the Fisher
    inverses must follow. The meta device stands in for the GPU here: it checks devices, not values."""
    model = _Encoder()
    pruner = Pruner(_layers(model), scorer="obs", block_size=8, damp=1e-4)
    model.to("meta")
    pruner.apply_masks()
    assert all(layer.mask.device.type == "meta" for layer in pruner.layers)
    loss = model.head(model.second(model.first(torch.randn(4, 16, device="meta")))).sum()
    loss.backward()  # runs the gradient-masking hooks on the moved weights
    assert all(layer.weight.grad is not None and layer.weight.grad.device.type == "meta" for layer in pruner.layers)
    finv = BlockFisherInverse(12 * 16, 8, 4, 1e-4, device="meta")
    assert finv.inverse.device.type == "meta" and finv.blocks(torch.zeros(12 * 16)).device.type == "meta"


def test_masks_are_kept_through_training_steps() -> None:
    torch.manual_seed(0)
    model = _Encoder()
    pruner = Pruner(_layers(model), scorer="magnitude")
    pruner.prune(0.6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = model.head(model.second(model.first(torch.randn(4, 16)))).sum()
        loss.backward()
        for layer in pruner.layers:
            assert torch.all(layer.weight.grad[~layer.mask] == 0), "gradients of pruned weights are masked"
        optimizer.step()
        optimizer.zero_grad()
        pruner.apply_masks()
    before = [layer.mask.clone() for layer in pruner.layers]
    pruner.masks_from_weights()
    assert all(torch.equal(a, layer.mask) for a, layer in zip(before, pruner.layers, strict=True))


def test_obs_prunes_better_than_magnitude_on_a_quadratic() -> None:
    """With a Fisher that is far from isotropic, OBS keeps the loss lower than magnitude pruning."""
    torch.manual_seed(0)
    scales = torch.logspace(-2, 1, 16)
    results = {}
    for scorer in ("obs", "magnitude"):
        layer = nn.Linear(16, 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.linspace(1.0, 0.2, 16).unsqueeze(0))
        original = layer.weight.detach().clone()
        pruner = Pruner([PrunableLayer("w", layer, torch.ones_like(layer.weight, dtype=torch.bool))],
                        scorer=scorer, block_size=16, damp=1e-6)
        generator = torch.Generator().manual_seed(0)
        grads = [{"w": (torch.randn(1, 16, generator=generator) * scales)} for _ in range(64)]
        pruner.prune(0.5, grads)
        fisher = sum(g["w"].reshape(-1, 1) @ g["w"].reshape(1, -1) for g in grads) / 64
        delta = (layer.weight.detach() - original).reshape(-1)
        results[scorer] = float(delta @ fisher @ delta)
    assert results["obs"] < results["magnitude"]


def _remove_neurons(model: _Encoder, neurons: list[int]) -> None:
    """Zero hidden neurons as compression/structure.py removes them: rows of the first layer, columns of the second."""
    with torch.no_grad():
        model.first.weight[neurons] = 0.0
        model.first.bias[neurons] = 0.0
        model.second.weight[:, neurons] = 0.0


@pytest.mark.parametrize("scorer", ["obs", "magnitude"])
def test_blocks_of_four_are_formed_among_the_kept_neurons(scorer: str) -> None:
    """Removed neurons leave zero columns scattered through the second layer. Groups of 4 are consecutive columns
    of the matrix the export keeps (the removed columns dropped), and the target counts the removed weights."""
    torch.manual_seed(0)
    model = _Encoder()
    removed = [1, 6, 7, 10]
    _remove_neurons(model, removed)
    kept = [n for n in range(12) if n not in removed]
    pruner = Pruner(_layers(model), scorer=scorer, group=4, scope="global", block_size=8, damp=1e-4)
    target = 0.6
    pruner.prune(target, _Samples(model, 16) if scorer == "obs" else None)

    total = model.first.weight.numel() + model.second.weight.numel()
    assert abs(pruner.sparsity() - target) <= 2 / total * 4
    assert torch.all(model.first.weight[removed] == 0) and torch.all(model.second.weight[:, removed] == 0)
    for compact in (model.first.weight[kept], model.second.weight[:, kept]):
        groups = (compact != 0).reshape(-1, 4)
        assert torch.all(groups.all(dim=-1) | ~groups.any(dim=-1)), "groups of the compacted matrix are whole"
    assert (model.second.weight[:, kept] != 0).any(dim=0).all(), "no kept neuron lost all its outgoing weights"


def test_live_columns_must_split_into_groups() -> None:
    model = _Encoder()
    _remove_neurons(model, [1, 6, 7])
    with pytest.raises(ValueError, match="second: 9 live input columns are not a multiple of 4"):
        Pruner(_layers(model), scorer="magnitude", group=4)
