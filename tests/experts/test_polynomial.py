"""Polynomial expert: cubic motion, linear rotation and temporal RBF opacity against direct formulas."""

import math

import pytest
import torch

from moegs.experts import build_expert


def _expert(**cfg):
    g = torch.Generator().manual_seed(0)
    e = build_expert("polynomial", torch.rand(16, 3, generator=g), torch.rand(16, 3, generator=g), **cfg)
    with torch.no_grad():
        e.splats["motion"].normal_()
        e.splats["omega"].normal_(std=0.3)
        e.splats["t_scale"].normal_(std=0.5)
    return e


@pytest.mark.parametrize("t", [0.0, 0.25, 0.9])
def test_motion_rotation_opacity_match_analytic_formulas(t):
    e = _expert()
    s = {k: v.detach().double() for k, v in e.splats.items()}
    g = e(t)
    dt = t - s["t_center"]
    b1, b2, b3 = s["motion"][:, 0:3], s["motion"][:, 3:6], s["motion"][:, 6:9]
    means = s["means"] + b1 * dt[:, None] + b2 * dt[:, None] ** 2 + b3 * dt[:, None] ** 3
    torch.testing.assert_close(g.means.detach().double(), means, rtol=1e-5, atol=1e-5)
    q = s["quats"] + s["omega"] * dt[:, None]
    torch.testing.assert_close(g.quats.detach().double(), q / q.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-6)
    opac = torch.sigmoid(s["opacities"]) * torch.exp(-(dt / torch.exp(s["t_scale"])) ** 2)
    torch.testing.assert_close(g.opacities.detach().double(), opac, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g.scales.detach().double(), torch.exp(s["scales"]))


def test_temporal_center_learns_only_through_opacity():
    e = _expert()
    e(0.4).means.sum().backward()
    assert e.splats["t_center"].grad is None or float(e.splats["t_center"].grad.abs().sum()) == 0.0
    e.zero_grad()
    e(0.4).opacities.sum().backward()
    assert float(e.splats["t_center"].grad.abs().sum()) > 0


def test_temporal_rbf_gradient_matches_finite_differences():
    e = _expert()
    e.double()
    tc = e.splats["t_center"]
    torch.autograd.gradcheck(lambda c: torch.exp(-((0.7 - c) / torch.exp(e.splats["t_scale"])) ** 2),
                             (tc.detach().clone().requires_grad_(),))
    e.temporal_opacity(0.7).sum().backward()
    ref = (2 * (0.7 - tc.detach()) / torch.exp(2 * e.splats["t_scale"].detach())
           * torch.exp(-((0.7 - tc.detach()) / torch.exp(e.splats["t_scale"].detach())) ** 2))
    torch.testing.assert_close(tc.grad, ref)


def test_point_times_set_temporal_centres():
    pts, cols = torch.rand(5, 3), torch.rand(5, 3)
    times = torch.tensor([0.0, 0.2, 0.4, 0.6, 1.0])
    e = build_expert("polynomial", pts, cols, point_times=times, t_scale_init=-2.0)
    torch.testing.assert_close(e.splats["t_center"].detach(), times)
    assert float((e(0.0).opacities[-1] / torch.sigmoid(e.splats["opacities"][-1])).detach()) == pytest.approx(
        math.exp(-(1.0 / math.exp(-2.0)) ** 2), rel=1e-4, abs=1e-30)
    with pytest.raises(ValueError):
        build_expert("polynomial", pts, cols, point_times=torch.tensor([0.0, 2.0, 0, 0, 0]))
    with pytest.raises(ValueError):
        build_expert("polynomial", pts, cols, point_times=torch.zeros(3))
