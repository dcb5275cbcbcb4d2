"""moegs::project_{fwd,bwd}: EWA projection against gsplat's reference, our twin,
finite differences, and the culling / batching / determinism rules."""

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection

from moegs.ops import _reference as ref
from moegs.ops.covariance import covar_triu_to_matrix, quat_scale_to_covar
from moegs.ops.projection import project

W, H = 320, 240


def _look_at(eye, target, dtype):
    """World->camera [4, 4], OpenCV axes (x right, y down, z forward)."""
    z = target - eye
    z = z / z.norm()
    up = torch.tensor([0.0, -1.0, 0.0], dtype=dtype)
    x = torch.linalg.cross(z, up)
    if x.norm() < 1e-6:  # looking straight up or down
        x = torch.linalg.cross(z, torch.tensor([1.0, 0.0, 0.0], dtype=dtype))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    vm = torch.eye(4, dtype=dtype)
    vm[:3, :3] = R
    vm[:3, 3] = -R @ eye
    return vm


def _scene(batch=(), n=400, c=3, dtype=torch.float32, spread=2.0, dist=7.0, scale=0.3):
    """Random Gaussians around the origin seen by cameras on a sphere of radius `dist`."""
    means = torch.randn(*batch, n, 3, dtype=dtype) * spread
    quats = torch.randn(*batch, n, 4, dtype=dtype)
    scales = torch.rand(*batch, n, 3, dtype=dtype) * scale + 0.01
    covars = quat_scale_to_covar(quats, scales)
    views, ks = [], []
    for _ in range(math.prod(batch) * c):
        eye = torch.randn(3, dtype=dtype)
        eye = eye / eye.norm() * dist
        views.append(_look_at(eye, 0.3 * torch.randn(3, dtype=dtype), dtype))
        f = 150.0 + 100.0 * torch.rand((), dtype=dtype)
        ks.append(
            torch.tensor(
                [[f, 0.0, W / 2 + 10 * torch.randn(())], [0.0, f * 1.05, H / 2 + 10 * torch.randn(())],
                 [0.0, 0.0, 1.0]],
                dtype=dtype,
            )
        )
    viewmats = torch.stack(views).reshape(*batch, c, 4, 4)
    Ks = torch.stack(ks).reshape(*batch, c, 3, 3)
    return means, covars, viewmats, Ks


def _ortho_ks(Ks):
    Ks = Ks.clone()
    Ks[..., 0, 0] = Ks[..., 1, 1] = 25.0
    return Ks


def _visible(radii):
    return (radii > 0).all(-1)


# ------------------------------------------------------------------ forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_forward_matches_gsplat(camera_model, dtype):
    means, covars, viewmats, Ks = _scene(n=1000, dtype=dtype, spread=4.0)  # many near the edges
    if camera_model == "ortho":
        Ks = _ortho_ks(Ks)
    radii, means2d, depths, conics, comps = project(
        means, covars, viewmats, Ks, W, H, calc_compensations=True, camera_model=camera_model
    )
    # gsplat's reference takes full 3x3 covariances, always uses the fixed 3.33-sigma
    # extent and has neither opacities nor radius_clip; it also leaves culled
    # entries' float outputs unmasked, and culls z == near_plane (the CUDA kernel and
    # we keep it). So radii are compared with opacities=None and the float outputs
    # only where both sides say visible.
    g_radii, g_means2d, g_depths, g_conics, g_comps = _fully_fused_projection(
        means, covar_triu_to_matrix(covars), viewmats, Ks, W, H,
        calc_compensations=True, camera_model=camera_model,
    )
    assert radii.dtype == torch.int32 and radii.shape == g_radii.shape
    assert torch.equal(radii, g_radii)
    vis = _visible(radii) & _visible(g_radii)
    assert 500 < vis.sum() < vis.numel()  # both visible and culled entries are exercised
    # Conics of thin footprints are ill-conditioned (det of the 2D covariance near 0).
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(means2d[vis], g_means2d[vis], **tol)
    torch.testing.assert_close(depths[vis], g_depths[vis], **tol)
    torch.testing.assert_close(conics[vis], g_conics[vis], **tol)
    torch.testing.assert_close(comps[vis], g_comps[vis], **tol)


def test_pinhole_jacobian_clamp_matches_gsplat():
    # One large Gaussian beyond the clamped field of view whose footprint still
    # reaches the image: its 2D covariance uses the clamped Jacobian.
    dtype = torch.float64
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]], dtype=dtype)[None]
    viewmat = torch.eye(4, dtype=dtype)[None]
    means = torch.tensor([[4.0, 0.5, 5.0], [0.0, 0.0, 5.0]], dtype=dtype)  # x/z = 0.8 > 0.65
    covars = quat_scale_to_covar(torch.tensor([[1.0, 0.2, 0.3, 0.1]] * 2, dtype=dtype),
                                 torch.tensor([[2.0, 1.5, 1.0]] * 2, dtype=dtype))
    out = project(means, covars, viewmat, K, 100, 80)
    ref_out = _fully_fused_projection(means, covar_triu_to_matrix(covars), viewmat, K, 100, 80)
    assert _visible(out[0]).all()
    assert torch.equal(out[0], ref_out[0])
    for a, b in zip(out[1:4], ref_out[1:4]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # The clamp is active: a wider image (limit 11 instead of 0.65) changes only the
    # off-axis Gaussian's conic.
    wide = project(means, covars, viewmat, K, 1000, 80)[3]
    assert (wide[0, 0] - out[3][0, 0]).abs().max() > 1e-3 * out[3][0, 0].abs().max()
    assert torch.equal(wide[0, 1], out[3][0, 1])


@pytest.mark.parametrize("calc_compensations", [False, True])
@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_forward_matches_twin_with_opacities_and_radius_clip(camera_model, calc_compensations):
    means, covars, viewmats, Ks = _scene(n=1500)
    if camera_model == "ortho":
        Ks = _ortho_ks(Ks)
    # Opacities spanning the 1/255 cut (with and without compensation).
    opacities = torch.rand(1500) ** 3
    kwargs = dict(camera_model=camera_model, calc_compensations=calc_compensations,
                  opacities=opacities, radius_clip=3.0)
    got = project(means, covars, viewmats, Ks, W, H, **kwargs)
    want = ref.project(means, covars, viewmats, Ks, W, H, **kwargs)
    assert torch.equal(got[0], want[0])
    vis = _visible(got[0])
    plain = project(means, covars, viewmats, Ks, W, H, camera_model=camera_model)[0]
    # The opacity-aware extent and the clip both cull and shrink.
    assert 0 < vis.sum() < _visible(plain).sum()
    assert (got[0][vis] <= plain[vis]).all() and (got[0][vis] < plain[vis]).any()
    for a, b in zip(got[1:4], want[1:4]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    if calc_compensations:
        torch.testing.assert_close(got[4], want[4], rtol=1e-5, atol=1e-6)
    else:
        assert got[4] is None and want[4] is None


def test_near_far_culling_and_culled_outputs_are_zero():
    dtype = torch.float64
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]], dtype=dtype)[None]
    viewmat = torch.eye(4, dtype=dtype)[None]
    z = torch.tensor([0.5, 1.0, 2.0, 9.0, 10.0, 11.0, -3.0, 5.0], dtype=dtype)
    x = torch.zeros_like(z)
    x[-1] = 1e3  # far off-image
    means = torch.stack([x, torch.zeros_like(z), z], -1)
    covars = torch.tensor([[0.01, 0, 0, 0.01, 0, 0.01]], dtype=dtype).repeat(len(z), 1)
    radii, means2d, depths, conics, comps = project(
        means, covars, viewmat, K, 100, 80, near_plane=1.0, far_plane=10.0, calc_compensations=True
    )
    keep = torch.tensor([False, True, True, True, True, False, False, False])
    assert torch.equal(_visible(radii[0]), keep)
    culled = ~keep
    assert (radii[0][culled] == 0).all()
    for t in (means2d, depths, conics, comps):
        assert (t[0][culled] == 0).all()
        assert (t[0][keep] != 0).any()
    torch.testing.assert_close(depths[0][keep], z[keep])


def test_eps2d_and_compensation_values():
    dtype = torch.float64
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]], dtype=dtype)[None]
    viewmat = torch.eye(4, dtype=dtype)[None]
    means = torch.tensor([[0.0, 0.0, 2.0]], dtype=dtype)
    covars = torch.tensor([[0.0004, 0, 0, 0.0009, 0, 0.01]], dtype=dtype)
    _, means2d, _, conics, comps = project(means, covars, viewmat, K, 100, 80, eps2d=0.5,
                                           calc_compensations=True)
    # On the axis: cov2d = diag(f^2 sxx / z^2, f^2 syy / z^2) = diag(1, 2.25), plus 0.5.
    torch.testing.assert_close(means2d[0, 0], torch.tensor([50.0, 40.0], dtype=dtype))
    torch.testing.assert_close(conics[0, 0], torch.tensor([1 / 1.5, 0.0, 1 / 2.75], dtype=dtype))
    torch.testing.assert_close(comps[0, 0], torch.tensor(math.sqrt(2.25 / (1.5 * 2.75)), dtype=dtype))


def test_full_matrix_covars_accepted():
    means, covars, viewmats, Ks = _scene(n=100)
    a = project(means, covars, viewmats, Ks, W, H)
    b = project(means, covar_triu_to_matrix(covars), viewmats, Ks, W, H)
    for x, y in zip(a[:4], b[:4]):
        assert torch.equal(x, y)


@pytest.mark.parametrize("calc_compensations", [False, True])
def test_batched_leading_dims(calc_compensations):
    means, covars, viewmats, Ks = _scene(batch=(2,), n=200, c=3)
    opacities = torch.rand(2, 200)
    kwargs = dict(calc_compensations=calc_compensations, opacities=opacities, radius_clip=1.0)
    out = project(means, covars, viewmats, Ks, W, H, **kwargs)
    assert out[0].shape == (2, 3, 200, 2) and out[3].shape == (2, 3, 200, 3)
    for b in range(2):
        single = project(means[b], covars[b], viewmats[b], Ks[b], W, H,
                         **dict(kwargs, opacities=opacities[b]))
        for x, y in zip(out, single):
            if x is None:
                assert y is None
            else:
                assert torch.equal(x[b], y)
    want = ref.project(means, covars, viewmats, Ks, W, H, **kwargs)
    assert torch.equal(out[0], want[0])
    # Two leading dims.
    out4 = project(means[:, None], covars[:, None], viewmats[:, None], Ks[:, None], W, H, **dict(
        kwargs, opacities=opacities[:, None]))
    assert out4[1].shape == (2, 1, 3, 200, 2)
    assert torch.equal(out4[1][:, 0], out[1])


def test_non_contiguous_inputs():
    means, covars, viewmats, Ks = _scene(n=300, c=2)
    means_nc = torch.empty(300, 6)[:, ::2].copy_(means)  # same values, stride 2
    assert not means_nc.is_contiguous()
    a = project(means_nc, covars, viewmats.transpose(-1, -2).contiguous().transpose(-1, -2), Ks, W, H)
    b = project(means, covars, viewmats, Ks, W, H)
    for x, y in zip(a[:4], b[:4]):
        assert torch.equal(x, y)


# ------------------------------------------------------------------ gradients


def _tiny_scene(camera_model):
    dtype = torch.float64
    means, covars, viewmats, Ks = _scene(n=6, c=2, dtype=dtype, spread=1.0, dist=5.0, scale=0.4)
    Ks = _ortho_ks(Ks) if camera_model == "ortho" else Ks
    if camera_model == "pinhole":
        # Plus one Gaussian whose Jacobian is clamped in the first camera (x/z beyond the
        # field-of-view limit) yet still on screen.
        R, t = viewmats[0, :3, :3], viewmats[0, :3, 3]
        fx, cx = Ks[0, 0, 0], Ks[0, 0, 2]
        lim = (W - cx) / fx + 0.3 * 0.5 * W / fx
        pc = torch.tensor([1.15 * lim * 6.0, 0.2, 6.0], dtype=dtype)
        means = torch.cat([means, (R.T @ (pc - t))[None]])
        covars = torch.cat([covars, quat_scale_to_covar(
            torch.tensor([[0.9, 0.1, -0.3, 0.2]], dtype=dtype), torch.tensor([[2.5, 1.2, 0.8]], dtype=dtype))])
    return means, covars, viewmats, Ks


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_gradcheck(camera_model):
    means, covars, viewmats, Ks = _tiny_scene(camera_model)
    radii = project(means, covars, viewmats, Ks, W, H, camera_model=camera_model)[0]
    assert _visible(radii).sum() >= 6
    if camera_model == "pinhole":
        assert _visible(radii)[0, -1]  # the clamped one is exercised

    def f(m, c, v):
        _, m2, d, co, cp = project(m, c, v, Ks, W, H, calc_compensations=True,
                                   camera_model=camera_model)
        return m2, d, co, cp

    inputs = tuple(x.clone().requires_grad_() for x in (means, covars, viewmats))
    assert torch.autograd.gradcheck(f, inputs)


def _cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)


@pytest.mark.parametrize("calc_compensations", [False, True])
@pytest.mark.parametrize("camera_model", ["pinhole", "ortho", "fisheye"])
def test_vjp_matches_twin(camera_model, calc_compensations):
    means, covars, viewmats, Ks = _scene(batch=(2,), n=500, c=3)
    if camera_model == "ortho":
        Ks = _ortho_ks(Ks)
    opacities = torch.rand(2, 500)
    kwargs = dict(camera_model=camera_model, calc_compensations=calc_compensations,
                  opacities=opacities, radius_clip=0.5)
    grads = []
    cot = None
    for fn in (project, ref.project):
        inputs = [x.clone().requires_grad_() for x in (means, covars, viewmats)]
        out = fn(*inputs, Ks, W, H, **kwargs)
        floats = [o for o in out[1:] if o is not None]
        if cot is None:
            cot = [torch.randn_like(o) for o in floats]
        loss = sum((o * v).sum() for o, v in zip(floats, cot))
        grads.append(torch.autograd.grad(loss, inputs))
    for name, g, r in zip(("means", "covars", "viewmats"), *grads):
        assert torch.isfinite(g).all(), name
        assert _cosine(g, r) >= 0.9999, name
        assert (g - r).norm() / r.norm() <= 1e-4, name


def test_gradients_only_from_visible_entries():
    dtype = torch.float64
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]], dtype=dtype)[None]
    viewmat = torch.eye(4, dtype=dtype)[None].requires_grad_()
    means = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, -3.0], [1e3, 0.0, 3.0]], dtype=dtype)
    means.requires_grad_()
    covars = torch.tensor([[0.01, 0, 0, 0.01, 0, 0.01]], dtype=dtype).repeat(3, 1).requires_grad_()
    Ks = K.clone().requires_grad_()
    opac = torch.ones(3, dtype=dtype, requires_grad=True)
    radii, means2d, depths, conics, comps = project(
        means, covars, viewmat, Ks, 100, 80, calc_compensations=True, opacities=opac
    )
    assert torch.equal(_visible(radii[0]), torch.tensor([True, False, False]))
    (means2d.sum() + depths.sum() + conics.sum() + comps.sum()).backward()
    assert (means.grad[0] != 0).any() and (covars.grad[0] != 0).any()
    assert (means.grad[1:] == 0).all() and (covars.grad[1:] == 0).all()
    assert viewmat.grad is not None and (viewmat.grad[0, 3] == 0).all()
    assert Ks.grad is None and opac.grad is None  # no gradient to intrinsics or opacities


def test_viewmats_gradient_only_when_required():
    means, covars, viewmats, Ks = _scene(n=50, c=2, dtype=torch.float64)
    m = means.clone().requires_grad_()
    out = project(m, covars, viewmats, Ks, W, H)
    out[1].sum().backward()
    assert m.grad is not None and viewmats.grad is None
    # Direct op call: no viewmat gradient requested -> empty tensor.
    B = (1, 50)
    r, m2, d, co, cp = torch.ops.moegs.project_fwd(means[None], covars[None], viewmats[None], Ks[None],
                                                   None, W, H, 0.3, 0.01, 1e10, 0.0, False, 0)
    assert cp.shape == (0,)
    v = torch.ops.moegs.project_bwd(means[None], covars[None], viewmats[None], Ks[None], W, H, 0.3, 0,
                                    r, co, None, torch.ones_like(m2), torch.ones_like(d),
                                    torch.ones_like(co), None, False)
    assert v[0].shape == (*B, 3) and v[1].shape == (*B, 6) and v[2].shape == (0,)


def test_backward_is_deterministic_across_thread_counts():
    means, covars, viewmats, Ks = _scene(batch=(2,), n=4000, c=3)
    opacities = torch.rand(2, 4000)
    cot = None
    results = []
    prev = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            inputs = [x.clone().requires_grad_() for x in (means, covars, viewmats)]
            out = project(*inputs, Ks, W, H, calc_compensations=True, opacities=opacities)
            if cot is None:
                cot = [torch.randn_like(o) for o in out[1:]]
            loss = sum((o * v).sum() for o, v in zip(out[1:], cot))
            results.append([o.detach() for o in out] + list(torch.autograd.grad(loss, inputs)))
    finally:
        torch.set_num_threads(prev)
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ errors and registration


def test_bad_inputs_raise():
    means, covars, viewmats, Ks = _scene(n=10, c=2)
    with pytest.raises(ValueError, match="means"):
        project(means[..., :2], covars, viewmats, Ks, W, H)
    with pytest.raises(ValueError, match="covars"):
        project(means, covars[:5], viewmats, Ks, W, H)
    with pytest.raises(ValueError, match="viewmats"):
        project(means, covars, viewmats[..., :3, :], Ks, W, H)
    with pytest.raises(ValueError, match="Ks"):
        project(means, covars, viewmats, Ks[:1], W, H)
    with pytest.raises(ValueError, match="leading dims"):
        project(means, covars, viewmats[None].repeat(2, 1, 1, 1), Ks, W, H)
    with pytest.raises(ValueError, match="opacities"):
        project(means, covars, viewmats, Ks, W, H, opacities=torch.rand(9))
    with pytest.raises(ValueError, match="camera_model"):
        project(means, covars, viewmats, Ks, W, H, camera_model="ftheta")
    with pytest.raises(ValueError, match="image size"):
        project(means, covars, viewmats, Ks, 0, H)
    with pytest.raises(TypeError, match="means"):
        project(means.tolist(), covars, viewmats, Ks, W, H)
    args = (means[None], covars[None], viewmats[None], Ks[None], None, W, H, 0.3, 0.01, 1e10, 0.0, False)
    with pytest.raises(RuntimeError, match="camera_model"):
        torch.ops.moegs.project_fwd(*args, 3)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.moegs.project_fwd(means[None].double(), *args[1:], 0)
    with pytest.raises(RuntimeError, match="covars"):
        torch.ops.moegs.project_fwd(means[None], covars[None, :, :5], *args[2:], 0)


def test_opcheck():
    means, covars, viewmats, Ks = _scene(n=20, c=2, dtype=torch.float64)
    args = (means[None].requires_grad_(), covars[None].requires_grad_(),
            viewmats[None].requires_grad_(), Ks[None], torch.rand(1, 20, dtype=torch.float64),
            W, H, 0.3, 0.01, 1e10, 0.0, True, 0)
    # test_aot_dispatch_dynamic is left out: its harness sums all outputs into one
    # tensor, which fails on the int32 radii (a limitation of the harness).
    torch.library.opcheck(
        torch.ops.moegs.project_fwd, args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


# ------------------------------------------------------------------ fisheye


def test_fisheye_wide_angles_match_gsplat_and_twin():
    # Points up to ~88 degrees off axis, which a pinhole camera cannot image: the
    # equidistant model maps them to pixel radius f * theta inside the image.
    dtype = torch.float64
    g = torch.Generator().manual_seed(3)
    n = 300
    theta = torch.rand(n, generator=g, dtype=dtype) * 1.53
    phi = torch.rand(n, generator=g, dtype=dtype) * 2 * math.pi
    dist = 2.0 + 3.0 * torch.rand(n, generator=g, dtype=dtype)
    means = torch.stack([dist * theta.sin() * phi.cos(), dist * theta.sin() * phi.sin(), dist * theta.cos()], -1)
    covars = quat_scale_to_covar(torch.randn(n, 4, generator=g, dtype=dtype),
                                 0.02 + 0.05 * torch.rand(n, 3, generator=g, dtype=dtype))
    viewmats = torch.eye(4, dtype=dtype)[None]
    Ks = torch.tensor([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]], dtype=dtype)[None]
    got = project(means, covars, viewmats, Ks, W, H, calc_compensations=True, camera_model="fisheye")
    want = _fully_fused_projection(means, covar_triu_to_matrix(covars), viewmats, Ks, W, H,
                                   calc_compensations=True, camera_model="fisheye")
    assert torch.equal(got[0], want[0])
    vis = _visible(got[0])
    assert vis.sum() > 150 and (theta[vis[0]] > 1.3).sum() > 10  # wide angles are visible
    # The pixel radius from the principal point is f * theta.
    r_px = (got[1][0, vis[0]] - Ks[0, :2, 2]).norm(dim=-1)
    torch.testing.assert_close(r_px, 60.0 * theta[vis[0]], rtol=1e-6, atol=1e-6)
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a[vis], b[vis], rtol=1e-9, atol=1e-9)
    twin = ref.project(means, covars, viewmats, Ks, W, H, calc_compensations=True, camera_model="fisheye")
    for a, b in zip(got[1:], twin[1:]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fisheye_gradient_on_and_near_the_optical_axis():
    # x = y = 0 exactly, and 1e-4 off axis: gradients stay finite and equal the twin's
    # float64 autograd.
    dtype = torch.float64
    means = torch.tensor([[0.0, 0.0, 3.0], [1e-4, -2e-4, 2.5], [0.5, 0.3, 4.0]], dtype=dtype)
    covars = quat_scale_to_covar(torch.tensor([[1.0, 0.3, -0.2, 0.1]] * 3, dtype=dtype),
                                 torch.tensor([[0.2, 0.1, 0.15]] * 3, dtype=dtype))
    viewmats = torch.eye(4, dtype=dtype)[None]
    Ks = torch.tensor([[80.0, 0, 60], [0, 85.0, 50], [0, 0, 1]], dtype=dtype)[None]
    grads = []
    cot = None
    for fn in (project, ref.project):
        inputs = [x.clone().requires_grad_() for x in (means, covars, viewmats)]
        out = fn(*inputs, Ks, 120, 100, calc_compensations=True, camera_model="fisheye")
        assert _visible(out[0]).all()
        if cot is None:
            cot = [torch.randn_like(o) for o in out[1:]]
        loss = sum((o * v).sum() for o, v in zip(out[1:], cot))
        grads.append(torch.autograd.grad(loss, inputs))
    for g, r in zip(*grads):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-7)
