"""moegs.rasterize_experts / moegs.rasterization against independent references."""

import pytest
import torch

import moegs
from tests.reference_pipeline import reference_experts
from tests.scenes import random_scene


def _args(s, W, H):
    return (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], W, H)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("K,R", [(1, 0), (3, 2), (8, 3)])
def test_rasterize_experts_matches_reference(dtype, tol, K, R):
    s, W, H = random_scene(n=80, n_cams=2, dtype=dtype, seed=K)
    ids = torch.randint(0, K, (80,), dtype=torch.int32)
    router = torch.randn(80, R, dtype=dtype) if R else None
    bg = torch.rand(K, 3, dtype=dtype)
    out = moegs.rasterize_experts(*_args(s, W, H), ids, K, router_features=router, backgrounds=bg,
                                  router_background=0.5)
    c, a, d, r = reference_experts(s, W, H, ids, K, router=router, backgrounds=bg, router_background=0.5)
    assert out.colors.shape == (2, K, H, W, 3) and out.alphas.shape == (2, K, H, W, 1)
    assert out.depths.shape == (2, K, H, W, 1)
    torch.testing.assert_close(out.colors.double(), c, atol=tol, rtol=0)
    torch.testing.assert_close(out.alphas.double(), a, atol=tol, rtol=0)
    torch.testing.assert_close(out.depths.double(), d, atol=tol * 10, rtol=tol)
    if R:
        assert out.router.shape == (2, K, H, W, R)
        torch.testing.assert_close(out.router.double(), r, atol=tol * 10, rtol=0)
    else:
        assert out.router is None
    assert float(a.amax()) > 0.5  # the scene is not empty


def test_single_pass_equals_separate_calls():
    K = 4
    s, W, H = random_scene(n=150, n_cams=2, seed=3)
    ids = torch.randint(0, K, (150,), dtype=torch.int32)
    router = torch.randn(150, 2)
    out = moegs.rasterize_experts(*_args(s, W, H), ids, K, router_features=router)
    for k in range(K):
        m = ids == k
        sk = {n: (v[m] if n not in ("viewmats", "Ks") else v) for n, v in s.items()}
        one = moegs.rasterize_experts(*_args(sk, W, H), torch.zeros(int(m.sum()), dtype=torch.int32), 1,
                                      router_features=router[m])
        assert (out.colors[:, k] - one.colors[:, 0]).abs().max() <= 1e-6
        assert (out.alphas[:, k] - one.alphas[:, 0]).abs().max() <= 1e-6
        assert (out.depths[:, k] - one.depths[:, 0]).abs().max() <= 1e-6
        assert (out.router[:, k] - one.router[:, 0]).abs().max() <= 1e-6


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_rasterization_sh_matches_reference(sh_degree):
    s, W, H = random_scene(n=70, n_cams=2, seed=5)
    s["colors"] = torch.randn(70, 16, 3) * 0.3
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), sh_degree=sh_degree, packed=False)
    c, a, _, _ = reference_experts(s, W, H, torch.zeros(70, dtype=torch.int32), 1, sh_degree=sh_degree)
    torch.testing.assert_close(colors.double(), c[:, 0], atol=2e-5, rtol=0)
    torch.testing.assert_close(alphas.double(), a[:, 0], atol=2e-5, rtol=0)


@pytest.mark.parametrize("mode", ["RGB", "D", "ED", "RGB+D", "RGB+ED"])
def test_render_modes(mode):
    s, W, H = random_scene(n=60, n_cams=1, seed=6)
    bg = torch.rand(1, 3)
    colors, alphas, _ = moegs.rasterization(*_args(s, W, H), render_mode=mode, backgrounds=bg)
    c, a, d, _ = reference_experts(s, W, H, torch.zeros(60, dtype=torch.int32), 1, backgrounds=bg)
    c, a, d = c[:, 0], a[:, 0], d[:, 0]
    ed = d / a.clamp_min(1e-10)
    want = {"RGB": c, "D": d, "ED": ed, "RGB+D": torch.cat([c, d], -1), "RGB+ED": torch.cat([c, ed], -1)}[mode]
    assert colors.shape == want.shape
    torch.testing.assert_close(colors.double(), want, atol=1e-4, rtol=1e-5)


def test_antialiased_matches_reference():
    s, W, H = random_scene(n=60, n_cams=2, seed=7)
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), rasterize_mode="antialiased", packed=False)
    c, a, _, _ = reference_experts(s, W, H, torch.zeros(60, dtype=torch.int32), 1, antialiased=True)
    torch.testing.assert_close(colors.double(), c[:, 0], atol=2e-5, rtol=0)
    vis = (meta["radii"] > 0).all(-1)
    assert bool((meta["opacities"][vis] < s["opacities"][None].expand(2, -1)[vis]).all())


def test_packed_equals_dense():
    s, W, H = random_scene(n=90, n_cams=3, seed=8)
    leaves = {k: v.clone().requires_grad_(k != "Ks") for k, v in s.items()}
    outs = {}
    for packed in (False, True):
        for v in leaves.values():
            v.grad = None
        colors, alphas, meta = moegs.rasterization(*_args(leaves, W, H), packed=packed)
        meta["means2d"].retain_grad()
        (colors * torch.linspace(0, 1, 3)).sum().backward()
        outs[packed] = (colors.detach(), alphas.detach(), meta,
                        {k: v.grad.clone() for k, v in leaves.items() if v.grad is not None})
    d, p = outs[False], outs[True]
    torch.testing.assert_close(d[0], p[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(d[1], p[1], atol=1e-6, rtol=0)
    sel = (d[2]["radii"] > 0).all(-1)
    cam, gid = sel.nonzero(as_tuple=True)
    assert torch.equal(p[2]["camera_ids"], cam) and torch.equal(p[2]["gaussian_ids"], gid)
    assert torch.equal(p[2]["batch_ids"], torch.zeros_like(cam))
    assert p[2]["radii"].shape == (len(cam), 2) and torch.equal(p[2]["radii"], d[2]["radii"][sel])
    torch.testing.assert_close(p[2]["means2d"], d[2]["means2d"][sel])
    torch.testing.assert_close(p[2]["means2d"].grad, d[2]["means2d"].grad[sel], atol=1e-6, rtol=1e-5)
    for k in d[3]:
        torch.testing.assert_close(p[3][k], d[3][k], atol=1e-5, rtol=1e-5)


def test_batch_dims_equal_per_scene_calls():
    s, W, H = random_scene(n=50, n_cams=2, batch=(2,), seed=9)
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), packed=False)
    assert colors.shape == (2, 2, H, W, 3) and meta["radii"].shape == (2, 2, 50, 2)
    assert meta["n_batches"] == 2 and meta["n_cameras"] == 2
    for b in range(2):
        sb = {k: v[b] for k, v in s.items()}
        cb, ab, _ = moegs.rasterization(*_args(sb, W, H), packed=False)
        torch.testing.assert_close(colors[b], cb, atol=0, rtol=0)
        torch.testing.assert_close(alphas[b], ab, atol=0, rtol=0)
    colors_p, _, meta_p = moegs.rasterization(*_args(s, W, H), packed=True)
    torch.testing.assert_close(colors_p, colors, atol=1e-6, rtol=0)
    assert set(meta_p["batch_ids"].tolist()) == {0, 1}


def test_per_camera_colors():
    s, W, H = random_scene(n=40, n_cams=2, seed=10)
    per_cam = torch.rand(2, 40, 5)
    colors, _, _ = moegs.rasterization(*_args({**s, "colors": per_cam}, W, H))
    assert colors.shape == (2, H, W, 5)
    for c in range(2):
        one, _, _ = moegs.rasterization(*_args({**s, "colors": per_cam[c], "viewmats": s["viewmats"][c:c + 1],
                                                 "Ks": s["Ks"][c:c + 1]}, W, H))
        torch.testing.assert_close(colors[c:c + 1], one, atol=1e-6, rtol=0)


def test_absgrad_attribute():
    s, W, H = random_scene(n=40, n_cams=1, seed=11)
    means = s["means"].clone().requires_grad_(True)
    colors, _, meta = moegs.rasterization(*_args({**s, "means": means}, W, H), absgrad=True, packed=False)
    meta["means2d"].retain_grad()
    colors.sum().backward()
    absgrad = meta["means2d"].absgrad
    assert absgrad.shape == meta["means2d"].shape
    assert bool((absgrad >= meta["means2d"].grad.abs() - 1e-6).all())
    assert float(absgrad.sum()) > 0


def test_zero_gaussians_returns_background():
    s, W, H = random_scene(n=0, n_cams=2)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    for packed in (False, True):
        colors, alphas, meta = moegs.rasterization(*_args(s, W, H), backgrounds=bg, packed=packed)
        assert colors.shape == (2, H, W, 3)
        torch.testing.assert_close(colors, bg[:, None, None, :].expand(2, H, W, 3))
        assert float(alphas.abs().max()) == 0.0


def test_all_culled_behind_camera():
    s, W, H = random_scene(n=30, n_cams=1)
    s["means"] = s["means"] * torch.tensor([1.0, 1.0, -1.0])
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), packed=False)
    assert int((meta["radii"] > 0).sum()) == 0 and float(alphas.max()) == 0.0
