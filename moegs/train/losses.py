"""Photometric training losses: L1 and D-SSIM (11×11 Gaussian window, σ = 1.5)."""

from torch import Tensor

from moegs import metrics


def ssim_map(img: Tensor, ref: Tensor) -> Tensor:
    """Differentiable per-pixel SSIM ``[3, H, W]`` of ``[H, W, 3]`` images in [0, 1] (zero padding at the border)."""
    if img.shape != ref.shape or img.dim() != 3 or img.shape[-1] != 3:
        raise ValueError(f"ssim needs two [H, W, 3] images of the same shape, got {tuple(img.shape)}, "
                         f"{tuple(ref.shape)}")
    return metrics.ssim_map(img[None], ref[None])[0]


def photometric_loss(img: Tensor, ref: Tensor, lambda_dssim: float = 0.2) -> Tensor:
    """``(1 − λ)·L1 + λ·(1 − SSIM)`` of ``[H, W, 3]`` images (λ = 0.2 as 3DGS and MoE-GS)."""
    l1 = (img - ref).abs().mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - ssim_map(img, ref).mean())
