"""Optimal Brain Surgeon saliency and weight update over a block-diagonal inverse Fisher.

Weights are pruned in groups of ``group`` consecutive entries of a Fisher block (1 = unstructured, 4 = the
4-block pattern along the input dimension that DeepSparse's INT8 kernels favour). For a group Q with
inverse-Fisher sub-block ``F^-1_QQ`` the OBS saliency is ``1/2 w_Q^T (F^-1_QQ)^-1 w_Q`` (for one weight
``w^2 / (2 [F^-1]_qq)``), and removing Q changes the weights of its Fisher block by
``dw = -F^-1[:, Q] (F^-1_QQ)^-1 w_Q``, which sets w_Q to zero and compensates with the others.
When several groups of one block go at once their updates are summed, as oBERT does.
"""

from __future__ import annotations

import torch

from compression.pruning.fisher import BlockFisherInverse


def group_inverse_blocks(finv: BlockFisherInverse, group: int) -> torch.Tensor:
    """The [num_blocks, groups_per_block, group, group] diagonal sub-blocks F^-1_QQ."""
    blocks, size = finv.num_blocks, finv.block_size
    if size % group:
        raise ValueError(f"Fisher block size {size} is not a multiple of the group size {group}")
    per_block = size // group
    tiled = finv.inverse.view(blocks, per_block, group, per_block, group)
    return torch.diagonal(tiled, dim1=1, dim2=3).permute(0, 3, 1, 2)


def group_coefficients(weights: torch.Tensor, finv: BlockFisherInverse, group: int) -> torch.Tensor:
    """``(F^-1_QQ)^-1 w_Q`` for every group, as [num_blocks, block_size]."""
    w = weights.view(finv.num_blocks, -1, group)
    if group == 1:
        return (w.squeeze(-1) / finv.diagonal()).view(finv.num_blocks, -1)
    solved = torch.linalg.solve(group_inverse_blocks(finv, group), w.unsqueeze(-1)).squeeze(-1)
    return solved.reshape(finv.num_blocks, -1)


def obs_saliency(weights: torch.Tensor, finv: BlockFisherInverse, group: int) -> torch.Tensor:
    """OBS saliency of each group, [num_blocks, block_size // group]; ``weights`` is blocked."""
    coefficients = group_coefficients(weights, finv, group)
    products = (weights * coefficients).view(finv.num_blocks, -1, group)
    return 0.5 * products.sum(dim=-1)


def obs_update(weights: torch.Tensor, finv: BlockFisherInverse, pruned: torch.Tensor, group: int) -> torch.Tensor:
    """Blocked weights after removing the groups marked in ``pruned`` (a [num_blocks, block_size] bool).

    The pruned entries come out exactly zero.
    """
    coefficients = group_coefficients(weights, finv, group) * pruned
    updated = weights - finv.matvec(coefficients)
    return updated.masked_fill(pruned, 0.0)


def magnitude_saliency(weights: torch.Tensor, group: int) -> torch.Tensor:
    """Squared L2 norm of each group of consecutive entries (the magnitude baseline), flat [groups]."""
    return weights.reshape(-1, group).pow(2).sum(dim=-1)
