"""Single-pass multi-expert rasterization: forward, backward, determinism, errors.

References: the float64 brute-force oracle (per image depth sort, per pixel tile
rectangle test; no tile lists), the pure-torch twin, K separate single-expert
passes, hand-computed compositing, and finite differences (gradcheck).
"""

import contextlib
import math

import pytest
import torch

from moegs.ops import _reference as ref
from moegs.ops.rasterize import rasterize_to_pixels_experts

_ops = torch.ops.moegs
W, H, TS = 37, 29, 16  # neither side a multiple of the tile size


# ---------------------------------------------------------------- scenes


def make_scene(I, N, K, F, width=W, height=H, dtype=torch.float32, seed=0, opacity=(0.05, 0.95),
               scale=(1.0, 6.0), margin=10.0, n_opaque=0):
    """Random dense [I, N] Gaussians with 3-sigma radii (about 5% invisible). The first
    n_opaque of each image are large and nearly opaque, so that experts saturate."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=f64)

    size = torch.tensor([width + 2 * margin, height + 2 * margin], dtype=f64)
    means2d = rand(I, N, 2) * size - margin
    std = scale[0] + rand(I, N, 2) * (scale[1] - scale[0])
    std[:, :n_opaque] = 8.0 + rand(I, n_opaque, 2) * 8.0
    th = rand(I, N) * math.pi
    c, s = th.cos(), th.sin()
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    cov = rot @ torch.diag_embed(std * std) @ rot.transpose(-1, -2)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 1]], -1)
    radii = torch.ceil(3 * torch.diagonal(cov, dim1=-2, dim2=-1).sqrt()).int()
    radii[rand(I, N) < 0.05] = 0
    opacities = opacity[0] + rand(I, N) * (opacity[1] - opacity[0])
    opacities[:, :n_opaque] = 0.97 + rand(I, n_opaque) * 0.025
    features = torch.randn(I, N, F, generator=g, dtype=f64)
    expert_ids = torch.randint(0, K, (I, N), generator=g, dtype=torch.int32)
    depths = rand(I, N) + 1.0
    backgrounds = rand(I, K, F)
    image_ids = torch.arange(I).repeat_interleave(N)
    offsets, flatten_ids = ref.build_tile_lists(
        means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1), image_ids, I, width,
        height, TS)
    return dict(
        means2d=means2d.to(dtype), conics=conics.to(dtype), opacities=opacities.to(dtype),
        features=features.to(dtype), expert_ids=expert_ids, backgrounds=backgrounds.to(dtype),
        isect_offsets=offsets, flatten_ids=flatten_ids, radii=radii, depths=depths,
        image_ids=image_ids, width=width, height=height, K=K)


GRAD_KEYS = ("means2d", "conics", "opacities", "features", "backgrounds")


def run_op(sc, grad=False, **kw):
    args = {k: sc[k].detach().clone().requires_grad_(grad) if k in GRAD_KEYS else sc[k]
            for k in ("means2d", "conics", "opacities", "features", "expert_ids", "backgrounds",
                      "isect_offsets", "flatten_ids")}
    render, alphas = rasterize_to_pixels_experts(
        **args, width=sc["width"], height=sc["height"], tile_size=TS, num_experts=sc["K"], **kw)
    return render, alphas, args


@contextlib.contextmanager
def one_thread():
    # The references run many small ops; on a loaded machine thread hand-offs dominate them.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_oracle(sc, grad=False):
    args = {k: sc[k].detach().double().requires_grad_(grad) for k in GRAD_KEYS}
    F = sc["features"].shape[-1]
    with one_thread():
        render, alphas = ref.rasterize_experts_brute(
            args["means2d"].reshape(-1, 2), args["conics"].reshape(-1, 3),
            args["opacities"].reshape(-1), args["features"].reshape(-1, F),
            sc["expert_ids"].reshape(-1), args["backgrounds"], sc["radii"].reshape(-1, 2),
            sc["depths"].reshape(-1), sc["image_ids"], sc["width"], sc["height"], TS, sc["K"])
    return render, alphas, args


def vjp(render, alphas, inputs, v_render, v_alphas):
    loss = (render * v_render.to(render.dtype)).sum() + (alphas * v_alphas.to(alphas.dtype)).sum()
    with one_thread():
        return torch.autograd.grad(loss, [inputs[k] for k in GRAD_KEYS])


def assert_grads_close(got, want, rel_l2, cosine):
    for name, a, b in zip(GRAD_KEYS, got, want):
        a, b = a.double().flatten(), b.double().flatten()
        assert b.norm() > 0, name
        rel = ((a - b).norm() / b.norm()).item()
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        assert rel <= rel_l2 and cos >= cosine, f"{name}: rel L2 {rel:.3g}, cosine {cos:.12f}"


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K", [1, 3, 8])
@pytest.mark.parametrize("D", [1, 3, 32])
def test_forward_matches_oracle(K, D, dtype):
    # features = D colour channels (+ 1 depth) (+ R router channels)
    depth = D == 3
    R = 3 if K > 1 else 0
    I = 2 if K != 3 else 3
    sc = make_scene(I, 40 + 6 * K, K, D + depth + R, dtype=dtype, seed=K * 100 + D,
                    n_opaque=6 * K)
    assert sc["flatten_ids"].numel() > 0
    render, alphas, _ = run_op(sc)
    want_r, want_a, _ = run_oracle(sc)
    assert render.shape == (I, K, H, W, D + depth + R) and alphas.shape == (I, K, H, W, 1)
    assert render.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(render.double(), want_r, rtol=0, atol=tol)
    torch.testing.assert_close(alphas.double(), want_a, rtol=0, atol=tol)
    assert alphas.max() > 0.99  # opaque stacks: some experts saturate


def test_twin_matches_oracle():
    sc = make_scene(2, 50, 3, 4, dtype=torch.float64, seed=7, n_opaque=18)
    F = 4
    with one_thread():
        got = ref.rasterize_to_pixels_experts(
            *(sc[k] for k in ("means2d", "conics", "opacities", "features", "expert_ids",
                              "backgrounds", "isect_offsets", "flatten_ids")), W, H, TS, 3)
    want = run_oracle(sc)[:2]
    assert got[0].shape == (2, 3, H, W, F)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-12)


def test_experts_equal_separate_single_expert_passes():
    K, F = 3, 5
    sc = make_scene(2, 60, K, F, seed=11, n_opaque=18)
    render, alphas, args = run_op(sc, grad=True)
    v_r, v_a = torch.randn_like(render), torch.randn_like(alphas)
    grads = vjp(render, alphas, args, v_r, v_a)
    for k in range(K):
        keep = (sc["expert_ids"] == k).reshape(-1)
        sub = {key: sc[key].reshape(-1, *sc[key].shape[2:])[keep]
               for key in ("means2d", "conics", "opacities", "features", "radii", "depths",
                           "image_ids")}
        sub["expert_ids"] = torch.zeros(int(keep.sum()), dtype=torch.int32)
        sub["backgrounds"] = sc["backgrounds"][:, k:k + 1]
        sub["isect_offsets"], sub["flatten_ids"] = ref.build_tile_lists(
            sub["means2d"], sub["radii"], sub["depths"], sub["image_ids"], 2, W, H, TS)
        sub.update(width=W, height=H, K=1)
        r1, a1, args1 = run_op(sub, grad=True)
        assert (render[:, k:k + 1] - r1).abs().max() <= 1e-6
        assert (alphas[:, k:k + 1] - a1).abs().max() <= 1e-6
        g1 = vjp(r1, a1, args1, v_r[:, k:k + 1], v_a[:, k:k + 1])
        for name, full, single in zip(GRAD_KEYS, grads, g1):
            if name == "backgrounds":
                part = full[:, k:k + 1]
            else:
                part = full.reshape(-1, *full.shape[2:])[keep]
            assert (part - single).abs().max() <= 1e-6, (k, name)


def _stack_scene():
    """Expert 0: eight near-uniform opaque layers (it saturates after five), then a faint one
    that would still fit (T (1 - 0.3) > 1e-4) but comes after saturation.
    Expert 1: three faint layers, one in front of, one among, one behind expert 0's."""
    n0, o0, o1 = 8, 0.8, 0.3
    depths = torch.cat([torch.arange(1.0, n0 + 1), torch.tensor([8.5, 0.5, 3.5, 20.0])])
    N = depths.numel()
    expert_ids = torch.tensor([0] * (n0 + 1) + [1] * 3, dtype=torch.int32)
    means2d = torch.full((1, N, 2), 8.0)
    conics = torch.tensor([1e-6, 0.0, 1e-6]).expand(1, N, 3).contiguous()  # sigma < 1e-4 px^-2
    opacities = torch.tensor([o0] * n0 + [o1] * 4)[None]
    features = torch.randn(1, N, 3)
    backgrounds = torch.rand(1, 2, 3)
    radii = torch.full((N, 2), 100, dtype=torch.int32)
    image_ids = torch.zeros(N, dtype=torch.long)
    offsets, flatten_ids = ref.build_tile_lists(means2d[0], radii, depths, image_ids, 1, 16, 12, TS)
    return dict(means2d=means2d, conics=conics, opacities=opacities, features=features,
                expert_ids=expert_ids[None], backgrounds=backgrounds, isect_offsets=offsets,
                flatten_ids=flatten_ids, radii=radii[None], depths=depths[None],
                image_ids=image_ids, width=16, height=12, K=2)


def test_one_expert_saturates_the_other_goes_on():
    sc = _stack_scene()
    out = _ops.rasterize_experts_fwd(
        sc["means2d"], sc["conics"], sc["opacities"], sc["features"], sc["expert_ids"],
        sc["backgrounds"], sc["isect_offsets"], sc["flatten_ids"], 16, 12, TS, 2, 0.999, 1e-4, 0.5,
        False)
    render, alphas, last_ids = out
    order = sc["flatten_ids"].long()  # one tile: run position -> Gaussian
    pos = {int(g): j for j, g in enumerate(order)}
    # 0.2^5 > 1e-4 >= 0.2^6: expert 0 takes its first five layers and nothing after; expert 1
    # takes all three, including the one behind every expert-0 layer.
    assert (last_ids[0, 0] == pos[4]).all()
    assert (last_ids[0, 1] == pos[11]).all()

    feat, bg = sc["features"][0].double(), sc["backgrounds"][0].double()
    for k, members in ((0, range(5)), (1, (9, 10, 11))):
        t, acc = 1.0, torch.zeros(3, dtype=torch.float64)
        for g in members:
            a = sc["opacities"][0, g].double()
            acc, t = acc + feat[g] * a * t, t * (1 - a)
        want = acc + t * bg[k]
        # sigma < 1e-4 at every pixel: alpha is the opacity to within 1e-4 relative
        torch.testing.assert_close(render[0, k].double(), want.expand(12, 16, 3), rtol=0,
                                   atol=1e-3)
        want_a = torch.full((12, 16), 1 - t, dtype=torch.float64)
        torch.testing.assert_close(alphas[0, k, ..., 0].double(), want_a, rtol=0, atol=1e-3)
    want_r, want_a, _ = run_oracle(sc)
    torch.testing.assert_close(render.double(), want_r, rtol=0, atol=1e-5)
    torch.testing.assert_close(alphas.double(), want_a, rtol=0, atol=1e-5)

    # Layers behind the saturation point get no gradient; expert 1's all do.
    r, a, args = run_op(sc, grad=True)
    v_o = vjp(r, a, args, torch.randn_like(r), torch.randn_like(a))[2][0]
    assert (v_o[5:9] == 0).all()
    assert (v_o[:5] != 0).all() and (v_o[9:] != 0).all()


# ---------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("K,F", [(1, 3), (3, 7), (8, 4)])
def test_vjp_matches_oracle(K, F, dtype):
    sc = make_scene(2, 40 + 6 * K, K, F, dtype=dtype, seed=K + 17, n_opaque=6 * K)
    render, alphas, args = run_op(sc, grad=True)
    want_r, want_a, want_args = run_oracle(sc, grad=True)
    g = torch.Generator().manual_seed(5)
    v_r = torch.randn(want_r.shape, generator=g, dtype=torch.float64)
    v_a = torch.randn(want_a.shape, generator=g, dtype=torch.float64)
    got = vjp(render, alphas, args, v_r, v_a)
    want = vjp(want_r, want_a, want_args, v_r, v_a)
    for name, x in zip(GRAD_KEYS, got):
        assert x.shape == sc[name].shape and x.dtype == dtype, name
    if dtype == torch.float32:
        assert_grads_close(got, want, rel_l2=1e-4, cosine=0.9999)
    else:
        assert_grads_close(got, want, rel_l2=1e-10, cosine=1 - 1e-12)


def test_alpha_clamp_blocks_opacity_and_position_gradients():
    sc = make_scene(1, 12, 2, 3, dtype=torch.float64, seed=3, opacity=(0.9995, 0.9999),
                    scale=(8, 10))
    # Two front Gaussians centred on pixel centres: opacity * exp(-0) > alpha_max there.
    sc["means2d"][0, :2] = torch.tensor([[10.5, 7.5], [20.5, 15.5]], dtype=torch.float64)
    sc["radii"][0, :2] = 30
    sc["depths"][0, :2] = 0.1
    sc["isect_offsets"], sc["flatten_ids"] = ref.build_tile_lists(
        sc["means2d"][0], sc["radii"][0], sc["depths"][0], sc["image_ids"], 1, W, H, TS)
    render, alphas, args = run_op(sc, grad=True)
    want_r, want_a, want_args = run_oracle(sc, grad=True)
    v_r, v_a = torch.randn_like(want_r), torch.randn_like(want_a)
    got = vjp(render, alphas, args, v_r, v_a)
    want = vjp(want_r, want_a, want_args, v_r, v_a)
    assert_grads_close(got[3:], want[3:], rel_l2=1e-10, cosine=1 - 1e-12)  # features, backgrounds
    for x, y in zip(got[:3], want[:3]):  # means2d, conics, opacities: partly clamped
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_gradcheck_float64():
    # Wide Gaussians on a tiny image: alpha stays inside (1/255, alpha_max) and T > 1e-4
    # everywhere, so the output is smooth in every input.
    sc = make_scene(2, 4, 2, 3, width=8, height=6, dtype=torch.float64, seed=2,
                    opacity=(0.2, 0.6), scale=(6.0, 8.0), margin=-2.0)
    sc["expert_ids"] = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]], dtype=torch.int32)
    sc["isect_offsets"] = torch.zeros(2, 1, 1, dtype=torch.int32)
    sc["isect_offsets"][1] = 4
    depth_order = torch.argsort(sc["depths"], dim=1) + torch.tensor([[0], [4]])
    sc["flatten_ids"] = depth_order.reshape(-1).int()  # one 8 x 6 tile per image, all Gaussians

    def f(means2d, conics, opacities, features, backgrounds):
        return rasterize_to_pixels_experts(
            means2d, conics, opacities, features, sc["expert_ids"], backgrounds,
            sc["isect_offsets"], sc["flatten_ids"], 8, 6, 8, 2)

    inputs = [sc[k].clone().requires_grad_(True) for k in GRAD_KEYS]
    _, alphas = f(*inputs)
    assert 0.05 < alphas.min() and alphas.max() < 0.99
    with one_thread():
        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_absgrad_is_sum_of_per_pixel_absolute_gradients():
    sc = make_scene(2, 10, 2, 3, width=12, height=10, dtype=torch.float64, seed=4)
    render, alphas, args = run_op(sc, grad=True, absgrad=True)
    v_r, v_a = torch.randn_like(render), torch.randn_like(alphas)
    means2d = args["means2d"]
    v_means2d = vjp(render, alphas, args, v_r, v_a)[0]
    assert means2d.absgrad.shape == means2d.shape

    want_r, want_a, want_args = run_oracle(sc, grad=True)
    want = torch.zeros_like(means2d)
    with one_thread():
        for y in range(10):
            for x in range(12):
                loss = ((want_r[:, :, y, x] * v_r[:, :, y, x]).sum()
                        + (want_a[:, :, y, x] * v_a[:, :, y, x]).sum())
                (g,) = torch.autograd.grad(loss, want_args["means2d"], retain_graph=True)
                want += g.abs()
    assert want.abs().sum() > 0
    torch.testing.assert_close(means2d.absgrad, want, rtol=1e-10, atol=1e-12)
    assert (means2d.absgrad >= v_means2d.abs() - 1e-12).all()

    r, a, args = run_op(sc, grad=True)  # absgrad=False: no attribute
    (r.sum() + a.sum()).backward()
    assert args["means2d"].grad is not None and not hasattr(args["means2d"], "absgrad")


def test_backward_is_deterministic_across_runs_and_thread_counts():
    sc = make_scene(2, 300, 4, 8, width=70, height=50, seed=9, scale=(2.0, 12.0), n_opaque=60)

    def grads():
        render, alphas, args = run_op(sc, grad=True, absgrad=True)
        g = torch.Generator().manual_seed(1)
        out = vjp(render, alphas, args, torch.randn(render.shape, generator=g),
                  torch.randn(alphas.shape, generator=g))
        return (render, alphas, *out, args["means2d"].absgrad)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a, b = grads(), grads()
        torch.set_num_threads(1)
        c = grads()
    finally:
        torch.set_num_threads(threads)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_op_registration():
    sc = make_scene(2, 20, 3, 4, dtype=torch.float64, seed=6)
    args = [sc[k].requires_grad_(k in GRAD_KEYS) for k in
            ("means2d", "conics", "opacities", "features", "expert_ids", "backgrounds",
             "isect_offsets", "flatten_ids")]
    scalars = (W, H, TS, 3, 0.999, 1e-4, 0.5)
    torch.library.opcheck(_ops.rasterize_experts_fwd.default, (*args, *scalars, False))
    args = [a.detach() for a in args]
    render, alphas, last_ids = _ops.rasterize_experts_fwd(*args, *scalars, False)
    torch.library.opcheck(_ops.rasterize_experts_bwd.default,
                          (*args, *scalars, alphas, last_ids, torch.randn_like(render),
                           torch.randn_like(alphas), True))


# ---------------------------------------------------------------- edge cases and errors


def test_no_gaussians_returns_background():
    bg = torch.rand(2, 3, 4)
    empty = dict(means2d=torch.zeros(2, 0, 2, requires_grad=True), conics=torch.zeros(2, 0, 3),
                 opacities=torch.zeros(2, 0), features=torch.zeros(2, 0, 4),
                 expert_ids=torch.zeros(2, 0, dtype=torch.int32), backgrounds=bg,
                 isect_offsets=torch.zeros(2, 2, 3, dtype=torch.int32),
                 flatten_ids=torch.zeros(0, dtype=torch.int32))
    render, alphas = rasterize_to_pixels_experts(**empty, width=W, height=H, tile_size=TS,
                                                 num_experts=3)
    want = bg[:, :, None, None, :].expand(2, 3, H, W, 4)
    torch.testing.assert_close(render, want, rtol=0, atol=0)
    assert (alphas == 0).all()
    render.sum().backward()
    assert empty["means2d"].grad.shape == (2, 0, 2)

    # Gaussians but no intersections: background too.
    sc = make_scene(2, 5, 3, 4, seed=1)
    sc["isect_offsets"] = torch.zeros_like(sc["isect_offsets"])
    sc["flatten_ids"] = torch.zeros(0, dtype=torch.int32)
    render, alphas, args = run_op(sc, grad=True)
    torch.testing.assert_close(render, sc["backgrounds"][:, :, None, None, :].expand_as(render))
    (render.sum() + alphas.sum()).backward()
    assert (args["means2d"].grad == 0).all()
    torch.testing.assert_close(args["backgrounds"].grad, torch.full((2, 3, 4), float(H * W)))


def _call(sc, **overrides):
    args = {k: sc[k] for k in ("means2d", "conics", "opacities", "features", "expert_ids",
                                "backgrounds", "isect_offsets", "flatten_ids")}
    args.update(width=W, height=H, tile_size=TS, num_experts=sc["K"])
    args.update(overrides)
    return rasterize_to_pixels_experts(**args)


def _op_call(sc, **overrides):
    args = {k: sc[k] for k in ("means2d", "conics", "opacities", "features", "expert_ids",
                                "backgrounds", "isect_offsets", "flatten_ids")}
    args.update(width=W, height=H, tile_size=TS, num_experts=sc["K"], alpha_max=0.999,
                min_transmittance=1e-4, pixel_offset=0.5, absgrad=False)
    args.update(overrides)
    return _ops.rasterize_experts_fwd(*args.values())


def test_bad_inputs_raise_clear_errors():
    sc = make_scene(2, 10, 3, 4, seed=0)
    bad_ids = sc["expert_ids"].clone()
    bad_ids[1, 4] = 3
    msg = r"expert_ids must be in \[0, 3\), got 3 at flat index 14"
    with pytest.raises(RuntimeError, match=msg):
        _call(sc, expert_ids=bad_ids)
    with pytest.raises(RuntimeError, match="got -1"):
        _call(sc, expert_ids=bad_ids.fill_(-1))
    for k in (0, 17):
        with pytest.raises(ValueError, match="num_experts"):
            _call(sc, num_experts=k)
        with pytest.raises(RuntimeError, match=r"num_experts must be in \[1, 16\]"):
            _op_call(sc, num_experts=k)
    with pytest.raises(ValueError, match="conics"):
        _call(sc, conics=sc["conics"][:, :9])
    with pytest.raises(RuntimeError, match="conics"):
        _op_call(sc, conics=sc["conics"][:, :9])
    with pytest.raises(ValueError, match="backgrounds"):
        _call(sc, backgrounds=sc["backgrounds"][:, :2])
    with pytest.raises(TypeError, match="features"):
        _call(sc, features=sc["features"].int())
    with pytest.raises(RuntimeError, match="features"):
        _op_call(sc, features=sc["features"].int())
    with pytest.raises(TypeError, match="expert_ids must be int32"):
        _call(sc, expert_ids=sc["expert_ids"].long())
    with pytest.raises(ValueError, match="isect_offsets"):
        _call(sc, isect_offsets=sc["isect_offsets"][:, :1])
    with pytest.raises(RuntimeError, match="isect_offsets"):
        _op_call(sc, isect_offsets=sc["isect_offsets"].transpose(1, 2))
    with pytest.raises(RuntimeError, match="isect_offsets must be non-decreasing"):
        _op_call(sc, isect_offsets=sc["isect_offsets"].flip(2).contiguous())
    bad_flat = sc["flatten_ids"].clone()
    bad_flat[0] = 20
    with pytest.raises(RuntimeError, match=r"flatten_ids must be in \[0, 20\), got 20"):
        _call(sc, flatten_ids=bad_flat)
    with pytest.raises(RuntimeError, match="alpha_max"):
        _op_call(sc, alpha_max=1.0)


def test_backward_checks_forward_outputs():
    sc = make_scene(1, 10, 2, 3, seed=0)
    ins = [sc[k] for k in ("means2d", "conics", "opacities", "features", "expert_ids",
                           "backgrounds", "isect_offsets", "flatten_ids")]
    scalars = (W, H, TS, 2, 0.999, 1e-4, 0.5)
    render, alphas, last_ids = _ops.rasterize_experts_fwd(*ins, *scalars, False)
    v_r, v_a = torch.ones_like(render), torch.ones_like(alphas)
    out = _ops.rasterize_experts_bwd(*ins, *scalars, alphas, last_ids, v_r, v_a, False)
    assert out[5].shape == (0,)
    bad = last_ids.clone()
    bad[0, 0, 0, 0] = sc["flatten_ids"].numel()
    with pytest.raises(RuntimeError, match="outside its tile's run"):
        _ops.rasterize_experts_bwd(*ins, *scalars, alphas, bad, v_r, v_a, False)
    with pytest.raises(RuntimeError, match="v_render must be"):
        _ops.rasterize_experts_bwd(*ins, *scalars, alphas, last_ids, v_r[..., :2], v_a, False)
