"""Opacity and scale of Gaussians that replace one Gaussian by several copies (MCMC relocation).

"3D Gaussian Splatting as Markov Chain Monte Carlo" (Kheradmand et al. 2024, eq. 9): when a Gaussian of
opacity o and scale s is shared by n copies, each copy gets

    o_n = 1 - (1 - o)^(1/n)
    s_n = s * o / sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k / sqrt(k + 1) * o_n^(k+1)

so that n stacked copies have the original peak opacity and about the same rendered footprint.
"""

import math
from typing import Tuple

import torch
from torch import Tensor


def binomial_table(n_max: int = 51, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``[n_max, n_max]`` table with ``C(n, k)`` at ``[n, k]`` for k ≤ n, zeros above the diagonal."""
    table = torch.zeros(n_max, n_max, dtype=dtype, device=device)
    for n in range(n_max):
        for k in range(n + 1):
            table[n, k] = math.comb(n, k)
    return table


def compute_relocation(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> Tuple[Tensor, Tensor]:
    """Opacity and scale of each copy when a Gaussian is split into ``ratios`` copies (eq. 9 above).

    Args:
        opacities: ``[N]`` opacities in (0, 1].
        scales: ``[N, 3]`` linear scales (world units).
        ratios: ``[N]`` integer number of copies, clamped to ``[1, n_max]``.
        binoms: ``[n_max, n_max]`` binomial table (see :func:`binomial_table`).

    Returns:
        ``new_opacities [N]`` and ``new_scales [N, 3]``, in the dtype of ``opacities``.
    """
    if opacities.dim() != 1:
        raise ValueError(f"opacities must be [N], got {tuple(opacities.shape)}")
    n = opacities.shape[0]
    if scales.shape != (n, 3):
        raise ValueError(f"scales must be [N, 3] = {(n, 3)}, got {tuple(scales.shape)}")
    if ratios.shape != (n,):
        raise ValueError(f"ratios must be [N] = {(n,)}, got {tuple(ratios.shape)}")
    if binoms.dim() != 2 or binoms.shape[0] != binoms.shape[1]:
        raise ValueError(f"binoms must be a square [n_max, n_max] table, got {tuple(binoms.shape)}")
    n_max = binoms.shape[0]
    counts = ratios.clamp(1, n_max).long()
    dtype = opacities.dtype
    new_opac = 1.0 - torch.pow(1.0 - opacities, 1.0 / counts.to(dtype))  # [N]

    # denom = sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k / sqrt(k+1) o_n^(k+1)
    #       = sum_k w_k(n) (-1)^k / sqrt(k+1) o_n^(k+1) with w_k(n) = sum_{i=k+1..n} C(i-1, k).
    b = binoms.to(device=opacities.device, dtype=dtype)
    rows = torch.arange(n_max, device=opacities.device)
    k = torch.arange(n_max, device=opacities.device)
    used = rows[None, :] < counts[:, None]  # [N, n_max]: row i-1 = 0..n-1 is summed
    weights = (b[None, :, :] * used[:, :, None].to(dtype)).sum(1)  # [N, n_max] over k
    sign = torch.where(k % 2 == 0, 1.0, -1.0).to(dtype)
    terms = sign / torch.sqrt((k + 1).to(dtype)) * new_opac[:, None] ** (k + 1).to(dtype)  # [N, n_max]
    denom = (weights * terms).sum(-1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_opac, new_scales
