"""A mixture of deformation experts rendered in one rasterizer pass and blended per pixel by the router.

A camera is anything with ``viewmat [4, 4]``, ``K [3, 3]``, ``width``, ``height`` and ``time`` attributes
(e.g. :class:`moegs.data.cameras.Camera`).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from moegs.multi_expert import rasterize_experts
from moegs.rendering import rasterization
from moegs.router import PixelRouter, router_features


@dataclass
class MixtureRender:
    """One view of the mixture; K experts, H×W pixels.

    Attributes:
        image: ``[H, W, 3]`` blended image Σ_k gate_k · expert_k.
        expert_images: ``[K, H, W, 3]`` each expert's image on its own background.
        alphas: ``[K, H, W]`` each expert's accumulated opacity.
        depths: ``[K, H, W]`` each expert's expected camera-z depth (Σ w z / alpha; 0 where alpha ≈ 0).
        gates: ``[K, H, W]`` router softmax weights (sum to 1 over K).
        logits: ``[K, H, W]`` router logits (before the temperature).
        depth: ``[H, W]`` mixture depth Σ_k gate_k · depth_k.
        meta: rasterizer meta of the concatenated Gaussians plus ``expert_counts`` (Gaussians per expert).
    """

    image: Tensor
    expert_images: Tensor
    alphas: Tensor
    depths: Tensor
    gates: Tensor
    logits: Tensor
    depth: Tensor
    meta: Dict


def _pad_sh(sh: Tensor, n_coeffs: int) -> Tensor:
    """``[N, k, 3]`` → ``[N, n_coeffs, 3]`` with zero higher-order coefficients (same colour)."""
    if sh.shape[1] == n_coeffs:
        return sh
    pad = sh.new_zeros(sh.shape[0], n_coeffs - sh.shape[1], 3)
    return torch.cat([sh, pad], dim=1)


def _camera_tensors(camera, dtype=torch.float32):
    for attr in ("viewmat", "K", "width", "height"):
        if not hasattr(camera, attr):
            raise TypeError(f"camera must have a {attr!r} attribute (got {type(camera).__name__})")
    return camera.viewmat.to(dtype), camera.K.to(dtype), int(camera.width), int(camera.height)


def _camera_time(camera, t: Optional[float]) -> float:
    if t is None:
        t = getattr(camera, "time", None)
    if t is None:
        raise ValueError("no time given: pass t or a camera with a .time attribute")
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"time must be in [0, 1], got {t}")
    return t


def render_expert(expert: nn.Module, camera, t: Optional[float] = None, background: Optional[Tensor] = None):
    """Render one expert alone with :func:`moegs.rasterization` (gsplat-compatible meta, for densification).

    Returns:
        ``(image [H, W, 3], alpha [H, W], meta)``.
    """
    viewmat, K, W, H = _camera_tensors(camera)
    g = expert(_camera_time(camera, t))
    bg = None if background is None else background.reshape(1, 3).to(g.means.dtype)
    colors, alphas, meta = rasterization(
        g.means, g.quats, g.scales, g.opacities, g.sh, viewmat[None], K[None], W, H,
        sh_degree=expert.sh_degree, backgrounds=bg, packed=False,
    )
    return colors[0], alphas[0, ..., 0], meta


class MixtureOfExperts(nn.Module):
    """K deformation experts, one single-pass render, per-pixel softmax blend.

    Args:
        experts: the K experts (:class:`moegs.experts.base.DeformationExpert`); each must hold
            ``splats["router"] [N_k, 3]``.
        router: the :class:`moegs.router.PixelRouter` (its Φ is shared by all experts).
        backgrounds: expert colour backgrounds, ``[3]`` (shared) or ``[K, 3]`` (one per expert), in [0, 1];
            default black.
    """

    def __init__(self, experts: Sequence[nn.Module], router: PixelRouter, backgrounds: Optional[Tensor] = None):
        super().__init__()
        if len(experts) < 1 or len(experts) > 16:
            raise ValueError(f"a mixture needs 1 to 16 experts, got {len(experts)}")
        for e in experts:
            if "router" not in e.splats:
                raise ValueError(f"expert {getattr(e, 'name', e)!r} has no splats['router'] parameters")
        self.experts = nn.ModuleList(experts)
        self.router = router
        bg = torch.zeros(3) if backgrounds is None else torch.as_tensor(backgrounds, dtype=torch.float32)
        if bg.shape == (3,):
            bg = bg.expand(len(experts), 3)
        if bg.shape != (len(experts), 3):
            raise ValueError(f"backgrounds must be [3] or [K={len(experts)}, 3], got {tuple(bg.shape)}")
        if not torch.isfinite(bg).all():
            raise ValueError("backgrounds must be finite")
        self.register_buffer("backgrounds", bg.clone())

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    @property
    def names(self) -> List[str]:
        return [getattr(e, "name", f"expert{i}") for i, e in enumerate(self.experts)]

    def render(self, camera, t: Optional[float] = None) -> MixtureRender:
        """Render the mixture at ``t`` (default ``camera.time``) from ``camera``; see :class:`MixtureRender`."""
        viewmat, K, W, H = _camera_tensors(camera)
        t = _camera_time(camera, t)
        sets = [e(t) for e in self.experts]
        deg = max(int(e.sh_degree) for e in self.experts)
        n_coeffs = (deg + 1) ** 2
        counts = [int(g.means.shape[0]) for g in sets]
        ids = torch.cat([torch.full((n,), k, dtype=torch.int32) for k, n in enumerate(counts)])
        feats = torch.cat([router_features(e.splats["router"], t) for e in self.experts])
        out = rasterize_experts(
            torch.cat([g.means for g in sets]), torch.cat([g.quats for g in sets]),
            torch.cat([g.scales for g in sets]), torch.cat([g.opacities for g in sets]),
            torch.cat([_pad_sh(g.sh, n_coeffs) for g in sets]), viewmat[None], K[None], W, H,
            ids, self.num_experts, router_features=feats, sh_degree=deg,
            backgrounds=self.backgrounds[None], router_background=1.0,
        )
        colors = out.colors[0]  # [K, H, W, 3]
        alphas = out.alphas[0, ..., 0]
        depths = torch.where(alphas > 1e-4, out.depths[0, ..., 0] / alphas.clamp_min(1e-4), torch.zeros_like(alphas))
        gates, logits = self.router(out.router[0], viewmat, K)
        image = (gates[..., None] * colors).sum(0)
        meta = dict(out.meta)
        meta["expert_counts"] = counts
        return MixtureRender(
            image=image, expert_images=colors, alphas=alphas, depths=depths, gates=gates, logits=logits,
            depth=(gates * depths).sum(0), meta=meta,
        )

    def forward(self, camera, t: Optional[float] = None) -> MixtureRender:
        return self.render(camera, t)
