"""MLP deformation expert (Deformable-3DGS): an MLP of the encoded (canonical position, time)."""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DeformationExpert, GaussianSet, _check_step, positional_encoding


class DeformNetwork(torch.nn.Module):
    """MLP F(γ(x), γ(t)) → (Δμ [N,3], Δq [N,4], Δs [N,3]) with one skip connection re-feeding the input.

    Args:
        pos_freqs: octaves L_x of the position encoding (published 10).
        time_freqs: octaves L_t of the time encoding (published 6 on D-NeRF, 10 on real scenes).
        width, depth: hidden width and number of hidden layers (published 256 and 8); the input is
            concatenated again after layer ``depth // 2``.
    """

    def __init__(self, pos_freqs: int = 10, time_freqs: int = 6, width: int = 64, depth: int = 4):
        super().__init__()
        if depth < 1 or width < 1 or pos_freqs < 0 or time_freqs < 0:
            raise ValueError("DeformNetwork needs depth >= 1, width >= 1 and non-negative frequency counts")
        self.pos_freqs, self.time_freqs = pos_freqs, time_freqs
        in_dim = 3 * (2 * pos_freqs + 1) + (2 * time_freqs + 1)
        self.skip = depth // 2 if depth > 1 else -1
        layers = []
        for i in range(depth):
            d_in = in_dim if i == 0 else width + (in_dim if i == self.skip else 0)
            layers.append(torch.nn.Linear(d_in, width))
        self.layers = torch.nn.ModuleList(layers)
        self.d_means = torch.nn.Linear(width, 3)
        self.d_quats = torch.nn.Linear(width, 4)
        self.d_scales = torch.nn.Linear(width, 3)
        for head in (self.d_means, self.d_quats, self.d_scales):  # start close to the identity deformation
            torch.nn.init.xavier_uniform_(head.weight, gain=0.01)
            torch.nn.init.zeros_(head.bias)

    def forward(self, x: Tensor, t: Tensor) -> Dict[str, Tensor]:
        """x: [N, 3] positions; t: [N, 1] times. Returns deltas {"means" [N,3], "quats" [N,4], "scales" [N,3]}."""
        inp = torch.cat([positional_encoding(x, self.pos_freqs), positional_encoding(t, self.time_freqs)], dim=-1)
        h = inp
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([inp, h], dim=-1)
            h = F.relu(layer(h))
        return {"means": self.d_means(h), "quats": self.d_quats(h), "scales": self.d_scales(h)}


class MLPExpert(DeformationExpert):
    """Canonical Gaussians deformed by ``DeformNetwork(γ(μ.detach()), γ(t))``.

    At time t: μ(t) = μ + Δμ, q(t) = normalise(q) + Δq, s(t) = exp(log s + Δs); opacity and colour are
    static. The canonical position enters the network detached, as published. The scale delta acts on the
    log-scale so scales stay positive. During the first ``warmup_fraction`` of training (``step_schedule``)
    the deformation is switched off, as in the published static warm-up (3k of 40k iterations).
    The network's learning rate is the published 8e-4; ``moegs demo`` and ``moegs train`` multiply it by
    ``ExperimentConfig.network_lr_scale`` (default 3) for their short budgets.
    """

    name = "mlp"

    def __init__(self, points: Tensor, colors: Tensor, *, sh_degree: int = 3, scene_radius: float = 1.0,
                 pos_freqs: int = 10, time_freqs: int = 6, width: int = 64, depth: int = 4,
                 warmup_fraction: float = 0.075, network_lr: float = 8e-4):
        super().__init__(points, colors, sh_degree=sh_degree, scene_radius=scene_radius)
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.network = DeformNetwork(pos_freqs, time_freqs, width, depth)
        self.warmup_fraction = float(warmup_fraction)
        self.network_lr = float(network_lr)
        self.deformation_on = True

    def deform(self, t: float) -> GaussianSet:
        s = self.splats
        if not self.deformation_on:
            return self.activate(s["means"], s["quats"], s["scales"], s["opacities"])
        n = self.num_gaussians
        tt = s["means"].new_full((n, 1), t)
        d = self.network(s["means"].detach(), tt)
        quats = F.normalize(s["quats"], dim=-1) + d["quats"]
        return self.activate(s["means"] + d["means"], quats, s["scales"] + d["scales"], s["opacities"])

    def splat_lrs(self) -> Dict[str, float]:
        lrs = super().splat_lrs()
        lrs["scales"] = 1e-3  # published scaling lr of this expert
        return lrs

    def network_param_groups(self) -> List[dict]:
        return [{"params": list(self.network.parameters()), "lr": self.network_lr, "name": "deform_mlp"}]

    def step_schedule(self, step: int, total: int) -> None:
        _check_step(step, total)
        self.deformation_on = step >= self.warmup_fraction * total
