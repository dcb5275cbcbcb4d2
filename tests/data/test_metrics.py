import math

import numpy as np
import pytest
import torch

from moegs.metrics import lpips, normalized_mutual_info, psnr, ssim


def test_psnr_known_value():
    a = torch.zeros(4, 5, 3)
    b = torch.full((4, 5, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-5)
    # batch: mean of per-image PSNRs
    x = torch.stack([a, a])
    y = torch.stack([b, torch.full((4, 5, 3), 0.01)])
    assert psnr(x, y) == pytest.approx(30.0, abs=1e-5)


def _ssim_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Direct float64 SSIM: explicit 11x11 Gaussian sums with zero padding, per pixel and channel."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)
    H, W, C = x.shape
    C1, C2 = 0.01**2, 0.03**2
    xp = np.pad(x, ((5, 5), (5, 5), (0, 0)))
    yp = np.pad(y, ((5, 5), (5, 5), (0, 0)))
    total = 0.0
    for c in range(C):
        for i in range(H):
            for j in range(W):
                px = xp[i : i + 11, j : j + 11, c]
                py = yp[i : i + 11, j : j + 11, c]
                mx, my = (w * px).sum(), (w * py).sum()
                vx = (w * px * px).sum() - mx * mx
                vy = (w * py * py).sum() - my * my
                cxy = (w * px * py).sum() - mx * my
                total += ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    return total / (H * W * C)


def test_ssim_matches_direct_formula():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(13, 15, 3))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    assert ssim(torch.tensor(x), torch.tensor(y)) == pytest.approx(_ssim_direct(x, y), abs=1e-10)


def test_ssim_properties():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.uniform(size=(20, 20, 3)), dtype=torch.float32)
    y = torch.tensor(rng.uniform(size=(20, 20, 3)), dtype=torch.float32)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    assert ssim(x, y) < 0.2
    noisy = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(x, y) < ssim(x, noisy) < 1.0


def test_metric_bad_input():
    with pytest.raises(ValueError, match="shapes"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="NaN"):
        ssim(torch.full((4, 4, 3), float("nan")), torch.zeros(4, 4, 3))
    with pytest.raises(TypeError):
        psnr(torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(4, 4, 3, dtype=torch.uint8))


def test_lpips_optional():
    v = lpips(torch.zeros(16, 16, 3), torch.zeros(16, 16, 3))
    assert v is None or v == pytest.approx(0.0, abs=1e-6)


def _h(ps):
    return -sum(p * math.log(p) for p in ps if p > 0)


def test_nmi_hand_computed():
    # identical partitions up to renaming -> 1
    assert normalized_mutual_info([0, 0, 1, 1], [5, 5, 3, 3]) == pytest.approx(1.0)
    # independent: a = [0,0,1,1], b = [0,1,0,1] -> MI 0
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    # a = [0,0,0,1], b = [0,0,1,1]: joint p(0,0)=1/2, p(0,1)=1/4, p(1,1)=1/4
    mi = 0.5 * math.log(0.5 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.25 * 0.5))
    expected = mi / (0.5 * (_h([0.75, 0.25]) + _h([0.5, 0.5])))
    assert normalized_mutual_info([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(expected, abs=1e-12)
    # -1 entries are ignored
    assert normalized_mutual_info([0, 0, 0, 1, -1], [0, 0, 1, 1, 0]) == pytest.approx(expected, abs=1e-12)
    # a single class on both sides -> 1; on one side only -> 0
    assert normalized_mutual_info([2, 2, 2], [1, 1, 1]) == 1.0
    assert normalized_mutual_info([2, 2, 2], [0, 1, 1]) == 0.0


def test_nmi_bad_input():
    with pytest.raises(ValueError, match="shapes"):
        normalized_mutual_info([0, 1], [0, 1, 2])
    with pytest.raises(TypeError):
        normalized_mutual_info([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="no labelled"):
        normalized_mutual_info([-1, -1], [0, 1])
