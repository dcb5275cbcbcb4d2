"""Photometric training losses: L1 and D-SSIM (11×11 Gaussian window, σ = 1.5)."""

import torch
import torch.nn.functional as F
from torch import Tensor

_C1 = 0.01**2
_C2 = 0.03**2


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim_map(img: Tensor, ref: Tensor) -> Tensor:
    """Differentiable per-pixel SSIM of ``[H, W, 3]`` images in [0, 1] (zero padding at the border)."""
    if img.shape != ref.shape or img.dim() != 3 or img.shape[-1] != 3:
        raise ValueError(f"ssim needs two [H, W, 3] images of the same shape, got {tuple(img.shape)}, "
                         f"{tuple(ref.shape)}")
    w = _gaussian_window(dtype=img.dtype)
    x = img.permute(2, 0, 1)[None]
    y = ref.permute(2, 0, 1)[None]
    conv = lambda z: F.conv2d(z, w, padding=5, groups=3)  # noqa: E731
    mx, my = conv(x), conv(y)
    sxx = conv(x * x) - mx * mx
    syy = conv(y * y) - my * my
    sxy = conv(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    return (num / den)[0]


def photometric_loss(img: Tensor, ref: Tensor, lambda_dssim: float = 0.2) -> Tensor:
    """``(1 − λ)·L1 + λ·(1 − SSIM)`` of ``[H, W, 3]`` images (λ = 0.2 as 3DGS and MoE-GS)."""
    l1 = (img - ref).abs().mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - ssim_map(img, ref).mean())
