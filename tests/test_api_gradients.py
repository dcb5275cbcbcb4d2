"""Gradients of the whole pipeline: VJPs against the float64 reference, gradcheck, determinism."""

import pytest
import torch

import moegs
from tests.reference_pipeline import reference_experts
from tests.scenes import random_scene

GRAD_KEYS = ("means", "quats", "scales", "opacities", "colors", "viewmats")


def _cos_rel(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    cos = float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-300))
    rel = float((a - b).norm() / b.norm().clamp_min(1e-300))
    return cos, rel


@pytest.mark.parametrize("K,R", [(1, 0), (3, 2)])
def test_vjp_matches_float64_reference(K, R):
    s, W, H = random_scene(n=60, n_cams=2, seed=20 + K)
    ids = torch.randint(0, K, (60,), dtype=torch.int32)
    router = torch.randn(60, R) if R else None
    bg = torch.rand(K, 3)
    g = torch.Generator().manual_seed(1)
    cot = [torch.randn(2, K, H, W, n, generator=g, dtype=torch.float64) for n in (3, 1, 1, R)]

    def grads(dtype, fn):
        leaves = {k: s[k].to(dtype).clone().requires_grad_(True) for k in GRAD_KEYS}
        extra = {"bg": bg.to(dtype).clone().requires_grad_(True)}
        if R:
            extra["router"] = router.to(dtype).clone().requires_grad_(True)
        sc = {**{k: v.to(dtype) for k, v in s.items()}, **leaves}
        outs = fn(sc, extra)
        loss = sum((o.double() * c).sum() for o, c in zip(outs, cot) if o is not None)
        loss.backward()
        return {k: v.grad for k, v in {**leaves, **extra}.items()}

    def ours(sc, extra):
        args = [sc[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
        o = moegs.rasterize_experts(*args, W, H, ids, K, router_features=extra.get("router"),
                                    backgrounds=extra["bg"])
        return o.colors, o.alphas, o.depths, o.router

    def theirs(sc, extra):
        return reference_experts(sc, W, H, ids, K, router=extra.get("router"), backgrounds=extra["bg"])

    got, want = grads(torch.float32, ours), grads(torch.float64, theirs)
    for k in want:
        cos, rel = _cos_rel(got[k], want[k])
        assert cos >= 0.9999 and rel <= 1e-4, f"{k}: cos {cos:.7f} rel {rel:.2e}"
    got64 = grads(torch.float64, ours)
    for k in want:
        cos, rel = _cos_rel(got64[k], want[k])
        assert rel <= 1e-9, f"{k} (float64): rel {rel:.2e}"


def test_gradcheck_tiny_scene():
    s, W, H = random_scene(n=6, n_cams=1, width=12, height=10, dtype=torch.float64, seed=3)
    s["scales"] = s["scales"] * 4  # large footprints: every Gaussian touches many pixels
    ids = torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.int32)

    def fn(means, quats, scales, opacities, colors, viewmats, router, bg):
        o = moegs.rasterize_experts(means, quats, scales, opacities, colors, viewmats, s["Ks"], W, H, ids, 2,
                                    router_features=router, backgrounds=bg)
        return o.colors, o.alphas, o.depths, o.router

    inputs = tuple(s[k].clone().requires_grad_(True) for k in GRAD_KEYS) + (
        torch.randn(6, 2, dtype=torch.float64, requires_grad=True),
        torch.rand(2, 3, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_backward_is_deterministic_across_threads():
    s, W, H = random_scene(n=400, n_cams=2, width=67, height=45, seed=4)
    ids = torch.randint(0, 3, (400,), dtype=torch.int32)
    router = torch.randn(400, 2)

    def run():
        leaves = {k: s[k].clone().requires_grad_(True) for k in GRAD_KEYS}
        r = router.clone().requires_grad_(True)
        args = [leaves[k] if k in leaves else s[k] for k in
                ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
        o = moegs.rasterize_experts(*args, W, H, ids, 3, router_features=r)
        g = torch.Generator().manual_seed(0)
        loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in (o.colors, o.alphas, o.depths, o.router))
        loss.backward()
        return [leaves[k].grad.clone() for k in GRAD_KEYS] + [r.grad.clone()]

    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = run()
        torch.set_num_threads(2)
        b = run()
        c = run()
    finally:
        torch.set_num_threads(n)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(y, z)
