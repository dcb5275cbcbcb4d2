"""HexPlane expert (4DGaussians): multi-resolution feature planes over (x, y, z, t) + small MLP heads."""

from __future__ import annotations

import itertools
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DeformationExpert, DeltaHeads, GaussianSet, _check_step, check_time

# the six axis pairs of (x, y, z, t) in itertools order: xy, xz, xt, yz, yt, zt
PLANE_PAIRS = list(itertools.combinations(range(4), 2))
TIME_PLANES = [i for i, (a, b) in enumerate(PLANE_PAIRS) if b == 3]


def sample_plane(plane: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample a feature plane (align_corners=True, border padding).

    Args:
        plane: [1, C, H, W] features; W spans the first coordinate, H the second, both over [−1, 1].
        coords: [N, 2] coordinates in [−1, 1] (first → W, second → H).
    Returns:
        [N, C] features.
    """
    out = F.grid_sample(plane, coords[None, :, None, :], mode="bilinear", padding_mode="border",
                        align_corners=True)  # [1, C, N, 1]
    return out[0, :, :, 0].t()


class HexPlaneField(torch.nn.Module):
    """Six planes per resolution level; per level the sampled features are multiplied, levels concatenated.

    Args:
        spatial_res: base resolution of x, y, z (published 64); level m uses m × spatial_res.
        time_res: resolution of t (never multiplied; published ≈ half the number of training frames).
        feat_dim: channels per plane (published 32 on D-NeRF, 16 on N3V).
        multires: spatial multipliers of the levels (published [1, 2]).
    """

    def __init__(self, spatial_res: Sequence[int] = (32, 32, 32), time_res: int = 16, feat_dim: int = 16,
                 multires: Sequence[int] = (1, 2)):
        super().__init__()
        if len(spatial_res) != 3 or min(spatial_res) < 2 or time_res < 2 or feat_dim < 1 or not multires:
            raise ValueError("HexPlaneField needs 3 spatial resolutions >= 2, time_res >= 2, feat_dim >= 1 "
                             "and at least one level")
        self.feat_dim = int(feat_dim)
        self.levels = torch.nn.ModuleList()
        for m in multires:
            res = [int(r) * int(m) for r in spatial_res] + [int(time_res)]
            planes = torch.nn.ParameterList()
            for a, b in PLANE_PAIRS:
                if b == 3:
                    p = torch.ones(1, feat_dim, res[b], res[a])
                else:
                    p = torch.empty(1, feat_dim, res[b], res[a]).uniform_(0.1, 0.5)
                planes.append(torch.nn.Parameter(p))
            self.levels.append(planes)

    @property
    def out_dim(self) -> int:
        return self.feat_dim * len(self.levels)

    def forward(self, xyzt: Tensor) -> Tensor:
        """xyzt: [N, 4] coordinates in [−1, 1]. Returns [N, feat_dim × levels]."""
        feats = []
        for planes in self.levels:
            f = None
            for plane, (a, b) in zip(planes, PLANE_PAIRS):
                s = sample_plane(plane, xyzt[:, [a, b]])
                f = s if f is None else f * s
            feats.append(f)
        return torch.cat(feats, dim=-1)

    def smoothness(self) -> Dict[str, Tensor]:
        """Regularisers: mean squared 2nd difference (along the plane's H axis) of the spatial planes
        ("plane_tv") and, along t, of the time planes ("time_smooth"); mean |1 − time plane| ("l1_time")."""
        def second_diff(p: Tensor) -> Tensor:
            d1 = p[..., 1:, :] - p[..., :-1, :]
            return (d1[..., 1:, :] - d1[..., :-1, :]).square().mean()

        zero = self.levels[0][0].new_zeros(())
        out = {"plane_tv": zero, "time_smooth": zero, "l1_time": zero}
        for planes in self.levels:
            for i, p in enumerate(planes):
                if i in TIME_PLANES:
                    out["time_smooth"] = out["time_smooth"] + second_diff(p)
                    out["l1_time"] = out["l1_time"] + (1 - p).abs().mean()
                else:
                    out["plane_tv"] = out["plane_tv"] + second_diff(p)
        return out


class HexPlaneExpert(DeformationExpert):
    """Canonical Gaussians deformed by a HexPlane field F(x, y, z, t) and MLP heads (4DGaussians).

    Positions are normalised to [−1, 1] by the axis-aligned box of the initial point cloud; t ∈ [0, 1] maps to
    [−1, 1] (the whole time resolution is used). Deltas are added to raw parameters: μ + Δμ, log s + Δs,
    q + Δq; opacity and colour are static. A coarse stage (the first ``coarse_fraction`` of training,
    ``step_schedule``) trains without deformation, as published (3k coarse before 14–20k fine iterations).

    Learning rates (× scene radius, as published): MLP 1.6e-4, planes 1.6e-3; ``moegs demo`` and
    ``moegs train`` multiply both by ``ExperimentConfig.network_lr_scale`` (default 3) for their short budgets.
    Regularisation (fine stage): ``plane_tv_weight`` · plane_tv + ``time_smoothness_weight`` · time_smooth
    + ``l1_time_weight`` · l1_time (published D-NeRF weights 1e-4 / 1e-2 / 1e-4).
    """

    name = "hexplane"

    def __init__(self, points: Tensor, colors: Tensor, *, sh_degree: int = 3, scene_radius: float = 1.0,
                 spatial_res: Sequence[int] = (32, 32, 32), time_res: int = 16, feat_dim: int = 16,
                 multires: Sequence[int] = (1, 2), width: int = 64, coarse_fraction: float = 0.13,
                 plane_tv_weight: float = 1e-4, time_smoothness_weight: float = 1e-2, l1_time_weight: float = 1e-4,
                 network_lr: float = 1.6e-4, grid_lr: float = 1.6e-3):
        super().__init__(points, colors, sh_degree=sh_degree, scene_radius=scene_radius)
        if not 0.0 <= coarse_fraction < 1.0:
            raise ValueError(f"coarse_fraction must be in [0, 1), got {coarse_fraction}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        pts = points.detach().float()
        lo, hi = pts.min(0).values, pts.max(0).values
        pad = 0.05 * (hi - lo).clamp_min(1e-3)
        self.register_buffer("aabb", torch.stack([lo - pad, hi + pad]))  # [2, 3]
        self.field = HexPlaneField(spatial_res, time_res, feat_dim, multires)
        self.trunk = torch.nn.Linear(self.field.out_dim, width)
        self.heads = DeltaHeads(width, {"means": 3, "scales": 3, "quats": 4})
        self.coarse_fraction = float(coarse_fraction)
        self.weights = (float(plane_tv_weight), float(time_smoothness_weight), float(l1_time_weight))
        self.network_lr, self.grid_lr = float(network_lr), float(grid_lr)
        self.deformation_on = True

    def normalized_coords(self, means: Tensor, t: float) -> Tensor:
        """[N, 4] (x, y, z, t) mapped to [−1, 1] (positions by the AABB, t → 2t − 1)."""
        lo, hi = self.aabb[0], self.aabb[1]
        xyz = (means - lo) / (hi - lo) * 2 - 1
        return torch.cat([xyz, xyz.new_full((xyz.shape[0], 1), 2 * t - 1)], dim=-1)

    def deform(self, t: float) -> GaussianSet:
        s = self.splats
        if not self.deformation_on:
            return self.activate(s["means"], s["quats"], s["scales"], s["opacities"])
        feat = self.field(self.normalized_coords(s["means"], t))
        d = self.heads(self.trunk(feat))
        return self.activate(s["means"] + d["means"], s["quats"] + d["quats"], s["scales"] + d["scales"],
                             s["opacities"])

    def regularization(self, t: float) -> Tensor:
        check_time(t)
        if not self.deformation_on:
            return self.splats["means"].new_zeros(())
        r = self.field.smoothness()
        w_tv, w_ts, w_l1 = self.weights
        return w_tv * r["plane_tv"] + w_ts * r["time_smooth"] + w_l1 * r["l1_time"]

    def step_schedule(self, step: int, total: int) -> None:
        _check_step(step, total)
        self.deformation_on = step >= self.coarse_fraction * total

    def network_param_groups(self) -> List[dict]:
        mlp = list(self.trunk.parameters()) + list(self.heads.parameters())
        return [
            {"params": mlp, "lr": self.network_lr * self.scene_radius, "name": "hexplane_mlp"},
            {"params": list(self.field.parameters()), "lr": self.grid_lr * self.scene_radius, "name": "hexplane_grid"},
        ]
