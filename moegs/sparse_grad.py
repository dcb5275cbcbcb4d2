"""Sparse COO gradients for the per-Gaussian inputs of a packed render (``sparse_grad=True``).

With ``packed=True`` only the Gaussians visible in at least one camera receive a gradient through the
projection. ``sparse_rows`` marks a ``[..., N, X]`` input so that its gradient comes back as a coalesced
sparse COO tensor whose sparse dims are the leading ``[..., N]`` dims, holding only the visible rows; the
rows are filled in once the pipeline knows which Gaussians are visible.
"""

from typing import Optional

import torch
from torch import Tensor


class VisibleRows:
    """Index of the visible Gaussians, set by the pipeline after projection.

    ``indices`` is ``[len(...) + 1, nnz]`` int64: coordinates of the visible rows in the ``[..., N]`` dims.
    """

    def __init__(self) -> None:
        self.indices: Optional[Tensor] = None

    def set_from_mask(self, visible: Tensor) -> None:
        """``visible``: ``[..., N]`` bool, True where a Gaussian is visible in any camera."""
        self.indices = visible.nonzero().T.contiguous()


class _SparseRowsGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, rows: VisibleRows) -> Tensor:
        ctx.rows = rows
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        idx = ctx.rows.indices
        if idx is None:
            raise RuntimeError("sparse_grad: the visible Gaussians were never recorded")
        values = grad[tuple(idx)]  # [nnz, X]
        sparse = torch.sparse_coo_tensor(idx, values, grad.shape, is_coalesced=True, check_invariants=False)
        return sparse, None


def sparse_rows(x: Optional[Tensor], rows: VisibleRows) -> Optional[Tensor]:
    """Returns ``x`` unchanged in value; its gradient becomes sparse COO over ``rows`` (dense rows kept)."""
    if not isinstance(x, Tensor) or not x.requires_grad:
        return x
    return _SparseRowsGrad.apply(x, rows)
