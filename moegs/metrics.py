"""Image-quality and clustering metrics.

psnr: ``10 log10(1 / MSE)`` per image on [0, 1] RGB, averaged over a batch.
ssim: Gaussian window 11x11, sigma 1.5, per channel, zero "same" padding (the 3DGS convention),
C1 = 0.01^2, C2 = 0.03^2, mean of the SSIM map over pixels, channels and images.
lpips: AlexNet LPIPS from the ``lpips`` package, only when it and its backbone weights are already
on this machine (never downloads); otherwise None.
normalized_mutual_info: NMI with arithmetic-mean normalisation, MI / ((H(a) + H(b)) / 2), the same
as scikit-learn's default ``average_method="arithmetic"``.
"""

import math
import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _as_batch(img, ref, what: str):
    a = torch.as_tensor(np.asarray(img) if not isinstance(img, Tensor) else img)
    b = torch.as_tensor(np.asarray(ref) if not isinstance(ref, Tensor) else ref)
    if not (a.is_floating_point() and b.is_floating_point()):
        raise TypeError(f"{what}: images must be floating point in [0, 1], got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 3:
        a, b = a[None], b[None]
    if a.dim() != 4 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{what}: expected [H, W, 3] or [B, H, W, 3], got {tuple(a.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError(f"{what}: images contain NaN or infinite values")
    return a, b


def psnr(img, ref) -> float:
    """Mean per-image PSNR in dB of img vs ref ([H, W, 3] or [B, H, W, 3], values in [0, 1])."""
    a, b = _as_batch(img, ref, "psnr")
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)
    vals = -10.0 * torch.log10(mse.clamp_min(1e-20))
    return float(vals.mean())


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float32) -> Tensor:
    """[size, size] normalised 2D Gaussian window."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).to(dtype)


def ssim_map(img: Tensor, ref: Tensor) -> Tensor:
    """Differentiable SSIM map [B, C, H, W] of img vs ref given as [B, H, W, C] tensors."""
    x = img.permute(0, 3, 1, 2)
    y = ref.permute(0, 3, 1, 2).to(x.dtype)
    C = x.shape[1]
    w = gaussian_window(dtype=x.dtype).to(x.device).expand(C, 1, SSIM_WINDOW, SSIM_WINDOW)
    pad = SSIM_WINDOW // 2

    def blur(z):
        return F.conv2d(z, w, padding=pad, groups=C)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    num = (2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mx * mx + my * my + SSIM_C1) * (sxx + syy + SSIM_C2)
    return num / den


def ssim_tensor(img: Tensor, ref: Tensor) -> Tensor:
    """Differentiable mean SSIM (scalar tensor); img, ref: [H, W, C] or [B, H, W, C]."""
    if img.dim() == 3:
        img, ref = img[None], ref[None]
    return ssim_map(img, ref).mean()


def ssim(img, ref) -> float:
    """Mean SSIM of img vs ref ([H, W, 3] or [B, H, W, 3] in [0, 1]); see the module docstring."""
    a, b = _as_batch(img, ref, "ssim")
    with torch.no_grad():
        return float(ssim_map(a.double(), b.double()).mean())


_LPIPS_MODEL = None


def _alexnet_weights_available() -> bool:
    ckpt = os.path.join(torch.hub.get_dir(), "checkpoints")
    return os.path.isdir(ckpt) and any(f.startswith("alexnet") for f in os.listdir(ckpt))


def lpips(img, ref) -> Optional[float]:
    """AlexNet LPIPS (inputs in [0, 1], ``normalize=True``), or None when the ``lpips`` package or
    the AlexNet backbone weights are not already on this machine. Never downloads."""
    global _LPIPS_MODEL
    a, b = _as_batch(img, ref, "lpips")
    if _LPIPS_MODEL is None:
        try:
            import lpips as _lp  # optional dependency
        except ImportError:
            return None
        if not _alexnet_weights_available():
            return None
        try:
            _LPIPS_MODEL = _lp.LPIPS(net="alex", verbose=False).eval()
        except Exception:
            return None
    with torch.no_grad():
        d = _LPIPS_MODEL(a.permute(0, 3, 1, 2).float(), b.permute(0, 3, 1, 2).float(), normalize=True)
    return float(d.mean())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(a, b) -> float:
    """NMI between two integer label arrays of the same shape (pairs where either is -1 are ignored).

    Arithmetic normalisation: MI / ((H(a) + H(b)) / 2), natural log (the base cancels). When both
    labelings have a single class the result is 1.0; when only one does it is 0.0.
    """
    x = np.asarray(a.cpu() if isinstance(a, Tensor) else a)
    y = np.asarray(b.cpu() if isinstance(b, Tensor) else b)
    if x.shape != y.shape:
        raise ValueError(f"normalized_mutual_info: shapes differ: {x.shape} vs {y.shape}")
    if x.dtype.kind not in "iub" or y.dtype.kind not in "iub":
        raise TypeError(f"normalized_mutual_info: integer labels expected, got {x.dtype} and {y.dtype}")
    x = x.reshape(-1).astype(np.int64)
    y = y.reshape(-1).astype(np.int64)
    keep = (x != -1) & (y != -1)
    x, y = x[keep], y[keep]
    if x.size == 0:
        raise ValueError("normalized_mutual_info: no labelled pairs (all -1 or empty)")
    if x.min() < -1 or y.min() < -1:
        raise ValueError("normalized_mutual_info: labels must be >= 0 (or -1 for unknown)")
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    nx, ny = xi.max() + 1, yi.max() + 1
    joint = np.bincount(xi * ny + yi, minlength=nx * ny).reshape(nx, ny).astype(np.float64)
    if nx == 1 and ny == 1:
        return 1.0
    n = joint.sum()
    px = joint.sum(1) / n
    py = joint.sum(0) / n
    pxy = joint / n
    nz = pxy > 0
    mi = float((pxy[nz] * np.log(pxy[nz] / (px[:, None] * py[None, :])[nz])).sum())
    hx, hy = _entropy(joint.sum(1)), _entropy(joint.sum(0))
    denom = 0.5 * (hx + hy)
    if denom <= 0:
        return 0.0
    return float(min(max(mi / denom, 0.0), 1.0))


__all__ = ["psnr", "ssim", "ssim_tensor", "ssim_map", "gaussian_window", "lpips", "normalized_mutual_info"]
