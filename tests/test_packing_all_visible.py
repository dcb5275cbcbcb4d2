"""Packed rendering when every Gaussian is visible (reshaped rows) matches the gathered rows of a scene with
one extra Gaussian behind the camera, in outputs and gradients."""

import torch

import moegs


def _scene(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    z = 2.0 + 4.0 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * z[:, None]  # inside tan(half fov) = 0.5
    means = torch.cat([xy, z[:, None]], dim=-1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = torch.exp(torch.empty(n, 3).uniform_(-4.8, -2.8, generator=g))
    opacities = torch.empty(n).uniform_(0.1, 0.9, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return means, quats, scales, opacities, colors


def _render(leaves, size):
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[float(size), 0.0, size / 2], [0.0, float(size), size / 2], [0.0, 0.0, 1.0]]])
    leaves = [t.clone().requires_grad_(True) for t in leaves]
    render, alphas, meta = moegs.rasterization(*leaves, viewmats, Ks, size, size, packed=True)
    weight = torch.rand(render.shape, generator=torch.Generator().manual_seed(7))
    ((render * weight).sum() + alphas.sum()).backward()
    return render, alphas, meta, [t.grad for t in leaves]


def test_all_visible_rows_match_gathered_rows():
    n, size = 300, 64
    leaves = _scene(n, seed=3)
    hidden = [torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
              torch.full((1, 3), 0.05), torch.tensor([0.5]), torch.tensor([[0.2, 0.3, 0.4]])]
    with_hidden = [torch.cat([h, t]) for h, t in zip(hidden, leaves)]  # hidden Gaussian is row 0

    r1, a1, m1, g1 = _render(leaves, size)
    r2, a2, m2, g2 = _render(with_hidden, size)
    assert m1["gaussian_ids"].numel() == n and m2["gaussian_ids"].numel() == n
    assert torch.equal(m2["gaussian_ids"], torch.arange(1, n + 1))
    assert "View" in type(m1["means2d"].grad_fn).__name__  # all visible: rows are reshaped, not gathered
    assert "Index" in type(m2["means2d"].grad_fn).__name__
    torch.testing.assert_close(r1, r2, rtol=0, atol=1e-6)
    torch.testing.assert_close(a1, a2, rtol=0, atol=1e-6)
    torch.testing.assert_close(m1["means2d"], m2["means2d"], rtol=0, atol=1e-5)
    for a, b in zip(g1, g2):
        assert torch.all(b[0] == 0)
        torch.testing.assert_close(a, b[1:], rtol=1e-5, atol=1e-6)
