import math

import pytest
import torch

from moegs.router import PixelRouter, RouterMLP, pixel_rays, router_features
from tests.mixture.toy import toy_camera


def test_mlp_shape_and_no_bias():
    mlp = RouterMLP()
    shapes = [tuple(p.shape) for p in mlp.parameters()]
    assert shapes == [(6, 8), (3, 6), (1, 3)]
    assert sum(p.numel() for p in mlp.parameters()) == 69
    assert all(layer.bias is None for layer in mlp.layers)
    x = torch.randn(2, 5, 7, 8)
    assert mlp(x).shape == (2, 5, 7, 1)
    assert torch.equal(mlp(torch.zeros(4, 8)), torch.zeros(4, 1))  # bias-free: zero in, zero out
    with pytest.raises(ValueError, match="8 channels"):
        mlp(torch.randn(3, 7))


def test_mlp_matches_manual_relu_stack():
    mlp = RouterMLP().double()
    x = torch.randn(10, 8, dtype=torch.float64)
    W = [layer.weight for layer in mlp.layers]
    ref = torch.relu(torch.relu(x @ W[0].T) @ W[1].T) @ W[2].T
    torch.testing.assert_close(mlp(x), ref)


def test_router_features_and_rays():
    p = torch.randn(5, 3)
    f = router_features(p, 0.25)
    torch.testing.assert_close(f, torch.stack([p[:, 0], p[:, 1], 0.25 * p[:, 2]], 1))
    with pytest.raises(ValueError):
        router_features(torch.randn(5, 2), 0.1)
    cam = toy_camera(2, W=6, H=4)
    o, d = pixel_rays(cam.viewmat.double(), cam.K.double(), 6, 4)
    c2w = torch.linalg.inv(cam.viewmat.double())
    torch.testing.assert_close(o[1, 2], c2w[:3, 3])
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(4, 6, dtype=torch.float64))
    # pixel (row 1, col 2) centre, back-projected independently through K^-1 and the camera-to-world rotation
    pix = torch.tensor([2.5, 1.5, 1.0], dtype=torch.float64)
    ref = c2w[:3, :3] @ (torch.linalg.inv(cam.K.double()) @ pix)
    torch.testing.assert_close(d[1, 2], ref / ref.norm())


def test_one_temperature_and_logit_form():
    torch.manual_seed(0)
    r = PixelRouter(temperature=0.3).double()
    cam = toy_camera(0, W=5, H=3)
    maps = torch.randn(3, 3, 5, 3, dtype=torch.float64)
    gates, logits = r(maps, cam.viewmat, cam.K)
    o, d = pixel_rays(cam.viewmat.double(), cam.K.double(), 5, 3)
    x = torch.cat([maps[..., 1:], torch.cat([o, d], -1).expand(3, 3, 5, 6)], -1)
    torch.testing.assert_close(logits, maps[..., 0] + r.mlp(x)[..., 0])
    torch.testing.assert_close(gates, torch.softmax(logits / 0.3, 0))
    torch.testing.assert_close(gates.sum(0), torch.ones(3, 5, dtype=torch.float64))
    # equal features (an uncovered pixel: router background 1 for every expert) give equal gates
    g_eq, _ = r(torch.ones(4, 3, 5, 3, dtype=torch.float64), cam.viewmat, cam.K)
    torch.testing.assert_close(g_eq, torch.full((4, 3, 5), 0.25, dtype=torch.float64))
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="temperature"):
            PixelRouter(temperature=bad)


def test_router_init_is_seeded_and_does_not_touch_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = PixelRouter(seed=4)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = PixelRouter(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
