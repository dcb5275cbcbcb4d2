"""Every registered expert satisfies the DeformationExpert interface."""

import math

import numpy as np
import pytest
import torch

from moegs.experts import EXPERTS, GaussianSet, build_expert
from moegs.experts.base import ROUTER_INIT, SH_C0, knn_mean_sq_dist

NAMES = sorted(EXPERTS)


def _cloud(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g) * 2 - 1, torch.rand(n, 3, generator=g)


def test_registry_has_all_six():
    assert set(EXPERTS) == {"static", "mlp", "hexplane", "embedding", "polynomial", "keyframe"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sh_degree", [0, 3])
def test_forward_shapes_dtypes_ranges(name, sh_degree):
    pts, cols = _cloud()
    e = build_expert(name, pts, cols, sh_degree=sh_degree, scene_radius=2.0)
    assert e.name == name and e.num_gaussians == 64
    for t in (0.0, 0.37, 1.0):
        g = e(t)
        assert isinstance(g, GaussianSet) and len(g) == 64
        assert g.means.shape == (64, 3) and g.quats.shape == (64, 4) and g.scales.shape == (64, 3)
        assert g.opacities.shape == (64,) and g.sh.shape == (64, (sh_degree + 1) ** 2, 3)
        for v in (g.means, g.quats, g.scales, g.opacities, g.sh):
            assert v.dtype == torch.float32 and torch.isfinite(v).all()
        assert (g.scales > 0).all()
        assert (g.opacities > 0).all() and (g.opacities < 1).all()
        assert (g.quats.norm(dim=-1) > 1e-3).all()


@pytest.mark.parametrize("name", NAMES)
def test_splats_layout_and_init(name):
    pts, cols = _cloud()
    e = build_expert(name, pts, cols, sh_degree=2)
    s = e.splats
    n = e.num_gaussians
    assert all(v.shape[0] == n for v in s.values())
    assert s["sh0"].shape == (n, 1, 3) and s["shN"].shape == (n, 8, 3) and s["router"].shape == (n, 3)
    torch.testing.assert_close(s["router"].detach(), torch.tensor(ROUTER_INIT).expand(n, 3))
    torch.testing.assert_close(torch.sigmoid(s["opacities"].detach()), torch.full((n,), 0.1))
    torch.testing.assert_close(s["sh0"].detach()[:, 0] * SH_C0 + 0.5, cols)
    # log-scale = log sqrt(mean squared distance to the 3 nearest neighbours), checked by brute force in float64
    d2 = torch.cdist(pts.double(), pts.double()).square() + torch.eye(n, dtype=torch.float64) * 1e9
    ref = torch.log(torch.sqrt(d2.topk(3, dim=1, largest=False).values.mean(1)))
    torch.testing.assert_close(s["scales"].detach(), ref[:, None].expand(n, 3).float(), rtol=1e-4, atol=1e-5)
    lrs = e.splat_lrs()
    assert set(lrs) == set(s.keys())
    assert all(isinstance(v, float) and v >= 0 and math.isfinite(v) for v in lrs.values())
    for grp in e.network_param_groups():
        assert {"params", "lr", "name"} <= set(grp) and grp["lr"] > 0 and len(grp["params"]) > 0


def test_position_lr_scales_with_radius():
    pts, cols = _cloud()
    for name in NAMES:
        a = build_expert(name, pts, cols, scene_radius=1.0).splat_lrs()["means"]
        b = build_expert(name, pts, cols, scene_radius=3.0).splat_lrs()["means"]
        assert b == pytest.approx(3 * a)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    pts, cols = _cloud()
    cfg = {"keyframe": {"dynamic_fraction": 0.5}}.get(name, {})  # half static, half on keyframes
    e = build_expert(name, pts, cols, sh_degree=1, **cfg)
    e.step_schedule(10, 10)  # end of training: every stage of the expert is active
    torch.manual_seed(1)
    with torch.no_grad():  # a generic trained-like state (e.g. temporal windows not covering all of [0, 1])
        for key, v in e.splats.items():
            if key != "dynamic" and v.is_floating_point():
                v.add_(0.05 * torch.randn_like(v))
    w = [torch.randn(64, k) for k in (3, 4, 3, 1, 12)]
    loss = 0.0
    for t in (0.0, 0.45, 1.0):
        g = e(t)
        loss = loss + sum((x.reshape(64, -1) * wi).sum() for x, wi in
                          zip((g.means, g.quats, g.scales, g.opacities, g.sh), w))
        loss = loss + e.regularization(t)
    loss.backward()
    # "router" is read by the mixture, not by the expert's own forward
    params = {f"splats.{k}": v for k, v in e.splats.items() if k != "router"}
    for grp in e.network_param_groups():
        params.update({f"{grp['name']}[{i}]": p for i, p in enumerate(grp["params"])})
    for key, p in params.items():
        if p.numel() == 0 or not p.requires_grad:
            continue
        reached = p.grad is not None and float(p.grad.abs().sum()) > 0
        assert reached, f"{name}: no gradient reaches {key}"


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises(name):
    pts, cols = _cloud()
    e = build_expert(name, pts, cols)
    for bad in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="time"):
            e(bad)
    with pytest.raises(TypeError):
        e("0.5")
    with pytest.raises(ValueError, match="scalar"):
        e(torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(e(np.float32(0.25)).means, e(torch.tensor(0.25)).means)
    with pytest.raises(ValueError):
        build_expert(name, pts[:, :2], cols[:, :2])
    with pytest.raises(ValueError):
        build_expert(name, pts, cols[:10])
    bad_pts = pts.clone()
    bad_pts[3, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        build_expert(name, bad_pts, cols)
    with pytest.raises(TypeError):
        build_expert(name, pts.long(), cols)
    with pytest.raises(ValueError):
        build_expert(name, pts, cols, sh_degree=4)
    with pytest.raises(ValueError):
        build_expert(name, pts, cols, scene_radius=0.0)
    with pytest.raises(TypeError):
        build_expert(name, pts, cols, no_such_option=1)


def test_unknown_expert_name():
    pts, cols = _cloud()
    with pytest.raises(ValueError, match="unknown expert"):
        build_expert("nope", pts, cols)


def test_knn_single_and_duplicate_points():
    assert knn_mean_sq_dist(torch.zeros(1, 3)).shape == (1,)
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]])
    torch.testing.assert_close(knn_mean_sq_dist(pts), torch.tensor([14 / 3, 16 / 3, 22 / 3, 32 / 3]))
    e = build_expert("static", torch.zeros(5, 3), torch.rand(5, 3))  # coincident points: finite scales
    assert torch.isfinite(e(0.5).scales).all()


def test_static_is_time_invariant():
    pts, cols = _cloud()
    e = build_expert("static", pts, cols)
    a, b = e(0.0), e(0.9)
    for x, y in zip((a.means, a.quats, a.scales, a.opacities, a.sh), (b.means, b.quats, b.scales, b.opacities, b.sh)):
        assert torch.equal(x, y)
