"""Polynomial expert (Spacetime Gaussians): per-Gaussian cubic motion, linear rotation, temporal RBF opacity."""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DeformationExpert, GaussianSet, check_point_times


class PolynomialExpert(DeformationExpert):
    """Each Gaussian is a closed-form function of time; there is no network.

    With Δt = t − τ (τ: the Gaussian's temporal centre):

    * position  μ(t) = μ + b1·Δt + b2·Δt² + b3·Δt³  (Δt detached here, so τ learns through opacity only);
    * rotation  q(t) = normalise(q + ω·Δt)  (Δt detached);
    * opacity   σ(t) = sigmoid(o) · exp(−(Δt / exp(s_τ))²)  (temporal radial basis function);
    * scales and SH colour are static (SH instead of feature splatting, as inside MoE-GS).

    Extra ``splats`` entries: "motion" [N, 9] = (b1, b2, b3) flattened, "omega" [N, 4], "t_center" [N]
    (normalised time), "t_scale" [N] (log temporal width, normalised time units). The temporal factor can
    underflow to 0 far from τ, as in the original.

    Args:
        point_times: optional [P] time in [0, 1] at which each point was observed; the temporal centres start
            there (as published). Without it the centres are spread uniformly at random (``seed``).
        t_scale_init: initial log temporal width (published −trbfslinit: 0 on N3V, i.e. width 1).
    """

    name = "polynomial"

    def __init__(self, points: Tensor, colors: Tensor, *, sh_degree: int = 3, scene_radius: float = 1.0,
                 point_times: Optional[Tensor] = None, t_scale_init: float = 0.0, seed: int = 0):
        super().__init__(points, colors, sh_degree=sh_degree, scene_radius=scene_radius)
        n = self.num_gaussians
        if point_times is None:
            centers = torch.rand(n, generator=torch.Generator().manual_seed(seed))
        else:
            centers = check_point_times(point_times, n)
        if not math.isfinite(t_scale_init):
            raise ValueError(f"t_scale_init must be finite, got {t_scale_init}")
        self.splats["motion"] = torch.nn.Parameter(torch.zeros(n, 9))
        self.splats["omega"] = torch.nn.Parameter(torch.zeros(n, 4))
        self.splats["t_center"] = torch.nn.Parameter(centers.clone())
        self.splats["t_scale"] = torch.nn.Parameter(torch.full((n,), float(t_scale_init)))

    def temporal_opacity(self, t: float) -> Tensor:
        """[N] temporal RBF factor exp(−((t − τ) / exp(s_τ))²)."""
        s = self.splats
        return torch.exp(-((t - s["t_center"]) / torch.exp(s["t_scale"])).square())

    def deform(self, t: float) -> GaussianSet:
        s = self.splats
        dt = (t - s["t_center"]).detach()[:, None]  # [N, 1]
        b = s["motion"].view(-1, 3, 3)  # [N, (b1, b2, b3), xyz]
        means = s["means"] + b[:, 0] * dt + b[:, 1] * dt ** 2 + b[:, 2] * dt ** 3
        quats = F.normalize(s["quats"] + s["omega"] * dt, dim=-1)
        return self.activate(means, quats, s["scales"], s["opacities"], opacity_factor=self.temporal_opacity(t))

    def splat_lrs(self) -> Dict[str, float]:
        lrs = super().splat_lrs()
        lrs.update({
            "motion": 1.6e-4 * self.scene_radius * 0.5 * 3.5,
            "omega": 1e-4,
            "t_center": 1e-4,
            "t_scale": 0.03,
        })
        return lrs
