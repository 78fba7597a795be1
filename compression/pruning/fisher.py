"""Block-diagonal inverse of the damped empirical Fisher, built by Woodbury updates.

For a weight vector split into blocks of size B, the damped empirical Fisher of block b from m gradients is
``F_b = damp * I + (1/m) * sum_k g_k g_k^T``. Its inverse starts at ``I / damp``; one gradient applies the
rank-1 update ``F^-1 <- F^-1 - (F^-1 g)(F^-1 g)^T / (m + g^T F^-1 g)`` (Sherman-Morrison), and a chunk of
gradients the equivalent rank-k Woodbury update. F itself is never formed.
"""

from __future__ import annotations

import torch


class BlockFisherInverse:
    """Inverse Fisher blocks for one flattened weight tensor of ``numel`` entries."""

    def __init__(
        self, numel: int, block_size: int, num_grads: int, damp: float, dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        if block_size < 1 or num_grads < 1 or damp <= 0:
            raise ValueError("block size and number of gradients must be positive and damping > 0")
        self.numel = numel
        self.block_size = block_size
        self.num_grads = num_grads
        self.num_blocks = -(-numel // block_size)
        self.padding = self.num_blocks * block_size - numel
        eye = torch.eye(block_size, dtype=dtype, device=device)
        self.inverse = (eye / damp).repeat(self.num_blocks, 1, 1)
        self.grads_seen = 0

    def blocks(self, flat: torch.Tensor) -> torch.Tensor:
        """A flat vector of ``numel`` entries as [num_blocks, block_size] (zero padded)."""
        flat = flat.reshape(-1).to(device=self.inverse.device, dtype=self.inverse.dtype)
        if self.padding:
            flat = torch.cat([flat, flat.new_zeros(self.padding)])
        return flat.view(self.num_blocks, self.block_size)

    def unblock(self, blocked: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`blocks`: back to a flat vector of ``numel`` entries."""
        return blocked.reshape(-1)[: self.numel]

    def add_gradients(self, grads: torch.Tensor) -> None:
        """Fold k gradient samples ([k, numel]) into every block's inverse at once.

        Woodbury with ``U = G / sqrt(m)``: ``F^-1 <- F^-1 - F^-1 G (m I + G^T F^-1 G)^-1 G^T F^-1``, which equals
        k successive Sherman-Morrison updates but reads the inverse once instead of k times.
        """
        grads = grads.reshape(grads.shape[0], -1)
        g = torch.stack([self.blocks(row) for row in grads], dim=-1)
        finv_g = torch.bmm(self.inverse, g)
        inner = torch.bmm(g.transpose(1, 2), finv_g)
        inner.diagonal(dim1=-2, dim2=-1).add_(self.num_grads)
        solved = torch.linalg.solve(inner, finv_g.transpose(1, 2))
        self.inverse.sub_(torch.bmm(finv_g, solved))
        self.grads_seen += grads.shape[0]

    def diagonal(self) -> torch.Tensor:
        """[num_blocks, block_size] diagonal of each block's inverse."""
        return torch.diagonal(self.inverse, dim1=-2, dim2=-1)

    def matvec(self, blocked: torch.Tensor) -> torch.Tensor:
        """F^-1 @ v block by block, for v given as [num_blocks, block_size]."""
        return torch.bmm(self.inverse, blocked.unsqueeze(-1)).squeeze(-1)
