"""HexPlane expert: plane sampling against a direct bilinear reference, field composition, regularisers."""

import numpy as np
import pytest
import torch

from moegs.experts import build_expert
from moegs.experts.hexplane import PLANE_PAIRS, TIME_PLANES, HexPlaneField, sample_plane


def _bilinear_ref(plane: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """float64 bilinear lookup of a [C, H, W] grid; coords in [−1, 1] map to pixel centres 0..W−1 / 0..H−1,
    clamped to the border."""
    C, H, W = plane.shape
    out = np.zeros((coords.shape[0], C))
    for i, (cx, cy) in enumerate(coords):
        x = min(max((cx + 1) / 2 * (W - 1), 0.0), W - 1)
        y = min(max((cy + 1) / 2 * (H - 1), 0.0), H - 1)
        x0, y0 = min(int(np.floor(x)), W - 2), min(int(np.floor(y)), H - 2)
        fx, fy = x - x0, y - y0
        out[i] = ((1 - fx) * (1 - fy) * plane[:, y0, x0] + fx * (1 - fy) * plane[:, y0, x0 + 1]
                  + (1 - fx) * fy * plane[:, y0 + 1, x0] + fx * fy * plane[:, y0 + 1, x0 + 1])
    return out


def test_sample_plane_matches_direct_bilinear():
    g = torch.Generator().manual_seed(0)
    plane = torch.randn(1, 5, 7, 9, generator=g, dtype=torch.float64)
    coords = torch.rand(200, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2  # includes outside (border)
    coords[:4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.25, -1.0]], dtype=torch.float64)
    out = sample_plane(plane, coords)
    np.testing.assert_allclose(out.numpy(), _bilinear_ref(plane[0].numpy(), coords.numpy()), rtol=1e-12, atol=1e-12)
    # grid points are hit exactly: coordinate (−1 + 2j/(W−1), −1 + 2i/(H−1)) gives plane[:, i, j]
    ij = torch.tensor([[2, 3], [6, 8], [0, 5]])
    c = torch.stack([-1 + 2 * ij[:, 1] / 8.0, -1 + 2 * ij[:, 0] / 6.0], dim=-1).double()
    torch.testing.assert_close(sample_plane(plane, c), plane[0, :, ij[:, 0], ij[:, 1]].t())


def test_field_is_product_over_planes_and_concat_over_levels():
    torch.manual_seed(0)
    field = HexPlaneField(spatial_res=(4, 5, 6), time_res=3, feat_dim=2, multires=(1, 2)).double()
    with torch.no_grad():
        for planes in field.levels:
            for p in planes:
                p.normal_()
    xyzt = torch.rand(10, 4, dtype=torch.float64) * 2 - 1
    out = field(xyzt)
    assert out.shape == (10, 4)
    for lvl, planes in enumerate(field.levels):
        ref = np.ones((10, 2))
        for plane, (a, b) in zip(planes, PLANE_PAIRS):
            ref *= _bilinear_ref(plane[0].detach().numpy(), xyzt[:, [a, b]].numpy())
        np.testing.assert_allclose(out[:, 2 * lvl:2 * lvl + 2].detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    assert [tuple(p.shape) for p in field.levels[1]][:3] == [(1, 2, 10, 8), (1, 2, 12, 8), (1, 2, 3, 8)]
    assert TIME_PLANES == [2, 4, 5]


def test_time_planes_start_at_one_so_the_initial_field_ignores_time():
    field = HexPlaneField(spatial_res=(8, 8, 8), time_res=5, feat_dim=3)
    x = torch.rand(20, 3) * 2 - 1
    a = field(torch.cat([x, torch.full((20, 1), -0.7)], -1))
    b = field(torch.cat([x, torch.full((20, 1), 0.9)], -1))
    torch.testing.assert_close(a, b)


def test_regularizers_match_direct_formulas():
    field = HexPlaneField(spatial_res=(4, 4, 4), time_res=6, feat_dim=1, multires=(1,))
    r0 = {k: v.detach() for k, v in field.smoothness().items()}
    assert float(r0["time_smooth"]) == 0.0 and float(r0["l1_time"]) == 0.0 and float(r0["plane_tv"]) > 0
    with torch.no_grad():
        for i, p in enumerate(field.levels[0]):
            h = p.shape[2]
            ramp = torch.arange(h, dtype=torch.float32)[:, None].expand(h, p.shape[3])
            p.copy_((ramp ** 2 if i in TIME_PLANES else 3 * ramp + 1)[None, None])
    r = {k: v.detach() for k, v in field.smoothness().items()}
    assert float(r["plane_tv"]) == 0.0  # linear along H: second difference vanishes
    assert float(r["time_smooth"]) == pytest.approx(3 * 4.0)  # (Δ² of u²) = 2, squared = 4, per time plane
    l1 = sum(float((1 - field.levels[0][i].detach()).abs().mean()) for i in TIME_PLANES)
    assert float(r["l1_time"]) == pytest.approx(l1)


def test_coarse_stage_has_no_deformation_and_no_regularization():
    g = torch.Generator().manual_seed(0)
    e = build_expert("hexplane", torch.rand(30, 3, generator=g), torch.rand(30, 3, generator=g), coarse_fraction=0.2)
    e.step_schedule(10, 100)
    out = e(0.6)
    torch.testing.assert_close(out.means, e.splats["means"])
    assert float(e.regularization(0.6).detach()) == 0.0
    e.step_schedule(20, 100)
    assert not torch.equal(e(0.6).means, e.splats["means"])
    assert float(e.regularization(0.6).detach()) > 0


def test_positions_are_normalised_by_the_point_cloud_box():
    pts = torch.tensor([[0.0, 0, 0], [2.0, 4.0, -6.0], [1.0, 1.0, -1.0]])
    e = build_expert("hexplane", pts, torch.rand(3, 3))
    c = e.normalized_coords(pts, 0.25)
    assert c.shape == (3, 4) and float(c.abs().max()) <= 1.0
    torch.testing.assert_close(c[:, 3], torch.full((3,), -0.5))
    np.testing.assert_allclose(c[:2, :3].abs().numpy(), np.full((2, 3), 1 / 1.1), rtol=1e-5)
