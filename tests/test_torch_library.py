"""torch.library registration of every moegs op: opcheck (schema, fake kernel, autograd registration,
AOT dispatch) and a render function under torch.compile against eager."""

import pytest
import torch

import moegs
from tests.scenes import random_scene

_ops = torch.ops.moegs
F64 = torch.float64


def _scene_tensors(n=24, n_cams=2, seed=0):
    s, W, H = random_scene(n=n, n_cams=n_cams, width=40, height=32, dtype=F64, seed=seed)
    return s, W, H


def _covariance_cases():
    s, _, _ = _scene_tensors()
    q, sc = s["quats"].requires_grad_(), s["scales"].requires_grad_()
    covars = _ops.quat_scale_to_covar_fwd(q.detach(), sc.detach())
    return [
        ("quat_scale_to_covar_fwd", (q, sc)),
        ("quat_scale_to_covar_bwd", (q.detach(), sc.detach(), torch.randn_like(covars))),
    ]


def _projection_cases():
    s, W, H = _scene_tensors()
    means, Ks = s["means"][None], s["Ks"][None]
    covars = _ops.quat_scale_to_covar_fwd(s["quats"], s["scales"])[None]
    viewmats = s["viewmats"][None]
    cases = []
    for model in (0, 1, 2):  # pinhole, ortho, fisheye
        K = Ks.clone()
        if model == 1:
            K[..., 0, 0] = K[..., 1, 1] = 10.0
        fwd_args = (means.clone().requires_grad_(), covars.clone().requires_grad_(),
                    viewmats.clone().requires_grad_(), K, s["opacities"][None], W, H, 0.3, 0.01, 1e10, 0.0,
                    True, model)
        radii, m2d, depths, conics, comps = _ops.project_fwd(*(a.detach() if torch.is_tensor(a) else a
                                                              for a in fwd_args))
        assert (radii > 0).all(-1).sum() > 10
        cases.append((f"project_fwd[{model}]", fwd_args))
        cases.append((f"project_bwd[{model}]", (
            means, covars, viewmats, K, W, H, 0.3, model, radii, conics, comps, torch.randn_like(m2d),
            torch.randn_like(depths), torch.randn_like(conics), torch.randn_like(comps), True)))
    return cases


def _sh_cases():
    dirs = torch.randn(10, 3, dtype=F64)
    coeffs = torch.randn(10, 16, 3, dtype=F64)
    colors = _ops.spherical_harmonics_fwd(3, dirs, coeffs)
    return [
        ("spherical_harmonics_fwd", (3, dirs, coeffs.clone().requires_grad_())),
        ("spherical_harmonics_bwd", (3, dirs, coeffs, colors, torch.randn_like(colors), True)),
    ]


def _raster_cases():
    s, W, H = _scene_tensors()
    _, _, meta = moegs.rasterization(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                                     s["viewmats"], s["Ks"], W, H, packed=False)
    C, N = meta["means2d"].shape[:2]
    means2d, radii, depths = (meta[k].detach().reshape(C * N, -1).squeeze(-1) for k in ("means2d", "radii", "depths"))
    image_ids = torch.arange(C, dtype=torch.int32).repeat_interleave(N)
    tw, th = meta["tile_width"], meta["tile_height"]
    isect_args = (means2d, radii, depths, image_ids, C, 16, tw, th)
    _, isect_ids, flatten_ids = _ops.isect_tiles(*isect_args)
    offsets = _ops.isect_offset_encode(isect_ids, C, tw, th)
    K = 3
    feats = torch.cat([s["colors"][None].expand(C, N, 3), meta["depths"].detach()[..., None]], -1)
    raster = [meta["means2d"].detach().clone().requires_grad_(), meta["conics"].detach().clone().requires_grad_(),
              meta["opacities"].detach().clone().requires_grad_(), feats.clone().requires_grad_(),
              (torch.arange(N, dtype=torch.int32) % K)[None].expand(C, N).contiguous(),
              torch.rand(C, K, 4, dtype=F64).requires_grad_(), offsets, flatten_ids]
    scalars = (W, H, 16, K, 0.999, 1e-4, 0.5)
    render, alphas, last_ids = _ops.rasterize_experts_fwd(*(a.detach() for a in raster), *scalars, False)
    return [
        ("isect_tiles", isect_args),
        ("isect_offset_encode", (isect_ids, C, tw, th)),
        ("rasterize_experts_fwd", (*raster, *scalars, False)),
        ("rasterize_experts_bwd", (*(a.detach() for a in raster), *scalars, alphas, last_ids,
                                   torch.randn_like(render), torch.randn_like(alphas), True)),
    ]


CASES = _covariance_cases() + _projection_cases() + _sh_cases() + _raster_cases()


def test_every_op_is_covered():
    registered = {n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("moegs::")}
    covered = {name.split("[")[0] for name, _ in CASES}
    assert registered == covered


# opcheck's test_aot_dispatch_dynamic sums every output into one accumulator that starts as the first
# output's dtype; project_fwd's first output is the int32 radii, so the float sums cannot be added in
# place. That check is replaced for project_fwd by test_project_fwd_aot_dispatch_dynamic below.
_NO_AOT_SUM = ("test_schema", "test_autograd_registration", "test_faketensor")


@pytest.mark.parametrize("name,args", CASES, ids=[c[0] for c in CASES])
def test_opcheck(name, args):
    op = getattr(_ops, name.split("[")[0])
    if name.startswith("project_fwd"):
        torch.library.opcheck(op, args, test_utils=_NO_AOT_SUM)
    else:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("name,args", [c for c in CASES if c[0].startswith("project_fwd")],
                         ids=[c[0] for c in CASES if c[0].startswith("project_fwd")])
def test_project_fwd_aot_dispatch_dynamic(name, args):
    # What test_aot_dispatch_dynamic checks, with the float outputs only: AOT-traced with dynamic shapes,
    # forward and gradients equal eager.
    def float_outputs(*a):
        _, m2d, depths, conics, comps = _ops.project_fwd(*a)
        return m2d, depths, conics, comps

    torch._dynamo.reset()
    compiled = torch.compile(float_outputs, backend="aot_eager", dynamic=True, fullgraph=True)
    diff = [a for a in args if torch.is_tensor(a) and a.requires_grad]
    results = []
    for f in (float_outputs, compiled):
        outs = f(*args)
        total = sum((o * (i + 1)).sum() for i, o in enumerate(outs))
        results.append((outs, torch.autograd.grad(total, diff)))
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("packed,backend", [(True, "inductor"), (False, "aot_eager")])
def test_rasterization_compiles_and_matches_eager(packed, backend):
    # The whole render (covariance, projection, SH, tile intersection, rasterization) in one graph: the
    # data-dependent sizes (tile intersections, visible pairs) need capture_dynamic_output_shape_ops;
    # without it torch.compile still works, with graph breaks at those ops.
    s, W, H = _scene_tensors(n=30, seed=5)
    s = {k: v.float() for k, v in s.items()}
    sh = torch.randn(30, 4, 3) * 0.3

    def render(means, quats, scales, opacities, coeffs, viewmats, Ks):
        colors, alphas, meta = moegs.rasterization(means, quats, scales, opacities, coeffs, viewmats, Ks, W, H,
                                                   sh_degree=1, packed=packed, render_mode="RGB+ED")
        return colors, alphas, meta["means2d"]

    args = [s["means"], s["quats"], s["scales"], s["opacities"], sh, s["viewmats"], s["Ks"]]
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        compiled = torch.compile(render, fullgraph=True, backend=backend)
        results = []
        for f in (render, compiled):
            leaves = [a.clone().requires_grad_(i < 5) for i, a in enumerate(args)]
            colors, alphas, means2d = f(*leaves)
            loss = (colors * torch.linspace(0.5, 1.5, 4)).sum() + alphas.square().sum()
            results.append((colors.detach(), alphas.detach(), means2d.detach(),
                            torch.autograd.grad(loss, leaves[:5])))
    (c0, a0, m0, g0), (c1, a1, m1, g1) = results
    assert float(a0.max()) > 0.5
    torch.testing.assert_close(c1, c0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a1, a0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m1, m0)
    for x, y in zip(g1, g0):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
