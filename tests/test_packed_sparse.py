"""packed=True meta (COO batch/camera/gaussian ids) against gsplat's reference functions, and
sparse_grad=True gradients against the dense path."""

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _isect_tiles, _quat_scale_to_covar_preci

import moegs
from tests.scenes import random_scene


def _scene_with_culled(batch=(), seed=0, n=70, n_cams=3):
    """A random scene plus Gaussians behind every camera and far off to the side (never visible)."""
    s, W, H = random_scene(n=n, n_cams=n_cams, batch=batch, seed=seed)
    m = s["means"].clone()
    m[..., ::5, 2] *= -1.0  # behind the cameras
    m[..., 1::7, 0] += 50.0  # far off-screen
    s["means"] = m
    return s, W, H


def _args(s, W, H):
    return (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], W, H)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_packed_meta_matches_gsplat_reference(batch):
    s, W, H = _scene_with_culled(batch=batch, seed=4)
    s = {k: v.double() for k, v in s.items()}
    _, _, meta = moegs.rasterization(*_args(s, W, H), packed=True)
    _, _, dense = moegs.rasterization(*_args(s, W, H), packed=False)
    C, N = s["viewmats"].shape[-3], s["means"].shape[-2]
    B = max(1, len(batch) and batch[0])

    # gsplat's float64 reference projection (no opacity-aware extent, so its visible set is a superset).
    covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], True, False, triu=False)
    g_radii, g_means2d, g_depths, g_conics, _ = _fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], W, H)
    g_radii, g_means2d = g_radii.reshape(B, C, N, 2), g_means2d.reshape(B, C, N, 2)
    g_depths, g_conics = g_depths.reshape(B, C, N), g_conics.reshape(B, C, N, 3)

    # The COO ids enumerate the visible (batch, camera, gaussian) triples of the dense radii, row-major.
    vis = (dense["radii"] > 0).all(-1).reshape(B, C, N)
    want_b, want_c, want_g = vis.nonzero(as_tuple=True)
    assert 0 < len(want_g) < B * C * N
    for key, want in (("batch_ids", want_b), ("camera_ids", want_c), ("gaussian_ids", want_g)):
        assert meta[key].dtype == torch.int64 and torch.equal(meta[key], want), key
    b, c, g = meta["batch_ids"], meta["camera_ids"], meta["gaussian_ids"]
    assert bool((g_radii[b, c, g] > 0).all())
    assert torch.equal(meta["radii"], dense["radii"].reshape(B, C, N, 2)[b, c, g])
    torch.testing.assert_close(meta["means2d"], g_means2d[b, c, g], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(meta["depths"], g_depths[b, c, g], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(meta["conics"], g_conics[b, c, g], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(meta["opacities"], s["opacities"].reshape(B, N)[b, g])

    # Tile intersections: the same keys as gsplat's reference on the dense arrays; flatten_ids index the
    # packed rows, which map back to the dense (image, gaussian) index.
    tw, th = meta["tile_width"], meta["tile_height"]
    _, g_isect, g_flat = _isect_tiles(dense["means2d"].reshape(B * C, N, 2), dense["radii"].reshape(B * C, N, 2),
                                      dense["depths"].reshape(B * C, N), 16, tw, th)
    assert torch.equal(meta["isect_ids"], g_isect)
    packed_to_dense = (b * C + c) * N + g
    assert torch.equal(packed_to_dense[meta["flatten_ids"].long()], g_flat.long())


def _grads(s, W, H, render, **kw):
    leaves = {k: v.clone().requires_grad_(k not in ("Ks",)) for k, v in s.items()}
    out = render(leaves, W, H, **kw)
    torch.manual_seed(0)
    (out * torch.rand_like(out)).sum().backward()
    return {k: v.grad for k, v in leaves.items() if v.grad is not None}


def _rgb(leaves, W, H, **kw):
    return moegs.rasterization(*_args(leaves, W, H), **kw)[0]


@pytest.mark.parametrize("batch", [(), (2,)])
def test_sparse_grad_equals_dense_gradients(batch):
    s, W, H = _scene_with_culled(batch=batch, seed=5)
    s = {k: v.double() for k, v in s.items()}
    dense = _grads(s, W, H, _rgb, packed=False)
    sparse = _grads(s, W, H, _rgb, packed=True, sparse_grad=True)
    _, _, meta = moegs.rasterization(*_args(s, W, H), packed=True)
    visible = torch.zeros(s["opacities"].shape, dtype=torch.bool)
    visible.reshape(-1, visible.shape[-1])[meta["batch_ids"], meta["gaussian_ids"]] = True
    assert 0 < visible.sum() < visible.numel()
    for k in ("means", "quats", "scales"):
        g = sparse[k]
        assert g.layout == torch.sparse_coo and g.shape == s[k].shape, k
        assert g.sparse_dim() == len(batch) + 1, k
        assert torch.equal(g._indices(), visible.nonzero().T), k  # exactly the visible Gaussians, once each
        torch.testing.assert_close(g.to_dense(), dense[k], rtol=1e-10, atol=1e-12)
    for k in ("opacities", "colors", "viewmats"):  # dense, as in gsplat
        assert sparse[k].layout == torch.strided, k
        torch.testing.assert_close(sparse[k], dense[k], rtol=1e-10, atol=1e-12)


def test_sparse_grad_with_covars_and_experts():
    s, W, H = _scene_with_culled(seed=6)
    s = {k: v.double() for k, v in s.items()}
    covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], True, False, triu=False)
    ids = torch.arange(s["means"].shape[0]) % 3
    base = {"means": s["means"], "covars": covars, "opacities": s["opacities"], "colors": s["colors"],
            "viewmats": s["viewmats"], "Ks": s["Ks"]}

    def experts(leaves, W, H, **kw):
        out = moegs.rasterize_experts(leaves["means"], None, None, leaves["opacities"], leaves["colors"],
                                      leaves["viewmats"], leaves["Ks"], W, H, ids, 3, covars=leaves["covars"], **kw)
        return torch.cat([out.colors, out.depths], -1)

    dense = _grads(base, W, H, experts, packed=False)
    sparse = _grads(base, W, H, experts, packed=True, sparse_grad=True)
    for k in ("means", "covars"):
        assert sparse[k].layout == torch.sparse_coo and sparse[k].shape == base[k].shape
        torch.testing.assert_close(sparse[k].to_dense(), dense[k], rtol=1e-10, atol=1e-12)


def test_sparse_grad_trains_with_sparse_adam():
    s, W, H = _scene_with_culled(seed=7)
    target = _rgb(s, W, H).detach()
    means = (s["means"] + 0.05 * torch.randn_like(s["means"])).requires_grad_()
    before = means.detach().clone()
    opt = torch.optim.SparseAdam([means], lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = (_rgb({**s, "means": means}, W, H, packed=True, sparse_grad=True) - target).abs().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    moved = (means.detach() - before).abs().sum(-1) > 0
    _, _, meta = moegs.rasterization(*_args(s, W, H), packed=True)
    hidden = torch.ones(len(moved), dtype=torch.bool)
    hidden[meta["gaussian_ids"]] = False
    assert moved.any() and not moved[hidden & (s["means"][:, 2] < 0)].any()  # culled rows untouched
    assert losses[-1] < losses[0]


def test_sparse_grad_needs_packed():
    s, W, H = random_scene(n=10, n_cams=1)
    with pytest.raises(ValueError, match="packed"):
        moegs.rasterization(*_args(s, W, H), packed=False, sparse_grad=True)


def test_packed_absgrad_equals_dense_absgrad():
    s, W, H = _scene_with_culled(seed=8)
    s = {k: v.double() for k, v in s.items()}
    got = {}
    for packed in (False, True):
        leaves = {**s, "means": s["means"].clone().requires_grad_()}
        colors, _, meta = moegs.rasterization(*_args(leaves, W, H), packed=packed, absgrad=True)
        meta["means2d"].retain_grad()
        (colors * torch.linspace(-1.0, 1.0, 3, dtype=torch.float64)).sum().backward()
        got[packed] = meta
    dense, pk = got[False], got[True]
    b, c, g = pk["batch_ids"], pk["camera_ids"], pk["gaussian_ids"]
    assert float(pk["means2d"].absgrad.abs().sum()) > 0
    torch.testing.assert_close(pk["means2d"].absgrad, dense["means2d"].absgrad[c, g], rtol=1e-12, atol=1e-14)
    # Signed per-pixel gradients cancel in .grad but not in .absgrad.
    assert bool((pk["means2d"].absgrad > pk["means2d"].grad.abs() + 1e-9).any())
