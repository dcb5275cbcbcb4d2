"""A tiny stand-alone expert and scene for the mixture tests (independent of moegs.experts / moegs.data)."""

import math
import types

import torch
from torch import nn


class ToyExpert(nn.Module):
    """Gaussians moving linearly in time: means + t·velocity; SH colour of degree ``sh_degree``."""

    def __init__(self, n=60, sh_degree=0, seed=0, name="toy"):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.name, self.sh_degree = name, sh_degree
        nc = (sh_degree + 1) ** 2
        self.splats = nn.ParameterDict({
            "means": nn.Parameter(torch.randn(n, 3, generator=g) * 0.4 + torch.tensor([0.0, 0.0, 3.0])),
            "quats": nn.Parameter(torch.randn(n, 4, generator=g)),
            "scales": nn.Parameter(torch.log(torch.rand(n, 3, generator=g) * 0.12 + 0.04)),
            "opacities": nn.Parameter(torch.randn(n, generator=g)),
            "sh0": nn.Parameter(torch.randn(n, 1, 3, generator=g)),
            "shN": nn.Parameter(torch.randn(n, nc - 1, 3, generator=g) * 0.2),
            "velocity": nn.Parameter(torch.randn(n, 3, generator=g) * 0.2),
            "router": nn.Parameter(torch.tensor([0.9, 0.9, 0.0]).repeat(n, 1) + 0.3 * torch.randn(n, 3, generator=g)),
        })
        self.bias = nn.Parameter(torch.zeros(3))  # a "network" parameter shared by all Gaussians

    @property
    def num_gaussians(self):
        return int(self.splats["means"].shape[0])

    def forward(self, t):
        s = self.splats
        return types.SimpleNamespace(
            means=s["means"] + t * s["velocity"] + self.bias, quats=s["quats"], scales=torch.exp(s["scales"]),
            opacities=torch.sigmoid(s["opacities"]), sh=torch.cat([s["sh0"], s["shN"]], 1),
        )

    def splat_lrs(self):
        return {"means": 1e-3, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 1e-4,
                "velocity": 1e-3, "router": 0.5}

    def network_param_groups(self):
        return [{"params": [self.bias], "lr": 1e-3, "name": "bias"}]

    def regularization(self, t):
        return self.splats["velocity"].square().mean() * 1e-3

    def step_schedule(self, step, total):
        pass


def toy_camera(i, W=24, H=20, t=0.5, image=None, labels=None):
    a = 0.3 * i
    R = torch.tensor([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
    vm = torch.eye(4)
    vm[:3, :3] = R
    vm[:3, 3] = torch.tensor([0.0, 0.0, 3.0]) - R @ torch.tensor([0.0, 0.0, 3.0])
    K = torch.tensor([[30.0, 0.0, W / 2], [0.0, 30.0, H / 2], [0.0, 0.0, 1.0]])
    return types.SimpleNamespace(viewmat=vm, K=K, width=W, height=H, time=t, image=image, labels=labels,
                                 depth=None, name=f"cam{i}", camera_id=i, frame=0)


def toy_scene(n_train=4, n_test=2, W=24, H=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = [toy_camera(i, W, H, t=(i + 1) / (n_train + 1), image=torch.rand(H, W, 3, generator=g))
             for i in range(n_train)]
    test = [toy_camera(i + 0.5, W, H, t=0.3 + 0.2 * i, image=torch.rand(H, W, 3, generator=g),
                       labels=torch.randint(-1, 3, (H, W), generator=g)) for i in range(n_test)]
    return types.SimpleNamespace(name="toy", train=train, test=test, background=torch.tensor([0.1, 0.2, 0.3]),
                                 points=torch.randn(50, 3), point_colors=torch.rand(50, 3),
                                 center=torch.zeros(3), radius=1.0, label_names=None)
