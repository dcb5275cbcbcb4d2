"""MLP and embedding experts: positional encoding, warm-up, temporal tables and the coarse-to-fine schedule."""

import math

import numpy as np
import pytest
import torch

from moegs.experts import build_expert
from moegs.experts.base import positional_encoding
from moegs.experts.embedding import lerp_table, resample_table


def _cloud(n=24):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)


def test_positional_encoding_values():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.0]], dtype=torch.float64)
    out = positional_encoding(x, 3)
    assert out.shape == (2, 2 * 7)
    for r in range(2):
        ref = list(x[r].numpy())
        for k in range(3):
            ref += [math.sin(2 ** k * v) for v in x[r].numpy()] + [math.cos(2 ** k * v) for v in x[r].numpy()]
        np.testing.assert_allclose(out[r].numpy(), ref, rtol=1e-12, atol=1e-12)
    assert positional_encoding(x, 2, include_input=False).shape == (2, 8)


def test_mlp_warmup_and_detached_canonical_input():
    pts, cols = _cloud()
    e = build_expert("mlp", pts, cols, warmup_fraction=0.1)
    e.step_schedule(5, 100)
    torch.testing.assert_close(e(0.5).means, e.splats["means"])
    e.step_schedule(10, 100)
    g = e(0.5)
    assert not torch.equal(g.means, e.splats["means"])
    g.means.sum().backward()
    # the network sees μ detached: d(sum μ(t))/dμ is exactly the identity path
    torch.testing.assert_close(e.splats["means"].grad, torch.ones_like(pts))
    assert all(float(p.grad.abs().sum()) > 0 for p in e.network.d_means.parameters())
    assert all(float(p.grad.abs().sum()) > 0 for p in e.network.layers.parameters())


def test_resample_and_lerp_table_match_direct_interpolation():
    g = torch.Generator().manual_seed(1)
    table = torch.randn(7, 3, generator=g, dtype=torch.float64)
    out = resample_table(table, 4)
    src = np.linspace(0, 6, 4)  # rows of the resampled table sit at these source positions
    ref = np.stack([np.interp(src, np.arange(7), table[:, d].numpy()) for d in range(3)], -1)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert resample_table(table, 7) is table
    for t in (0.0, 0.31, 0.5, 1.0):
        ref_t = [np.interp(t * 6, np.arange(7), table[:, d].numpy()) for d in range(3)]
        np.testing.assert_allclose(lerp_table(table, t).numpy(), ref_t, rtol=1e-12, atol=1e-12)


def test_embedding_coarse_to_fine_schedule():
    pts, cols = _cloud()
    e = build_expert("embedding", pts, cols, num_frames=100, c2f_fraction=0.5, anneal_fraction=0.1)
    assert (e.coarse_embeddings, e.max_embeddings, e.fine_embeddings) == (10, 50, 50)
    e.step_schedule(0, 1000)
    assert e.fine_embeddings == 10 and e.delta_scale == 0.0
    torch.testing.assert_close(e(0.4).means, e.splats["means"])  # annealing: no deformation at step 0
    # with K_f == K_c the fine stage reads exactly the coarse temporal embedding
    torch.testing.assert_close(e.temporal_embedding(0.37, e.fine_embeddings), e.temporal_embedding(0.37, 10))
    e.step_schedule(250, 1000)
    assert e.fine_embeddings == 30 and e.delta_scale == 1.0
    e.step_schedule(500, 1000)
    assert e.fine_embeddings == 50
    e.step_schedule(900, 1000)
    assert e.fine_embeddings == 50
    torch.testing.assert_close(e.temporal_embedding(0.37, 50), lerp_table(e.temporal, 0.37))
    with pytest.raises(ValueError):
        build_expert("embedding", pts, cols, coarse_embeddings=8, max_embeddings=4)


def test_embedding_stages_add_deltas_in_sequence():
    pts, cols = _cloud()
    e = build_expert("embedding", pts, cols, num_frames=20, deform_sh=False)
    with torch.no_grad():
        e.splats["embedding"].normal_()
    g = e(0.6)
    z_g = e.splats["embedding"]
    dc = e.coarse(e.temporal_embedding(0.6, e.coarse_embeddings), z_g)
    df = e.fine(e.temporal_embedding(0.6, e.fine_embeddings), z_g)
    torch.testing.assert_close(g.means, e.splats["means"] + dc["means"] + df["means"])
    torch.testing.assert_close(g.scales, torch.exp(e.splats["scales"] + dc["scales"] + df["scales"]))
    # the split first layer equals a plain Linear on the concatenation [z_t ‖ z_g]
    z_t = e.temporal_embedding(0.6, e.coarse_embeddings)
    h = e.coarse.trunk(torch.cat([z_t.expand(len(z_g), -1), z_g], -1))
    torch.testing.assert_close(e.coarse.heads(h)["means"], dc["means"])


def test_embedding_smoothness_follows_densification():
    pts, cols = _cloud(40)
    e = build_expert("embedding", pts, cols, knn=5, smooth_samples=None, smooth_falloff=0.0)
    assert float(e.regularization(0.5).detach()) == pytest.approx(1e-4 * float(torch.sigmoid(e.splats["opacities"].detach().mean())),
                                                      rel=1e-4)  # zero embeddings: only the opacity term
    with torch.no_grad():
        e.splats["embedding"].normal_()
    nb = e.neighbours()
    z = e.splats["embedding"].detach()
    ref = torch.sqrt((z[:, None] - z[nb]).square().sum(-1)).mean() + 1e-4 * torch.sigmoid(e.splats["opacities"].mean())
    torch.testing.assert_close(e.regularization(0.5), ref, rtol=1e-5, atol=1e-6)
    e.splats["means"] = torch.nn.Parameter(torch.cat([e.splats["means"].detach()] * 2))
    for k in list(e.splats.keys()):
        if k != "means":
            e.splats[k] = torch.nn.Parameter(torch.cat([e.splats[k].detach()] * 2))
    assert e.neighbours().shape == (80, 5)
