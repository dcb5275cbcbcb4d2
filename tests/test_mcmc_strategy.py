"""moegs.strategy: MCMC relocation formula, parameter surgery and a CPU training loop."""

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

import moegs
from moegs.strategy import MCMCStrategy, binomial_table, compute_relocation
from moegs.strategy import mcmc_ops
from tests.scenes import random_scene


def _eq9(o: float, s: float, n: int):
    """Equation 9 of the MCMC paper, written out with plain Python floats."""
    o_n = 1.0 - (1.0 - o) ** (1.0 / n)
    denom = sum(math.comb(i - 1, k) * (-1) ** k / math.sqrt(k + 1) * o_n ** (k + 1)
                for i in range(1, n + 1) for k in range(i))
    return o_n, s * o / denom


def test_compute_relocation_matches_equation_9():
    g = torch.Generator().manual_seed(0)
    o = 0.02 + 0.96 * torch.rand(40, generator=g, dtype=torch.float64)
    s = torch.rand(40, 3, generator=g, dtype=torch.float64) + 0.1
    n = torch.randint(1, 12, (40,), generator=g)
    new_o, new_s = compute_relocation(o, s, n, binomial_table(51, torch.float64))
    for i in range(40):
        want_o, want_s = _eq9(float(o[i]), 1.0, int(n[i]))
        assert math.isclose(float(new_o[i]), want_o, rel_tol=1e-12)
        torch.testing.assert_close(new_s[i], s[i] * want_s, rtol=1e-10, atol=0)
    # n copies of opacity o_n stack to the original opacity; one copy is the original.
    torch.testing.assert_close(1 - (1 - new_o) ** n.double(), o, rtol=1e-12, atol=1e-12)
    one_o, one_s = compute_relocation(o, s, torch.ones_like(n), binomial_table(51, torch.float64))
    torch.testing.assert_close(one_o, o)
    torch.testing.assert_close(one_s, s)


def test_compute_relocation_clamps_ratio_and_checks_shapes():
    b = binomial_table(8, torch.float64)
    o, s = torch.tensor([0.6], dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    big = compute_relocation(o, s, torch.tensor([100]), b)
    at_max = compute_relocation(o, s, torch.tensor([8]), b)
    assert torch.equal(big[0], at_max[0]) and torch.equal(big[1], at_max[1])
    with pytest.raises(ValueError, match="scales"):
        compute_relocation(o, s[:, :2], torch.tensor([2]), b)
    with pytest.raises(ValueError, match="ratios"):
        compute_relocation(o, s, torch.tensor([2, 3]), b)


def _params(n=50, seed=0):
    s, W, H = random_scene(n=n, n_cams=2, width=40, height=32, seed=seed)
    params = torch.nn.ParameterDict({
        "means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
        "opacities": torch.logit(s["opacities"]), "colors": torch.logit(s["colors"].clamp(0.05, 0.95)),
    })
    optimizers = {k: torch.optim.Adam([v], lr=1e-3) for k, v in params.items()}
    return params, optimizers, s, W, H


def test_position_noise_matches_gsplat_covariance():
    params, _, _, _, _ = _params()
    params["opacities"].data[:10] = -6.0  # nearly transparent: these move
    eps = torch.randn(50, 3)
    got = mcmc_ops.position_noise(params, scaler=0.7, noise=eps)
    covars, _ = _quat_scale_to_covar_preci(params["quats"].detach(), params["scales"].detach().exp(),
                                           compute_covar=True, compute_preci=False, triu=False)
    opac = torch.sigmoid(params["opacities"].detach())
    gate = 1 / (1 + torch.exp(-100 * ((1 - opac) - 0.995)))
    want = (covars @ (eps * gate[:, None] * 0.7)[..., None])[..., 0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert got[:10].abs().sum() > 100 * got[10:].abs().sum()


def _take_adam_step(params, optimizers):
    for p in params.values():
        p.grad = torch.randn_like(p)
    for opt in optimizers.values():
        opt.step()


def test_relocate_moves_dead_onto_sampled_live_gaussians():
    torch.manual_seed(1)
    params, optimizers, _, _, _ = _params()
    _take_adam_step(params, optimizers)
    params["opacities"].data[:12] = -9.0
    dead = torch.sigmoid(params["opacities"].detach()) <= 0.005
    before = {k: v.detach().clone() for k, v in params.items()}
    n = mcmc_ops.relocate(params, optimizers, dead, binomial_table(), 0.005)
    assert n == 12 and len(params["means"]) == 50
    after = {k: v.detach() for k, v in params.items()}
    # Each dead Gaussian now equals one live source, whose opacity / scale follow equation 9.
    for i in range(12):
        src = [j for j in range(12, 50) if torch.equal(after["means"][i], before["means"][j])]
        assert len(src) == 1, i
        j = src[0]
        assert torch.equal(after["quats"][i], before["quats"][j])
        count = sum(int(torch.equal(after["means"][k], before["means"][j])) for k in range(50))
        o_n, s_ratio = _eq9(float(torch.sigmoid(before["opacities"][j])), 1.0, count)
        assert math.isclose(float(torch.sigmoid(after["opacities"][i])), o_n, rel_tol=1e-4)
        torch.testing.assert_close(after["scales"][i], before["scales"][j] + math.log(s_ratio), rtol=0, atol=1e-5)
        torch.testing.assert_close(after["scales"][j], after["scales"][i])
        # The optimiser follows the new parameter; the source's moments are reset.
        st = optimizers["means"].state[params["means"]]
        assert float(st["exp_avg"][j].abs().sum()) == 0.0
    assert optimizers["means"].param_groups[0]["params"][0] is params["means"]
    assert torch.sigmoid(after["opacities"]).min() > 0.005


def test_sample_add_appends_copies_with_zero_state():
    torch.manual_seed(2)
    params, optimizers, _, _, _ = _params()
    _take_adam_step(params, optimizers)
    added = mcmc_ops.sample_add(params, optimizers, 7, binomial_table(), 0.005)
    assert added == 7 and all(len(v) == 57 for v in params.values())
    for name, opt in optimizers.items():
        st = opt.state[params[name]]
        assert st["exp_avg"].shape[0] == 57 and float(st["exp_avg"][50:].abs().sum()) == 0.0
    # Every new Gaussian copies an existing mean.
    m = params["means"].detach()
    assert all(any(torch.equal(m[50 + i], m[j]) for j in range(50)) for i in range(7))


def test_mcmc_strategy_trains_on_cpu():
    torch.manual_seed(3)
    gt, W, H = random_scene(n=120, n_cams=2, width=40, height=32, seed=11)
    target = moegs.rasterization(*(gt[k] for k in ("means", "quats", "scales", "opacities", "colors",
                                                      "viewmats", "Ks")), W, H)[0].detach()
    params, _, s, _, _ = _params(n=60, seed=12)
    params["opacities"].data[:8] = -9.0  # dead from the start: relocated on the first refine step
    lr = 5e-3
    optimizers = {k: torch.optim.Adam([v], lr=lr if k == "means" else 2e-2) for k, v in params.items()}
    strategy = MCMCStrategy(cap_max=80, refine_start_iter=2, refine_every=4, refine_stop_iter=100, noise_lr=50.0)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state()
    losses, counts = [], []
    for step in range(40):
        colors, _, info = moegs.rasterization(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            torch.sigmoid(params["colors"]), s["viewmats"], s["Ks"], W, H,
        )
        loss = (colors - target).abs().mean()
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, info, lr=lr)
        losses.append(loss.item())
        counts.append(len(params["means"]))
        if step == 4:
            assert torch.sigmoid(params["opacities"].detach()).min() > strategy.min_opacity  # relocated
    assert counts[0] == 60 and counts[-1] == 80  # grew by 5% per refine step up to cap_max
    assert all(len(v) == counts[-1] for v in params.values())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_bad_params_raise():
    params, optimizers, _, _, _ = _params(n=10)
    b = binomial_table()
    with pytest.raises(ValueError, match="dead"):
        mcmc_ops.relocate(params, optimizers, torch.zeros(9, dtype=torch.bool), b)
    with pytest.raises(ValueError, match="quats"):
        mcmc_ops.sample_add({k: v for k, v in params.items() if k != "quats"}, optimizers, 2, b)
    bad = dict(params)
    bad["colors"] = torch.nn.Parameter(torch.zeros(7, 3))
    with pytest.raises(ValueError, match="colors"):
        mcmc_ops.position_noise(bad, 1.0)
