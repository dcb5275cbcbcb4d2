"""gsplat's densification ops keep every splats entry (and the optimiser state) consistent for every expert."""

import pytest
import torch
from gsplat import DefaultStrategy
from gsplat.strategy.ops import duplicate, remove, split

from moegs.experts import EXPERTS, build_expert


def _loss(e, t):
    g = e(t)
    return (g.means.square().sum() + g.scales.sum() + g.quats.sum() + g.opacities.sum() + g.sh.square().sum()
            + e.regularization(t))


def _step(e, optimizers, net_opt, t):
    loss = _loss(e, t)
    loss.backward()
    for opt in list(optimizers.values()) + [net_opt]:
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss


@pytest.mark.parametrize("name", sorted(EXPERTS))
def test_duplicate_split_remove_keep_splats_consistent(name):
    g = torch.Generator().manual_seed(0)
    n = 40
    cfg = {"keyframe": {"dynamic_fraction": 0.5}}.get(name, {})
    e = build_expert(name, torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g), sh_degree=1, **cfg)
    lrs = e.splat_lrs()
    optimizers = {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in e.splats.items()}
    DefaultStrategy(verbose=False).check_sanity(e.splats, optimizers)
    groups = e.network_param_groups() or [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.0, "name": "x"}]
    net_opt = torch.optim.Adam(groups)
    _step(e, optimizers, net_opt, 0.3)
    state = {"grad2d": torch.rand(n), "count": torch.ones(n)}

    mask = torch.zeros(n, dtype=torch.bool)
    mask[::4] = True  # 10
    duplicate(e.splats, optimizers, state, mask)
    assert e.num_gaussians == 50
    mask = torch.zeros(50, dtype=torch.bool)
    mask[1::5] = True  # 10 → 20
    split(e.splats, optimizers, state, mask)
    assert e.num_gaussians == 60
    mask = torch.zeros(60, dtype=torch.bool)
    mask[:7] = True
    remove(e.splats, optimizers, state, mask)
    assert e.num_gaussians == 53

    for key, p in e.splats.items():
        assert p.shape[0] == 53, key
        opt = optimizers[key]
        assert opt.param_groups[0]["params"][0] is p
        for v in opt.state[p].values():
            if torch.is_tensor(v) and v.dim() > 0:
                assert v.shape == p.shape, key
    assert all(len(v) == 53 for v in state.values())
    for t in (0.0, 0.5, 1.0):
        out = e(t)
        assert len(out) == 53 and torch.isfinite(out.means).all() and (out.scales > 0).all()
    loss = _step(e, optimizers, net_opt, 0.7)
    assert torch.isfinite(loss)
    assert torch.isfinite(_loss(e, 0.7))
