"""Embedding expert (E-D3DGS): per-Gaussian + temporal embeddings, coarse and fine deformation MLPs."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DeformationExpert, DeltaHeads, GaussianSet, _check_step, check_time, knn_indices


def resample_table(table: Tensor, rows: int) -> Tensor:
    """Linearly resample a [K, D] table along its first axis to [rows, D] (align_corners=True)."""
    if rows == table.shape[0]:
        return table
    return F.interpolate(table.t()[None], size=rows, mode="linear", align_corners=True)[0].t()


def lerp_table(table: Tensor, t: float) -> Tensor:
    """Row of a [K, D] table at normalised time t (rows at k / (K − 1)), linearly interpolated → [D]."""
    K = table.shape[0]
    x = t * (K - 1)
    k = min(int(math.floor(x)), K - 2)
    u = x - k
    return (1 - u) * table[k] + u * table[k + 1]


class EmbeddingDeformation(torch.nn.Module):
    """One deformation stage: trunk Linear([z_t ‖ z_g] → W), then (depth−1)×[ReLU, Linear(W, W)], and heads."""

    def __init__(self, in_dim: int, width: int, depth: int, sizes: Dict[str, int]):
        super().__init__()
        layers: List[torch.nn.Module] = [torch.nn.Linear(in_dim, width)]
        for _ in range(depth - 1):
            layers += [torch.nn.ReLU(), torch.nn.Linear(width, width)]
        self.trunk = torch.nn.Sequential(*layers)
        self.heads = DeltaHeads(width, sizes)

    def forward(self, z_t: Tensor, z_g: Tensor) -> Dict[str, Tensor]:
        """z_t: [D_t] temporal embedding; z_g: [N, D_g] Gaussian embeddings → deltas {key: [N, k]}."""
        # the first Linear is split so the time part is computed once for all Gaussians
        lin = self.trunk[0]
        d_t = z_t.shape[-1]
        h = z_g @ lin.weight[:, d_t:].t() + (lin.weight[:, :d_t] @ z_t + lin.bias)
        for layer in list(self.trunk)[1:]:
            h = layer(h)
        return self.heads(h)


class EmbeddingExpert(DeformationExpert):
    """Deformation f(z_g, z_t) of raw parameters without any position input (E-D3DGS).

    Each Gaussian carries an embedding z_g ("embedding" [N, D_g], init 0). A temporal table Z [K_max, D_t]
    is resampled to K rows and read at t by linear interpolation: the coarse stage uses K_c rows, the fine
    stage K_f rows, which grows from K_c to K_max over the first ``c2f_fraction`` of training
    (``step_schedule``; fully fine when never scheduled). Stages run in sequence on raw parameters:
    θ1 = θ0 + D_c(z_t^c, z_g), θ = θ1 + D_f(z_t^f, z_g) for θ = (μ, log s, q, SH); the deltas are scaled
    by min(1, step / (anneal_fraction · total)). K_c = max(2, T/10), K_max = max(K_c, T/2) for T frames
    (published 30 and 150 for 300 frames).

    Regularisation: ``smooth_weight`` · local embedding smoothness over ``knn`` neighbours,
    mean sqrt(Σ(z_g − z_nb)² · exp(−falloff · d² / radius²)) (published weight 1, falloff 2000, 20
    neighbours; neighbours recomputed when the Gaussians change; averaged over ``smooth_samples`` random
    Gaussians per call, or all when None) + ``opacity_weight`` · sigmoid(mean
    opacity logit) (published 1e-4).

    Learning rates (published): z_g 2.5e-3 (the SH DC rate); the MLPs and the temporal table share the
    deformation rate 1.6e-4 × scene radius (two groups here so they can be tuned apart). The network groups
    are multiplied by ``ExperimentConfig.network_lr_scale`` (default 3) in ``moegs demo`` / ``moegs train``.
    """

    name = "embedding"

    def __init__(self, points: Tensor, colors: Tensor, *, sh_degree: int = 3, scene_radius: float = 1.0,
                 num_frames: int = 50, coarse_embeddings: Optional[int] = None,
                 max_embeddings: Optional[int] = None, gaussian_dim: int = 32, temporal_dim: int = 64,
                 width: int = 64, depth: int = 1, deform_sh: bool = True, c2f_fraction: float = 0.125,
                 anneal_fraction: float = 0.0125, smooth_weight: float = 1.0, smooth_falloff: float = 2000.0,
                 knn: int = 20, smooth_samples: Optional[int] = 1024, opacity_weight: float = 1e-4,
                 network_lr: float = 1.6e-4,
                 embedding_lr: float = 2.5e-3, temporal_lr: float = 1.6e-4):
        super().__init__(points, colors, sh_degree=sh_degree, scene_radius=scene_radius)
        if num_frames < 2 or gaussian_dim < 1 or temporal_dim < 1 or width < 1 or depth < 1:
            raise ValueError("EmbeddingExpert needs num_frames >= 2 and positive dimensions/depth")
        k_c = coarse_embeddings if coarse_embeddings is not None else max(2, num_frames // 10)
        k_max = max_embeddings if max_embeddings is not None else max(k_c, num_frames // 2)
        if not 2 <= k_c <= k_max:
            raise ValueError(f"need 2 <= coarse_embeddings <= max_embeddings, got {k_c} and {k_max}")
        if not 0.0 <= c2f_fraction <= 1.0 or not 0.0 <= anneal_fraction <= 1.0:
            raise ValueError("c2f_fraction and anneal_fraction must be in [0, 1]")
        n = self.num_gaussians
        self.coarse_embeddings, self.max_embeddings = int(k_c), int(k_max)
        self.fine_embeddings = self.max_embeddings
        self.c2f_fraction, self.anneal_fraction = float(c2f_fraction), float(anneal_fraction)
        self.delta_scale = 1.0
        self.splats["embedding"] = torch.nn.Parameter(torch.zeros(n, gaussian_dim))
        self.temporal = torch.nn.Parameter(torch.randn(k_max, temporal_dim) * (0.01 / math.sqrt(temporal_dim)))
        n_sh = (sh_degree + 1) ** 2 * 3
        sizes = {"means": 3, "scales": 3, "quats": 4}
        if deform_sh:
            sizes["sh"] = n_sh
        self.coarse = EmbeddingDeformation(temporal_dim + gaussian_dim, width, depth, sizes)
        self.fine = EmbeddingDeformation(temporal_dim + gaussian_dim, width, depth, sizes)
        self.smooth_weight, self.smooth_falloff, self.knn = float(smooth_weight), float(smooth_falloff), int(knn)
        self.smooth_samples = None if smooth_samples is None else int(smooth_samples)
        self.opacity_weight = float(opacity_weight)
        self.network_lr, self.embedding_lr = float(network_lr), float(embedding_lr)
        self.temporal_lr = float(temporal_lr)
        self._nb_key = None
        self._nb = None

    def temporal_embedding(self, t: float, rows: int) -> Tensor:
        """[D_t] temporal embedding at time t from the table resampled to ``rows`` entries."""
        return lerp_table(resample_table(self.temporal, rows), t)

    def deform(self, t: float) -> GaussianSet:
        s = self.splats
        z_g = s["embedding"]
        means, log_scales, quats, sh = s["means"], s["scales"], s["quats"], self.sh()
        for stage, rows in ((self.coarse, self.coarse_embeddings), (self.fine, self.fine_embeddings)):
            d = stage(self.temporal_embedding(t, rows), z_g)
            a = self.delta_scale
            means = means + a * d["means"]
            log_scales = log_scales + a * d["scales"]
            quats = quats + a * d["quats"]
            if "sh" in d:
                sh = sh + a * d["sh"].view(sh.shape)
        return self.activate(means, quats, log_scales, s["opacities"], sh=sh)

    def neighbours(self) -> Tensor:
        """[N, k] nearest-neighbour indices of the canonical means, recomputed when the Gaussians change."""
        means = self.splats["means"]
        key = (id(means), means.shape[0])
        if self._nb is None or self._nb_key != key:
            self._nb = knn_indices(means.detach(), self.knn)
            self._nb_key = key
        return self._nb

    def regularization(self, t: float) -> Tensor:
        check_time(t)
        s = self.splats
        reg = self.opacity_weight * torch.sigmoid(s["opacities"].mean())
        if self.smooth_weight > 0 and self.num_gaussians > 1:
            nb = self.neighbours()  # [N, k]
            idx = torch.arange(self.num_gaussians)
            if self.smooth_samples is not None and self.smooth_samples < self.num_gaussians:
                idx = torch.randint(self.num_gaussians, (self.smooth_samples,))  # unbiased estimate of the mean
            nb = nb[idx]  # [M, k]
            z, means = s["embedding"], s["means"].detach()
            z_nb = z.index_select(0, nb.reshape(-1)).view(*nb.shape, z.shape[1])  # [M, k, D_g]
            d2 = (means[idx, None] - means[nb]).square().sum(-1)  # [M, k]
            w = torch.exp(-self.smooth_falloff * d2 / self.scene_radius ** 2)
            diff = (z.index_select(0, idx)[:, None] - z_nb).square().sum(-1)  # [M, k]
            x = diff * w
            dist = torch.where(x > 0, torch.sqrt(torch.where(x > 0, x, torch.ones_like(x))), torch.zeros_like(x))
            reg = reg + self.smooth_weight * dist.mean()  # sqrt with a zero (not NaN) gradient at 0
        return reg

    def step_schedule(self, step: int, total: int) -> None:
        _check_step(step, total)
        c2f_steps = self.c2f_fraction * total
        frac = 1.0 if c2f_steps <= 0 else min(1.0, step / c2f_steps)
        k_c, k_max = self.coarse_embeddings, self.max_embeddings
        self.fine_embeddings = int(round(k_c + (k_max - k_c) * frac))
        anneal_steps = self.anneal_fraction * total
        self.delta_scale = 1.0 if anneal_steps <= 0 else min(1.0, step / anneal_steps)

    def splat_lrs(self) -> Dict[str, float]:
        lrs = super().splat_lrs()
        lrs["embedding"] = self.embedding_lr
        return lrs

    def network_param_groups(self) -> List[dict]:
        nets = list(self.coarse.parameters()) + list(self.fine.parameters())
        return [
            {"params": nets, "lr": self.network_lr * self.scene_radius, "name": "embedding_mlp"},
            {"params": [self.temporal], "lr": self.temporal_lr * self.scene_radius, "name": "temporal_embedding"},
        ]
