"""CUDA kernels against the CPU kernels on random scenes (forward and VJPs).

Every test here needs a CUDA device and is skipped without one (see conftest.py).
On a GPU machine, after building with CUDA kernels:

    MOEGS_FORCE_CUDA=1 pip install --no-build-isolation -e ".[test]" && python -m pytest -q tests/test_cuda.py
"""

import pytest
import torch

import moegs
from moegs import ops
from tests.scenes import random_scene

pytestmark = pytest.mark.cuda

GRAD_KEYS = ("means", "quats", "scales", "opacities", "colors", "viewmats")


def _vjp(fn, inputs, device, seed=0):
    """Outputs and input gradients of fn on `device` for fixed random cotangents."""
    leaves = [x.detach().to(device).requires_grad_(x.is_floating_point()) for x in inputs]
    outs = fn(*leaves)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    g = torch.Generator().manual_seed(seed)
    loss = 0
    for o in outs:
        if o is not None and o.is_floating_point():
            loss = loss + (o * torch.randn(o.shape, generator=g, dtype=o.dtype).to(device)).sum()
    grads = torch.autograd.grad(loss, [x for x in leaves if x.requires_grad], allow_unused=True)
    return [o.detach().cpu() for o in outs if o is not None], [None if g is None else g.cpu() for g in grads]


def _assert_close(a, b, tol=1e-4):
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
            continue
        if not x.is_floating_point():
            assert torch.equal(x, y)
            continue
        scale = max(1.0, float(y.abs().max()))
        assert float((x - y).abs().max()) <= tol * scale


def test_covariance_cuda_matches_cpu():
    q, s = torch.randn(500, 4), torch.rand(500, 3)
    cpu = _vjp(ops.quat_scale_to_covar, (q, s), "cpu")
    gpu = _vjp(ops.quat_scale_to_covar, (q, s), "cuda")
    _assert_close(cpu[0], gpu[0]), _assert_close(cpu[1], gpu[1])


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_projection_cuda_matches_cpu(camera_model):
    s, W, H = random_scene(n=300, n_cams=3)
    covars = ops.quat_scale_to_covar(s["quats"], s["scales"])

    def fn(means, covars, viewmats, Ks, opacities):
        return ops.project(means, covars, viewmats, Ks, W, H, calc_compensations=True,
                           camera_model=camera_model, opacities=opacities)

    args = (s["means"], covars, s["viewmats"], s["Ks"], s["opacities"])
    cpu, gpu = _vjp(fn, args, "cpu"), _vjp(fn, args, "cuda")
    _assert_close(cpu[0], gpu[0]), _assert_close(cpu[1], gpu[1])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_cuda_matches_cpu(degree):
    dirs, coeffs = torch.randn(400, 3), torch.randn(400, 16, 3) * 0.3
    fn = lambda d, c: ops.spherical_harmonics(degree, d, c)  # noqa: E731
    cpu, gpu = _vjp(fn, (dirs, coeffs), "cpu"), _vjp(fn, (dirs, coeffs), "cuda")
    _assert_close(cpu[0], gpu[0]), _assert_close(cpu[1], gpu[1])


def test_isect_cuda_matches_cpu_exactly():
    s, W, H = random_scene(n=2000, n_cams=2, width=250, height=190)
    covars = ops.quat_scale_to_covar(s["quats"], s["scales"])
    radii, means2d, depths, _, _ = ops.project(s["means"], covars, s["viewmats"], s["Ks"], W, H,
                                               opacities=s["opacities"])
    tw, th = (W + 15) // 16, (H + 15) // 16
    cpu = ops.isect_tiles(means2d, radii, depths, 16, tw, th)
    gpu = ops.isect_tiles(means2d.cuda(), radii.cuda(), depths.cuda(), 16, tw, th)
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())
    assert torch.equal(ops.isect_offset_encode(cpu[1], 2, tw, th),
                       ops.isect_offset_encode(gpu[1], 2, tw, th).cpu())


@pytest.mark.parametrize("K,R", [(1, 0), (4, 3), (8, 2), (16, 1)])
def test_rasterize_experts_cuda_matches_cpu(K, R):
    s, W, H = random_scene(n=600, n_cams=2, width=77, height=53, seed=K)
    ids = torch.randint(0, K, (600,), dtype=torch.int32)
    router = torch.randn(600, R)
    bg = torch.rand(K, 3)

    def fn(means, quats, scales, opacities, colors, viewmats, router, bg):
        o = moegs.rasterize_experts(means, quats, scales, opacities, colors, viewmats, s["Ks"].to(means.device),
                                    W, H, ids.to(means.device), K, router_features=router if R else None,
                                    backgrounds=bg)
        return o.colors, o.alphas, o.depths, o.router

    args = tuple(s[k] for k in GRAD_KEYS) + (router, bg)
    cpu, gpu = _vjp(fn, args, "cpu"), _vjp(fn, args, "cuda")
    _assert_close(cpu[0], gpu[0], 1e-4)
    _assert_close(cpu[1], gpu[1], 1e-3)


def test_rasterization_cuda_packed_and_absgrad():
    s, W, H = random_scene(n=500, n_cams=2, width=64, height=48)
    out = {}
    for dev in ("cpu", "cuda"):
        sd = {k: v.to(dev) for k, v in s.items()}
        colors, alphas, meta = moegs.rasterization(sd["means"], sd["quats"], sd["scales"], sd["opacities"],
                                                   sd["colors"], sd["viewmats"], sd["Ks"], W, H, packed=True,
                                                   absgrad=True)
        meta["means2d"].retain_grad()
        colors.sum().backward()
        out[dev] = (colors.detach().cpu(), meta["means2d"].grad.cpu(), meta["means2d"].absgrad.cpu())
    _assert_close(out["cpu"], out["cuda"], 1e-3)


def test_cuda_backward_is_deterministic():
    s, W, H = random_scene(n=800, n_cams=2, width=96, height=64)
    fn = lambda *a: moegs.rasterize_experts(*a, s["Ks"].cuda(), W, H,  # noqa: E731
                                            torch.arange(800, dtype=torch.int32, device="cuda") % 3, 3).colors
    args = tuple(s[k] for k in GRAD_KEYS)
    a, b = _vjp(fn, args, "cuda"), _vjp(fn, args, "cuda")
    for x, y in zip(a[1], b[1]):
        assert torch.equal(x, y)
