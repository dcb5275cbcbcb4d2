"""``moegs.rasterize_experts``: K experts rendered in one pass, each with its own transmittance."""

from dataclasses import dataclass
from typing import Dict, Optional, Union

from torch import Tensor

from moegs.pipeline import render_pipeline


@dataclass
class ExpertRender:
    """Per-expert renders; ``...`` are the scene-batch dims, C cameras, K experts.

    Attributes:
        colors: ``[..., C, K, H, W, D]`` each expert's composited colour (+ its background).
        alphas: ``[..., C, K, H, W, 1]`` each expert's accumulated opacity 1 − T_k.
        depths: ``[..., C, K, H, W, 1]`` each expert's Σ w z (camera z, not divided by alpha).
        router: ``[..., C, K, H, W, R]`` splatted router features (+ router_background·T_k), or None.
        meta: projection / intersection intermediates (gsplat's keys plus ``expert_ids`` and ``n_experts``).
    """

    colors: Tensor
    alphas: Tensor
    depths: Tensor
    router: Optional[Tensor]
    meta: Dict


def rasterize_experts(
    means: Tensor,  # [..., N, 3]
    quats: Tensor,  # [..., N, 4]
    scales: Tensor,  # [..., N, 3]
    opacities: Tensor,  # [..., N]
    colors: Tensor,  # [..., (C,) N, D] or SH [..., (C,) N, Kc, 3]
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    expert_ids: Tensor,  # [..., N] int, in [0, num_experts)
    num_experts: int,
    router_features: Optional[Tensor] = None,  # [..., N, R]
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # broadcastable to [..., C, K, D]
    router_background: Union[float, Tensor] = 1.0,  # broadcastable to [..., C, K, R]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    packed: bool = False,
    rasterize_mode: str = "classic",
    camera_model: str = "pinhole",
    covars: Optional[Tensor] = None,
    absgrad: bool = False,
    sparse_grad: bool = False,
) -> ExpertRender:
    """Render every expert's Gaussians in a single traversal, one transmittance per expert.

    Each Gaussian carries an expert id; it composites only into its own expert's colour, alpha, depth and
    router buffers. A pixel's walk through its depth-sorted list stops early only once every expert's
    transmittance is saturated, so expert k's output equals rendering its Gaussians alone.

    Args:
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, near_plane, far_plane,
            eps2d, radius_clip, tile_size, packed, rasterize_mode, camera_model, covars, absgrad, sparse_grad:
            as :func:`moegs.rasterization`.
        expert_ids: ``[..., N]`` integer expert of each Gaussian.
        num_experts: K, 1 ≤ K ≤ 16.
        router_features: ``[..., N, R]`` per-Gaussian gate features, alpha-blended like colour.
        backgrounds: per-expert colour backgrounds, broadcastable to ``[..., C, K, D]`` (default 0).
        router_background: value composited behind the router features (default 1.0), float or tensor
            broadcastable to ``[..., C, K, R]``.

    Returns:
        :class:`ExpertRender` with colors ``[..., C, K, H, W, D]``, alphas and depths ``[..., C, K, H, W, 1]``,
        router ``[..., C, K, H, W, R]`` (None without router_features) and meta.
    """
    out = render_pipeline(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        expert_ids=expert_ids, num_experts=num_experts, router_features=router_features, with_depth=True,
        sh_degree=sh_degree, backgrounds=backgrounds, router_background=router_background,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d, packed=packed,
        tile_size=tile_size, rasterize_mode=rasterize_mode, camera_model=camera_model, covars=covars,
        absgrad=absgrad, sparse_grad=sparse_grad,
    )
    D, R = out.n_color, out.n_router
    render = out.render
    return ExpertRender(
        colors=render[..., :D],
        alphas=out.alphas,
        depths=render[..., D : D + 1],
        router=render[..., D + 1 :] if router_features is not None else None,
        meta=out.meta,
    )
