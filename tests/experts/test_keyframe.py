"""Keyframe expert: Catmull-Rom Hermite positions, slerp rotations, static/dynamic split, bi-Gaussian opacity."""

import math

import numpy as np
import pytest
import torch

from moegs.experts import build_expert
from moegs.experts.keyframe import hermite_catmull_rom, slerp, slerp_keyframes

# Catmull-Rom segment p(u) = 0.5 · [1, u, u², u³] · M · [P_{k-1}, P_k, P_{k+1}, P_{k+2}]
CATMULL_ROM = 0.5 * np.array([[0, 2, 0, 0], [-1, 0, 1, 0], [2, -5, 4, -1], [-1, 3, -3, 1]], dtype=np.float64)


def _catmull_rom_ref(keys: np.ndarray, t: float) -> np.ndarray:
    """float64 matrix-form Catmull-Rom of [N, K, D] keys with linearly extrapolated end keys."""
    K = keys.shape[1]
    pad = np.concatenate([2 * keys[:, :1] - keys[:, 1:2], keys, 2 * keys[:, -1:] - keys[:, -2:-1]], axis=1)
    x = t * (K - 1)
    k = min(int(np.floor(x)), K - 2)
    u = x - k
    basis = np.array([1, u, u * u, u ** 3]) @ CATMULL_ROM  # [4]
    return np.einsum("j,njd->nd", basis, pad[:, k:k + 4])


def _qmul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _slerp_ref(q0, q1, u):
    """float64 slerp as q0 · (q0⁻¹ q1)^u via the axis-angle of the relative rotation (shorter arc)."""
    q0 = q0 / np.linalg.norm(q0)
    q1 = q1 / np.linalg.norm(q1)
    rel = _qmul(q0 * np.array([1, -1, -1, -1]), q1)
    if rel[0] < 0:
        rel = -rel
    half = math.atan2(np.linalg.norm(rel[1:]), rel[0])
    axis = rel[1:] / max(np.linalg.norm(rel[1:]), 1e-300)
    return _qmul(q0, np.concatenate([[math.cos(u * half)], math.sin(u * half) * axis]))


def test_hermite_hits_keyframes_exactly():
    keys = torch.randn(50, 7, 3)
    for k in range(7):
        torch.testing.assert_close(hermite_catmull_rom(keys, k / 6), keys[:, k], rtol=0, atol=1e-6)


@pytest.mark.parametrize("t", [0.0, 0.03, 0.2, 0.5, 0.61, 0.97, 1.0])
def test_hermite_matches_float64_matrix_form(t):
    keys = torch.randn(40, 6, 3, dtype=torch.float64)
    ref = _catmull_rom_ref(keys.numpy(), t)
    np.testing.assert_allclose(hermite_catmull_rom(keys, t).numpy(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hermite_catmull_rom(keys.float(), t).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_hermite_reproduces_linear_motion():
    d = torch.randn(10, 1, 3)
    keys = d * torch.linspace(0, 1, 5)[None, :, None]
    for t in (0.0, 0.13, 0.5, 0.88, 1.0):
        torch.testing.assert_close(hermite_catmull_rom(keys, t), d[:, 0] * t, rtol=1e-5, atol=1e-6)


def test_slerp_endpoints_and_float64_reference():
    g = torch.Generator().manual_seed(3)
    q0 = torch.randn(30, 4, generator=g, dtype=torch.float64)
    q1 = torch.randn(30, 4, generator=g, dtype=torch.float64)
    n0, n1 = q0 / q0.norm(dim=-1, keepdim=True), q1 / q1.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(slerp(q0, q1, 0.0), n0)
    same = slerp(q0, q1, 1.0)
    sign = torch.sign((same * n1).sum(-1, keepdim=True))
    torch.testing.assert_close(same, sign * n1)  # q and −q are the same rotation
    for u in (0.1, 0.5, 0.77):
        out = slerp(q0, q1, u).numpy()
        for i in range(30):
            ref = _slerp_ref(q0[i].numpy(), q1[i].numpy(), u)
            np.testing.assert_allclose(out[i], ref, rtol=1e-9, atol=1e-9)


def test_slerp_of_identical_quaternions_is_finite_with_gradient():
    q = torch.randn(5, 4, requires_grad=True)
    out = slerp(q, q.detach().clone(), 0.3)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()


def test_slerp_keyframes_hits_keyframes():
    keys = torch.nn.functional.normalize(torch.randn(20, 5, 4), dim=-1)
    for k in range(5):
        out = slerp_keyframes(keys, k / 4)
        torch.testing.assert_close(out.abs(), keys[:, k].abs(), rtol=0, atol=1e-6)


def _expert(**cfg):
    g = torch.Generator().manual_seed(0)
    return build_expert("keyframe", torch.rand(32, 3, generator=g), torch.rand(32, 3, generator=g), **cfg)


def test_static_gaussians_drift_linearly_and_dont_rotate():
    e = _expert(num_keyframes=5)
    with torch.no_grad():
        e.splats["drift"].normal_()
        e.splats["kf_means"].normal_()  # ignored while the Gaussians are static
    for t in (0.0, 0.4, 1.0):
        g = e(t)
        torch.testing.assert_close(g.means, e.splats["means"] + e.splats["drift"] * t)
        torch.testing.assert_close(g.quats, torch.nn.functional.normalize(e.splats["quats"], dim=-1))
        torch.testing.assert_close(g.opacities, torch.sigmoid(e.splats["opacities"]))


def test_dynamic_gaussians_follow_keyframes():
    e = _expert(num_keyframes=5, dynamic_fraction=1.0)
    with torch.no_grad():
        e.splats["kf_means"].normal_()
        e.splats["kf_quats"].normal_()
    for k in range(5):
        g = e(k / 4)
        torch.testing.assert_close(g.means, e.splats["means"] + e.splats["kf_means"][:, k], atol=1e-5, rtol=0)
        key_quats = torch.nn.functional.normalize(e.splats["kf_quats"][:, k], dim=-1)
        torch.testing.assert_close(g.quats.abs(), key_quats.abs(), atol=1e-5, rtol=0)


def test_keyframe_count_from_frames():
    assert _expert(num_frames=31, keyframe_interval=10).num_keyframes == 4
    assert _expert(num_frames=32, keyframe_interval=10).num_keyframes == 5
    with pytest.raises(ValueError):
        _expert(num_keyframes=1)


def test_bigaussian_opacity_formula():
    e = _expert(dynamic_fraction=1.0)
    with torch.no_grad():
        e.splats["t_center"].copy_(torch.tensor([0.3, 0.6]).repeat(32, 1))
        e.splats["t_logwidth"].copy_(torch.tensor([math.log(0.1), math.log(0.2)]).repeat(32, 1))
    base = torch.sigmoid(e.splats["opacities"].detach())
    wl, wr = 0.1 + e.min_width, 0.2 + e.min_width
    for t, f in ((0.1, math.exp(-(0.2 / wl) ** 2)), (0.3, 1.0), (0.45, 1.0), (0.6, 1.0),
                 (0.9, math.exp(-(0.3 / wr) ** 2))):
        torch.testing.assert_close(e(t).opacities.detach(), base * f)


def test_promotion_keeps_the_trajectory_and_marks_dynamic():
    e = _expert(num_keyframes=6, promote_fraction=0.25, promote_every=10, promote_window=(0.0, 1.0))
    with torch.no_grad():
        e.splats["drift"].normal_()
    before = [e(t).means.detach().clone() for t in (0.0, 0.33, 0.71, 1.0)]
    drift_norm = e.splats["drift"].detach().norm(dim=-1)
    e.step_schedule(10, 100)
    flag = e.splats["dynamic"].detach()
    assert int(flag.sum()) == 8
    assert drift_norm[flag > 0].min() >= drift_norm[flag == 0].max()  # the fastest ones moved
    after = [e(t).means.detach() for t in (0.0, 0.33, 0.71, 1.0)]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    e.step_schedule(15, 100)  # not a promotion step
    assert int(e.splats["dynamic"].sum()) == 8
    assert float(e.splat_lrs()["dynamic"]) == 0.0


def test_points_of_later_frames_start_dynamic_and_visible_around_their_frame():
    times = torch.arange(32).remainder(4).float() / 3  # four frames, 1/3 apart; frame 0 at indices 0, 4, ...
    e = _expert(num_keyframes=5, point_times=times)
    later = times > 0
    assert torch.equal(e.splats["dynamic"].detach(), later.float())
    torch.testing.assert_close(e.splats["t_center"].detach()[later], times[later, None].expand(-1, 2))
    assert torch.equal(e.splats["t_center"].detach()[~later], torch.tensor([0.0, 1.0]).expand(8, 2))
    width = 0.5 / 3  # half the frame gap: the total width exp(v) + min_width
    torch.testing.assert_close(torch.exp(e.splats["t_logwidth"].detach()[later]) + e.min_width,
                               torch.full((24, 2), width))
    # still trajectory at the seed position; full opacity at its own frame, e^-4 at the neighbouring frame
    base = torch.sigmoid(e.splats["opacities"].detach())
    i = 1  # seeded at t = 1/3
    with torch.no_grad():
        assert float(e(1 / 3).opacities[i] / base[i]) == pytest.approx(1.0, abs=1e-6)
        assert float(e(2 / 3).opacities[i] / base[i]) == pytest.approx(math.exp(-4.0), rel=1e-4)
        torch.testing.assert_close(e(2 / 3).means[i], e.splats["means"].detach()[i])
        # static Gaussians of frame 0 keep full opacity at every time
        assert float(e(1.0).opacities[0] / base[0]) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(_expert(num_keyframes=5, point_times=times, seed_width=0.1).splats["t_logwidth"].detach()[1],
                       torch.full((2,), math.log(0.1 - e.min_width)))


def test_point_times_are_validated():
    with pytest.raises(ValueError, match="shape"):
        _expert(point_times=torch.zeros(5))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        _expert(point_times=torch.full((32,), 1.5))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        _expert(point_times=torch.full((32,), float("nan")))
    with pytest.raises(ValueError, match="seed_width"):
        _expert(num_keyframes=5, point_times=torch.arange(32).remainder(2).float(), seed_width=0.01)
    with pytest.raises(ValueError, match="needs point_times"):
        _expert(seed_width=0.2)
    # a single time step: nothing is seeded dynamic
    assert float(_expert(point_times=torch.zeros(32)).splats["dynamic"].detach().sum()) == 0.0


def test_seed_width_default_is_bounded_below_when_frames_are_denser_than_keyframes():
    times = torch.arange(32).float() / 31  # 32 frames, 11 keyframes: half a frame gap is below the minimum width
    e = _expert(point_times=times)
    torch.testing.assert_close(torch.exp(e.splats["t_logwidth"].detach()[1:]) + e.min_width,
                               torch.full((31, 2), 1.5 * e.min_width))
