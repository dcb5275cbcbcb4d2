"""moegs.compat.inria against a brute-force float64 model of diff-gaussian-rasterization."""

import math

import pytest
import torch

import moegs
from moegs.compat.inria import GaussianRasterizationSettings, GaussianRasterizer
from tests.compat import inria_reference as ref

W, H = 40, 27  # three by two 16-pixel tiles, the last ones partial


def make_scene(n=40, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([3.0, 2.2, 1.5], dtype=dtype)
    scales = 0.03 + 0.25 * torch.rand(n, 3, generator=g, dtype=dtype)
    rots = torch.randn(n, 4, generator=g, dtype=dtype)
    rots = rots / rots.norm(dim=-1, keepdim=True)
    opac = 0.2 + 0.75 * torch.rand(n, 1, generator=g, dtype=dtype)
    opac[: n // 4] = 0.998  # above the 0.99 clamp: opaque layers saturate pixels (early stop)
    shs = 0.4 * torch.randn(n, 16, 3, generator=g, dtype=dtype)
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return dict(means=means, scales=scales, rots=rots, opac=opac, shs=shs, colors=colors)


def make_settings(dtype=torch.float64, antialiasing=None, dx=0.0, dy=0.0, scale_modifier=1.0, sh_degree=3,
                  bg=(0.1, 0.2, 0.3), eye=(0.3, -0.4, -3.5)):
    view, proj, campos, tx, ty = ref.camera(eye, (0.0, 0.0, 0.0), W, H, 1.1, dx, dy, dtype)
    return GaussianRasterizationSettings(
        image_height=H, image_width=W, tanfovx=tx, tanfovy=ty, bg=torch.tensor(bg, dtype=dtype),
        scale_modifier=scale_modifier, viewmatrix=view, projmatrix=proj, sh_degree=sh_degree, campos=campos,
        prefiltered=False, debug=False, antialiasing=antialiasing,
    )


def reference(s, sc, colors, cov3d, means2d_offset=None, antialiasing=False):
    n = sc["means"].shape[0]
    off = torch.zeros(n, 2, dtype=torch.float64) if means2d_offset is None else means2d_offset
    return ref.render_reference(sc["means"], off, sc["opac"][:, 0], colors, cov3d, s.viewmatrix, s.projmatrix,
                                s.tanfovx, s.tanfovy, W, H, s.bg, antialiasing)


@pytest.mark.parametrize("case", ["shs_scale_rot", "precomp", "antialiased_offcentre", "scale_modifier"])
def test_forward_matches_bruteforce(case):
    sc = make_scene()
    kw = {}
    if case == "antialiased_offcentre":
        kw = dict(antialiasing=True, dx=0.15, dy=-0.1)
    if case == "scale_modifier":
        kw = dict(scale_modifier=0.7, antialiasing=False)
    s = make_settings(**kw)
    means2d = torch.zeros_like(sc["means"])
    rast = GaussianRasterizer(s)
    if case == "precomp":
        cov = ref.cov_from_scale_rot(sc["scales"], sc["rots"])
        out = rast(sc["means"], means2d, sc["opac"], colors_precomp=sc["colors"],
                   cov3D_precomp=moegs.ops.covar_matrix_to_triu(cov))
        want = reference(s, sc, sc["colors"], cov)
    else:
        out = rast(sc["means"], means2d, sc["opac"], shs=sc["shs"], scales=sc["scales"], rotations=sc["rots"])
        cov = ref.cov_from_scale_rot(sc["scales"] * s.scale_modifier, sc["rots"])
        colors = ref.sh_colors(sc["shs"], sc["means"], s.campos, 3)
        want = reference(s, sc, colors, cov, antialiasing=bool(s.antialiasing))
    assert len(out) == (2 if s.antialiasing is None else 3)
    color, radii = out[0], out[1]
    assert color.shape == (3, H, W) and radii.shape == (sc["means"].shape[0],) and radii.dtype == torch.int32
    assert (radii > 0).sum() > 20
    assert torch.equal(radii.long(), want[1])
    torch.testing.assert_close(color, want[0], rtol=1e-10, atol=1e-10)
    if len(out) == 3:
        assert out[2].shape == (1, H, W)
        torch.testing.assert_close(out[2], want[2], rtol=1e-10, atol=1e-10)


def test_tile_rectangle_rule_is_the_3dgs_one():
    # A Gaussian whose square bound ends a fraction of a pixel into the next tile is not
    # drawn there (3DGS rounds the rectangle's end down); the reference models that rule.
    sc = make_scene(n=1)
    s = make_settings()
    sc["means"] = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    sc["scales"] = torch.full((1, 3), 0.35, dtype=torch.float64)
    sc["opac"] = torch.full((1, 1), 0.95, dtype=torch.float64)
    cov = ref.cov_from_scale_rot(sc["scales"], sc["rots"])
    out = GaussianRasterizer(s)(sc["means"], torch.zeros(1, 3, dtype=torch.float64), sc["opac"],
                                colors_precomp=sc["colors"], cov3D_precomp=moegs.ops.covar_matrix_to_triu(cov))
    want = reference(s, sc, sc["colors"], cov)
    torch.testing.assert_close(out[0], want[0], rtol=1e-10, atol=1e-10)


def _loss_weights(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_gradients_match_float64_autograd_of_bruteforce():
    sc = make_scene(n=30, seed=1)
    s = make_settings(antialiasing=True)
    n = sc["means"].shape[0]
    wc, wd = _loss_weights((3, H, W), 1), _loss_weights((1, H, W), 2)

    def leaves():
        return {k: sc[k].clone().requires_grad_(True) for k in ("means", "scales", "rots", "opac", "shs")}

    a = leaves()
    means2d = torch.zeros(n, 3, dtype=torch.float64, requires_grad=True)
    color, radii, inv = GaussianRasterizer(s)(a["means"], means2d, a["opac"], shs=a["shs"], scales=a["scales"],
                                              rotations=a["rots"])
    ((color * wc).sum() + (inv * wd).sum()).backward()

    b = leaves()
    off = torch.zeros(n, 2, dtype=torch.float64, requires_grad=True)
    colors = ref.sh_colors(b["shs"], b["means"], s.campos, 3)
    cov = ref.cov_from_scale_rot(b["scales"], b["rots"])
    rc, rr, ri = ref.render_reference(b["means"], off, b["opac"][:, 0], colors, cov, s.viewmatrix, s.projmatrix,
                                      s.tanfovx, s.tanfovy, W, H, s.bg, antialiasing=True)
    ((rc * wc).sum() + (ri * wd).sum()).backward()

    assert torch.equal(radii.long(), rr)
    for k in a:
        assert a[k].grad.abs().max() > 0, k
        torch.testing.assert_close(a[k].grad, b[k].grad, rtol=1e-7, atol=1e-9, msg=k)
    torch.testing.assert_close(means2d.grad[:, :2], off.grad, rtol=1e-7, atol=1e-9)
    assert torch.all(means2d.grad[:, 2] == 0)


def test_precomputed_inputs_gradients_match():
    sc = make_scene(n=25, seed=2)
    s = make_settings()
    cov = ref.cov_from_scale_rot(sc["scales"], sc["rots"]).detach()
    cov_a = moegs.ops.covar_matrix_to_triu(cov).clone().requires_grad_(True)
    col_a = sc["colors"].clone().requires_grad_(True)
    color, _ = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"],
                                     colors_precomp=col_a, cov3D_precomp=cov_a)
    wc = _loss_weights((3, H, W), 3)
    (color * wc).sum().backward()
    # cov3D_precomp is the upper triangle: its off-diagonal entries stand for both mirror entries.
    cov_b = cov_a.detach().clone().requires_grad_(True)
    col_b = sc["colors"].clone().requires_grad_(True)
    full = moegs.ops.covar_triu_to_matrix(cov_b)
    rc, _, _ = reference(s, sc, col_b, full)
    (rc * wc).sum().backward()
    torch.testing.assert_close(col_a.grad, col_b.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(cov_a.grad, cov_b.grad, rtol=1e-7, atol=1e-9)


def test_means2d_gradient_is_ndc_units_by_finite_differences():
    sc = make_scene(n=20, seed=3)
    s = make_settings()
    n = sc["means"].shape[0]
    colors = ref.sh_colors(sc["shs"], sc["means"], s.campos, 3)
    cov = ref.cov_from_scale_rot(sc["scales"], sc["rots"])
    wc = _loss_weights((3, H, W), 4)
    means2d = torch.zeros(n, 3, dtype=torch.float64, requires_grad=True)
    color, radii = GaussianRasterizer(s)(sc["means"], means2d, sc["opac"], shs=sc["shs"], scales=sc["scales"],
                                         rotations=sc["rots"])
    (color * wc).sum().backward()
    g = means2d.grad
    idx = torch.argsort(g[:, :2].norm(dim=-1), descending=True)[:4]
    eps = 1e-6
    for i in idx.tolist():
        for axis in range(2):
            off = torch.zeros(n, 2, dtype=torch.float64)
            off[i, axis] = eps
            lp = (reference(s, sc, colors, cov, off)[0] * wc).sum()
            lm = (reference(s, sc, colors, cov, -off)[0] * wc).sum()
            fd = (lp - lm) / (2 * eps)
            assert abs(float(g[i, axis]) - float(fd)) <= 1e-5 * max(1.0, abs(float(fd))), (i, axis)
    # NDC units: one NDC unit spans W/2 pixels, so the pixel gradient is smaller by W/2.
    assert g[:, :2].abs().max() > 1.0


def test_float32_close_to_float64():
    sc = make_scene(seed=4)
    s64, s32 = make_settings(), make_settings(dtype=torch.float32)
    args = ("means", "opac")
    out64 = GaussianRasterizer(s64)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"], shs=sc["shs"],
                                    scales=sc["scales"], rotations=sc["rots"])
    f = {k: v.float() for k, v in sc.items()}
    out32 = GaussianRasterizer(s32)(f["means"], torch.zeros_like(f["means"]), f["opac"], shs=f["shs"],
                                    scales=f["scales"], rotations=f["rots"])
    assert args and out32[0].dtype == torch.float32
    torch.testing.assert_close(out32[0].double(), out64[0], rtol=1e-3, atol=2e-3)


def test_gsplat_numerics_match_moegs_rasterization():
    sc = make_scene(seed=5)
    s = make_settings(antialiasing=True, dx=0.1, dy=0.05)
    color, radii, inv = GaussianRasterizer(s, numerics="gsplat")(
        sc["means"], torch.zeros_like(sc["means"]), sc["opac"], shs=sc["shs"], scales=sc["scales"],
        rotations=sc["rots"])
    w2c = s.viewmatrix.T
    fovx = 2 * math.atan(s.tanfovx)
    K = torch.tensor([[W / (2 * s.tanfovx), 0, W / 2 * 1.1], [0, H / (2 * s.tanfovy), H / 2 * 1.05], [0, 0, 1]],
                     dtype=torch.float64)
    assert fovx > 0
    rc, ra, meta = moegs.rasterization(
        sc["means"], sc["rots"], sc["scales"], sc["opac"][:, 0], sc["shs"], w2c[None], K[None], W, H,
        sh_degree=3, near_plane=0.2, backgrounds=s.bg[None], rasterize_mode="antialiased", packed=False)
    torch.testing.assert_close(color, rc[0].permute(2, 0, 1), rtol=1e-9, atol=1e-9)
    assert torch.equal(radii, meta["radii"][0].max(-1).values.to(torch.int32))


def test_variant_selects_outputs_and_override():
    sc = make_scene(n=10)
    for aa, n_out in ((None, 2), (False, 3), (True, 3)):
        s = make_settings(antialiasing=aa)
        out = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"],
                                    colors_precomp=sc["colors"], scales=sc["scales"], rotations=sc["rots"])
        assert len(out) == n_out
    s = make_settings()
    out = GaussianRasterizer(s, return_invdepth=True)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"],
                                                      colors_precomp=sc["colors"], scales=sc["scales"],
                                                      rotations=sc["rots"])
    assert len(out) == 3 and out[2].shape == (1, H, W)


def test_twelve_positional_fields_and_module_alias():
    from moegs.compat.diff_gaussian_rasterization import GaussianRasterizationSettings as S2
    from moegs.compat.diff_gaussian_rasterization import GaussianRasterizer as R2

    s = make_settings()
    s12 = S2(*tuple(s)[:12])
    assert S2 is GaussianRasterizationSettings and R2 is GaussianRasterizer
    assert s12.antialiasing is None and len(S2._fields) == 13


def test_split_dc_and_rest_equals_shs():
    sc = make_scene(n=15)
    s = make_settings()
    a = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"], shs=sc["shs"],
                              scales=sc["scales"], rotations=sc["rots"])
    b = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"], dc=sc["shs"][:, :1],
                              shs=sc["shs"][:, 1:], scales=sc["scales"], rotations=sc["rots"])
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)


def test_mark_visible_is_view_z_beyond_near():
    s = make_settings()
    pts = torch.randn(200, 3, dtype=torch.float64) * 4
    vis = GaussianRasterizer(s).markVisible(pts)
    z = (torch.cat([pts, torch.ones(200, 1, dtype=torch.float64)], 1) @ s.viewmatrix)[:, 2]
    assert vis.dtype == torch.bool and torch.equal(vis, z > 0.2)
    assert 0 < int(vis.sum()) < 200


def test_culled_behind_near_plane():
    sc = make_scene(n=5)
    s = make_settings()
    # put one Gaussian on the camera centre and one behind it
    sc["means"][0] = s.campos
    sc["means"][1] = 2 * s.campos
    _, radii = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"],
                                     colors_precomp=sc["colors"], scales=sc["scales"], rotations=sc["rots"])
    assert radii[0] == 0 and radii[1] == 0 and (radii[2:] > 0).any()


@pytest.mark.parametrize("bad, msg", [
    (dict(shs=None, colors_precomp=None), "exactly one of shs or colors_precomp"),
    (dict(colors_precomp="c"), "exactly one of shs or colors_precomp"),
    (dict(rotations=None), "scales and rotations"),
    (dict(cov3D_precomp=torch.zeros(10, 6, dtype=torch.float64)), "scales and rotations"),
    (dict(opacities=torch.rand(9, 1, dtype=torch.float64)), "opacities"),
    (dict(means2D=torch.zeros(10, 2, dtype=torch.float64)), "means2D"),
    (dict(shs=torch.zeros(10, 4, 3, dtype=torch.float64)), "SH coefficients"),
    (dict(means3D="nan"), "NaN"),
    (dict(scales=torch.rand(10, 3)), "dtype"),
    (dict(rotations=torch.zeros(10, 4, dtype=torch.float64)), "zero quaternion"),
])
def test_bad_inputs_raise_clear_errors(bad, msg):
    sc = make_scene(n=10)
    s = make_settings()
    kw = dict(means3D=sc["means"].clone(), means2D=torch.zeros(10, 3, dtype=torch.float64), opacities=sc["opac"],
              shs=sc["shs"], scales=sc["scales"], rotations=sc["rots"])
    for k, v in bad.items():
        if v == "c":
            v = sc["colors"]
        if v == "nan":
            v = kw[k].clone()
            v[3, 1] = float("nan")
        kw[k] = v
    with pytest.raises((ValueError, TypeError), match=msg):
        GaussianRasterizer(s)(**kw)


def test_bad_settings_raise():
    sc = make_scene(n=4)
    kw = dict(means3D=sc["means"], means2D=torch.zeros(4, 3, dtype=torch.float64), opacities=sc["opac"],
              colors_precomp=sc["colors"], scales=sc["scales"], rotations=sc["rots"])
    s = make_settings()
    with pytest.raises(ValueError, match="numerics"):
        GaussianRasterizer(s, numerics="exact")
    with pytest.raises(ValueError, match="bg"):
        GaussianRasterizer(s._replace(bg=torch.zeros(4, dtype=torch.float64)))(**kw)
    with pytest.raises(ValueError, match="viewmatrix"):
        GaussianRasterizer(s._replace(viewmatrix=torch.eye(3, dtype=torch.float64)))(**kw)
    with pytest.raises(ValueError, match="image_width"):
        GaussianRasterizer(s._replace(image_width=0))(**kw)
    with pytest.raises(ValueError, match="tanfovx"):
        GaussianRasterizer(s._replace(tanfovx=float("nan")))(**kw)
    with pytest.raises(ValueError, match="sh_degree"):
        GaussianRasterizer(s._replace(sh_degree=4))(**kw)


def test_opaque_stack_clamp_and_early_stop():
    # Four nearly opaque layers over the image centre: alpha is clamped to 0.99 and each
    # pixel stops once the transmittance would fall below 1e-4 (during the third layer).
    n = 4
    sc = make_scene(n=n, seed=6)
    s = make_settings(eye=(0.0, 0.0, -3.5))
    sc["means"] = torch.tensor([[0.0, 0.0, 0.3 * k] for k in range(n)], dtype=torch.float64)
    sc["scales"] = torch.full((n, 3), 0.6, dtype=torch.float64)
    sc["opac"] = torch.full((n, 1), 0.9999, dtype=torch.float64)
    sc["colors"] = torch.eye(4, 3, dtype=torch.float64) + 0.5
    cov = ref.cov_from_scale_rot(sc["scales"], sc["rots"])
    color, _ = GaussianRasterizer(s)(sc["means"], torch.zeros(n, 3, dtype=torch.float64), sc["opac"],
                                     colors_precomp=sc["colors"], cov3D_precomp=moegs.ops.covar_matrix_to_triu(cov))
    want = reference(s, sc, sc["colors"], cov)[0]
    torch.testing.assert_close(color, want, rtol=1e-12, atol=1e-12)
    centre = color[:, H // 2, W // 2]
    # first layer 0.99, second 0.99 * 0.01; the third would leave T < 1e-4 and is not drawn
    expected = 0.99 * sc["colors"][0] + 0.0099 * sc["colors"][1] + 1e-4 * s.bg
    torch.testing.assert_close(centre, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("numerics", ["inria", "gsplat"])
def test_no_gaussians_gives_background(numerics):
    s = make_settings()
    z = torch.zeros(0, 3, dtype=torch.float64)
    color, radii = GaussianRasterizer(s, numerics=numerics)(
        z, z.clone(), torch.zeros(0, 1, dtype=torch.float64), colors_precomp=z.clone(), scales=z.clone(),
        rotations=torch.zeros(0, 4, dtype=torch.float64))
    assert radii.shape == (0,)
    torch.testing.assert_close(color, s.bg[:, None, None].expand(3, H, W))


def test_empty_tensors_stand_for_absent_inputs():
    # 3DGS renderers pass torch.Tensor([]) for the inputs they do not use
    sc = make_scene(n=12)
    s = make_settings()
    empty = torch.tensor([], dtype=torch.float64)
    a = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"], shs=empty,
                              colors_precomp=sc["colors"], scales=sc["scales"], rotations=sc["rots"],
                              cov3D_precomp=empty)
    b = GaussianRasterizer(s)(sc["means"], torch.zeros_like(sc["means"]), sc["opac"], colors_precomp=sc["colors"],
                              scales=sc["scales"], rotations=sc["rots"])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
