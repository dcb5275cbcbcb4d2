"""gsplat options of moegs.rasterization / moegs.rasterize_experts against the float64 oracle
(the projection twin and the brute-force multi-expert compositor in tests/reference_pipeline.py):
camera models, covars, radius_clip, channel counts, per-camera colours, scene-batch dims, and every
option again through the multi-expert renderer."""

import pytest
import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

import moegs
from tests.reference_pipeline import reference_experts
from tests.scenes import random_scene

KEYS = ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")
TOL = dict(atol=2e-5, rtol=0)


def _args(s, W, H):
    return tuple(s[k] for k in KEYS) + (W, H)


def _camera_scene(camera_model, n=80, n_cams=2, seed=0, d=3, batch=()):
    s, W, H = random_scene(n=n, n_cams=n_cams, seed=seed, d=d, batch=batch)
    if camera_model == "ortho":  # a short focal length keeps the orthographic footprint on screen
        Ks = s["Ks"].clone()
        Ks[..., 0, 0] = Ks[..., 1, 1] = 6.0
        s["Ks"] = Ks
    elif camera_model == "fisheye":  # wide angles: points up to ~60 degrees off axis
        m = s["means"].clone()
        m[..., :2] *= 2.5
        s["means"] = m
        Ks = s["Ks"].clone()
        Ks[..., 0, 0] = Ks[..., 1, 1] = 14.0
        s["Ks"] = Ks
    return s, W, H


def _rgb_ref(s, W, H, **kw):
    if kw.get("backgrounds") is not None:  # [C, D] -> [C, 1 expert, D]
        kw["backgrounds"] = kw["backgrounds"][..., None, :]
    c, a, d, _ = reference_experts(s, W, H, torch.zeros(s["means"].shape[-2], dtype=torch.int32), 1, **kw)
    return c[:, 0], a[:, 0], d[:, 0]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_camera_models_match_reference(camera_model, packed):
    s, W, H = _camera_scene(camera_model, seed=31)
    bg = torch.rand(2, 3)
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), camera_model=camera_model, packed=packed,
                                               backgrounds=bg, render_mode="RGB+D")
    c, a, d = _rgb_ref(s, W, H, camera_model=camera_model, backgrounds=bg)
    assert float(a.amax()) > 0.5 and float(a.amin()) < 0.1  # something is drawn, not everything is covered
    torch.testing.assert_close(colors[..., :3].double(), c, **TOL)
    torch.testing.assert_close(colors[..., 3:].double(), d, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(alphas.double(), a, **TOL)


@pytest.mark.parametrize("camera_model", ["ortho", "fisheye"])
def test_camera_model_gradients_match_float64_reference(camera_model):
    s, W, H = _camera_scene(camera_model, n=50, seed=32)
    g = torch.Generator().manual_seed(2)
    cot_c = torch.randn(2, H, W, 3, generator=g, dtype=torch.float64)
    cot_a = torch.randn(2, H, W, 1, generator=g, dtype=torch.float64)
    grad_keys = ("means", "quats", "scales", "opacities", "colors", "viewmats")

    def grads(render, dtype):
        leaves = {k: s[k].to(dtype).clone().requires_grad_(k in grad_keys) for k in KEYS}
        c, a = render(leaves)
        ((c.double() * cot_c).sum() + (a.double() * cot_a).sum()).backward()
        return {k: leaves[k].grad for k in grad_keys}

    got = grads(lambda x: moegs.rasterization(*_args(x, W, H), camera_model=camera_model)[:2], torch.float64)
    want = grads(lambda x: _rgb_ref(x, W, H, camera_model=camera_model)[:2], torch.float64)
    for k in grad_keys:
        assert float(want[k].abs().sum()) > 0, k
        torch.testing.assert_close(got[k], want[k], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("layout", ["matrix", "triu"])
def test_covars_input_matches_reference(layout):
    s, W, H = random_scene(n=70, n_cams=2, seed=33)
    covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], True, False, triu=(layout == "triu"))
    colors, alphas, _ = moegs.rasterization(s["means"], None, None, *_args(s, W, H)[3:], covars=covars)
    full, _ = _quat_scale_to_covar_preci(s["quats"].double(), s["scales"].double(), True, False, triu=False)
    c, a, _ = _rgb_ref(s, W, H, covars=full)
    torch.testing.assert_close(colors.double(), c, **TOL)
    torch.testing.assert_close(alphas.double(), a, **TOL)


def test_radius_clip_matches_reference():
    s, W, H = random_scene(n=90, n_cams=2, seed=34)
    clip = 3.0
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), radius_clip=clip, packed=False)
    full, _, meta_full = moegs.rasterization(*_args(s, W, H), packed=False)
    vis = (meta["radii"] > 0).all(-1)
    vis_full = (meta_full["radii"] > 0).all(-1)
    assert 0 < vis.sum() < vis_full.sum()  # the clip removes some Gaussians
    assert bool((meta_full["radii"][vis_full & ~vis] <= clip).all())
    c, a, _ = _rgb_ref(s, W, H, radius_clip=clip)
    torch.testing.assert_close(colors.double(), c, **TOL)
    torch.testing.assert_close(alphas.double(), a, **TOL)
    assert (colors - full).abs().max() > 1e-3


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("d", [1, 2, 7, 40])
def test_any_channel_count_matches_reference(d, packed):
    s, W, H = random_scene(n=60, n_cams=2, seed=35, d=d)
    bg = torch.rand(2, d)
    colors, alphas, _ = moegs.rasterization(*_args(s, W, H), backgrounds=bg, packed=packed)
    assert colors.shape == (2, H, W, d)
    c, a, _ = _rgb_ref(s, W, H, backgrounds=bg)
    torch.testing.assert_close(colors.double(), c, **TOL)
    torch.testing.assert_close(alphas.double(), a, **TOL)


def test_per_camera_colors_match_reference():
    s, W, H = random_scene(n=60, n_cams=3, seed=36)
    s["colors"] = torch.rand(3, 60, 5)
    colors, alphas, _ = moegs.rasterization(*_args(s, W, H))
    c, a, _ = _rgb_ref(s, W, H)
    torch.testing.assert_close(colors.double(), c, **TOL)
    torch.testing.assert_close(alphas.double(), a, **TOL)


@pytest.mark.parametrize("packed", [False, True])
def test_batch_dims_match_reference(packed):
    s, W, H = random_scene(n=50, n_cams=2, batch=(2, 2), seed=37)
    bg = torch.rand(2, 2, 2, 3)
    colors, alphas, meta = moegs.rasterization(*_args(s, W, H), backgrounds=bg, packed=packed)
    assert colors.shape == (2, 2, 2, H, W, 3)
    for i in range(2):
        for j in range(2):
            sij = {k: v[i, j] for k, v in s.items()}
            c, a, _ = _rgb_ref(sij, W, H, backgrounds=bg[i, j])
            torch.testing.assert_close(colors[i, j].double(), c, **TOL)
            torch.testing.assert_close(alphas[i, j].double(), a, **TOL)


# Every option once more through the multi-expert renderer (K = 3 experts, router features), against
# the oracle run with the same option.
EXPERT_OPTIONS = {
    "packed": ({"packed": True}, {}),
    "antialiased": ({"rasterize_mode": "antialiased"}, {"antialiased": True}),
    "ortho": ({"camera_model": "ortho"}, {"camera_model": "ortho"}),
    "fisheye": ({"camera_model": "fisheye"}, {"camera_model": "fisheye"}),
    "radius_clip": ({"radius_clip": 2.5}, {"radius_clip": 2.5}),
    "sh_degree": ({"sh_degree": 2}, {"sh_degree": 2}),
    "covars": ({}, {}),
    "per_camera_colors": ({}, {}),
    "channels_7": ({}, {}),
    "batch_dims": ({"packed": True}, {}),
}


@pytest.mark.parametrize("option", list(EXPERT_OPTIONS))
def test_multi_expert_options_match_reference(option):
    ours_kw, ref_kw = EXPERT_OPTIONS[option]
    K, R = 3, 2
    camera = ours_kw.get("camera_model", "pinhole")
    batch = (2,) if option == "batch_dims" else ()
    s, W, H = _camera_scene(camera, n=60, seed=38, d=7 if option == "channels_7" else 3, batch=batch)
    if option == "sh_degree":
        s["colors"] = torch.randn(60, 9, 3) * 0.3
    if option == "per_camera_colors":
        s["colors"] = torch.rand(2, 60, 3)
    ids = torch.randint(0, K, (*batch, 60), dtype=torch.int32)
    router = torch.randn(*batch, 60, R)
    D = s["colors"].shape[-1]
    bg = torch.rand(*batch, 1, K, D)
    covars = None
    if option == "covars":
        covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], True, False, triu=False)
        ref_kw = {"covars": covars}
        ours_kw = {"covars": covars}
    args = _args(s, W, H)
    if covars is not None:
        args = (args[0], None, None) + args[3:]
    out = moegs.rasterize_experts(*args[:9], ids, K, router_features=router, backgrounds=bg,
                                  router_background=0.25, **ours_kw)
    for b in range(batch[0] if batch else 1):
        pick = (lambda t: t[b]) if batch else (lambda t: t)
        sb = {k: pick(v) for k, v in s.items()}
        c, a, d, r = reference_experts(sb, W, H, pick(ids), K, router=pick(router), backgrounds=pick(bg),
                                       router_background=0.25, **ref_kw)
        assert float(a.amax()) > 0.3
        torch.testing.assert_close(pick(out.colors).double(), c, **TOL)
        torch.testing.assert_close(pick(out.alphas).double(), a, **TOL)
        torch.testing.assert_close(pick(out.depths).double(), d, atol=2e-4, rtol=1e-5)
        torch.testing.assert_close(pick(out.router).double(), r, atol=1e-4, rtol=0)
