"""Each dynamic expert fits moving points over time (pure torch, no rendering) far better than the static one."""

import math

import pytest
import torch

from moegs.experts import build_expert

N_POINTS = 16
TRAIN_T = torch.linspace(0, 1, 21)
TEST_T = (TRAIN_T[:-1] + TRAIN_T[1:]) / 2  # held-out times between the training frames


def _trajectories():
    g = torch.Generator().manual_seed(0)
    start = torch.rand(N_POINTS, 3, generator=g)
    vel = torch.randn(N_POINTS, 3, generator=g) * 0.2
    amp = torch.randn(N_POINTS, 3, generator=g) * 0.15
    phase = torch.rand(N_POINTS, 1, generator=g) * math.pi

    def at(t: float) -> torch.Tensor:  # [N, 3] smooth non-linear motion
        return start + vel * t + amp * torch.sin(math.pi * t + phase)

    return start, at


def _fit(name, steps=200, seed=0, **cfg):
    torch.manual_seed(seed)
    start, target = _trajectories()
    e = build_expert(name, target(0.5), torch.rand(N_POINTS, 3), sh_degree=0, **cfg)
    # the experts' own learning-rate ratios, scaled up so a few hundred steps suffice
    net = [{"params": grp["params"], "lr": 3e-3 * grp["lr"] / e.network_param_groups()[0]["lr"]}
           for grp in e.network_param_groups()]
    groups = [{"params": list(e.splats.values()), "lr": 1e-2}] + net
    opt = torch.optim.Adam(groups)
    for step in range(steps):
        ts = TRAIN_T[torch.randint(len(TRAIN_T), (3,))]
        loss = sum((e(float(t)).means - target(float(t))).square().sum(-1).mean() for t in ts) / len(ts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if "dynamic" in e.splats:
            e.splats["dynamic"].data.fill_(1.0)  # all keyframed (the flag's lr is 0 in real training)
    with torch.no_grad():
        return float(sum((e(float(t)).means - target(float(t))).square().sum(-1).mean() for t in TEST_T) / len(TEST_T))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny tensors: thread hand-offs cost more than the work on a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def static_error(_one_thread):
    return _fit("static")


@pytest.mark.parametrize("name, cfg", [
    ("mlp", {"pos_freqs": 4, "time_freqs": 4}),
    ("hexplane", {"spatial_res": (8, 8, 8), "time_res": 8, "multires": (1,)}),
    ("embedding", {"num_frames": 21}),
    ("polynomial", {}),
    ("keyframe", {"num_keyframes": 6, "dynamic_fraction": 1.0}),
])
def test_dynamic_expert_beats_static_on_moving_points(name, cfg, static_error):
    err = _fit(name, **cfg)
    print(f"{name}: held-out MSE {err:.2e} vs static {static_error:.2e}")
    assert static_error > 1e-3  # the motion is real
    assert err < 0.1 * static_error
