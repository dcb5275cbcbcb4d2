"""``moegs.rasterization``: gsplat 1.5.3's ``rasterization()`` signature on the moegs rasterizer."""

import warnings
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from moegs.pipeline import render_pipeline

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")

# Keywords that gsplat releases after 1.5.3 pass to rasterization(). They are
# accepted so that newer callers run, with one warning per keyword and process.
NEWER_GSPLAT_KEYWORDS = frozenset(
    {
        "return_normals",
        "global_z_order",
        "rays",
        "lidar_coeffs",
        "external_distortion_coeffs",
        "ut_params",
        "extra_signals",
        "extra_signals_sh_degree",
        "renderer_config",
    }
)
_warned_keywords = set()


def _warn_newer_keywords(kwargs: Dict) -> None:
    unknown = sorted(set(kwargs) - NEWER_GSPLAT_KEYWORDS)
    if unknown:
        raise TypeError(f"rasterization() got unexpected keyword argument(s): {', '.join(unknown)}")
    for key in sorted(kwargs):
        if key not in _warned_keywords:
            _warned_keywords.add(key)
            warnings.warn(
                f"moegs.rasterization: keyword {key!r} (from a newer gsplat) is not supported and is ignored",
                stacklevel=3,
            )


def _not_supported(what: str) -> NotImplementedError:
    return NotImplementedError(f"moegs.rasterization: {what} is not supported yet")


def rasterization(
    means: Tensor,  # [..., N, 3]
    quats: Tensor,  # [..., N, 4]
    scales: Tensor,  # [..., N, 3]
    opacities: Tensor,  # [..., N]
    colors: Tensor,  # [..., (C,) N, D] or [..., (C,) N, K, 3]
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,
    render_mode: str = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: str = "pinhole",
    segmented: bool = False,
    covars: Optional[Tensor] = None,
    with_ut: bool = False,
    with_eval3d: bool = False,
    radial_coeffs: Optional[Tensor] = None,
    tangential_coeffs: Optional[Tensor] = None,
    thin_prism_coeffs: Optional[Tensor] = None,
    ftheta_coeffs=None,
    rolling_shutter=None,
    viewmats_rs: Optional[Tensor] = None,
    **newer_gsplat_kwargs,
) -> Tuple[Tensor, Tensor, Dict]:
    """Render Gaussians to C images, with gsplat 1.5.3's arguments, outputs and ``meta``.

    Args:
        means: ``[..., N, 3]`` world-space centres. ``...`` are optional scene-batch dims, shared by all inputs.
        quats: ``[..., N, 4]`` rotations (w, x, y, z), need not be normalised.
        scales: ``[..., N, 3]`` standard deviations along the local axes (linear, world units).
        opacities: ``[..., N]`` opacities in [0, 1].
        colors: ``[..., N, D]`` or per camera ``[..., C, N, D]`` features (any D); or, with ``sh_degree``,
            SH coefficients ``[..., (C,) N, K, 3]`` with K ≥ (sh_degree + 1)².
        viewmats: ``[..., C, 4, 4]`` world-to-camera matrices (OpenCV axes: x right, y down, z forward).
        Ks: ``[..., C, 3, 3]`` intrinsics in pixels.
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians with camera z outside [near, far] are culled.
        radius_clip: Gaussians whose pixel radii are both ≤ this are culled.
        eps2d: added to the diagonal of each 2D covariance (pixels²).
        sh_degree: None for plain features, else the SH degree (0–3) to evaluate.
        packed: return meta as flat ``[nnz, ...]`` visible pairs with batch/camera/gaussian ids.
        tile_size: tile side in pixels.
        backgrounds: ``[..., C, D]`` colour composited behind the Gaussians (C + T·bg).
        render_mode: "RGB", "D" (Σ w z), "ED" (Σ w z / α), "RGB+D", "RGB+ED".
        sparse_grad: with ``packed=True``, the gradients of means, quats and scales (or covars) are sparse COO
            tensors (sparse dims ``[..., N]``) holding the rows of the Gaussians visible in any camera, for
            sparse optimisers; opacities and colours keep dense gradients.
        absgrad: also accumulate |∂L/∂means2d| per pixel into ``meta["means2d"].absgrad``.
        rasterize_mode: "classic" or "antialiased" (opacity × √(det Σ / det(Σ + eps2d·I))).
        camera_model: "pinhole", "ortho" or "fisheye" (equidistant, as gsplat's fisheye model).
        covars: ``[..., N, 3, 3]`` (or ``[..., N, 6]`` upper triangle) covariances replacing quats/scales.
        segmented, channel_chunk: accepted for compatibility; they change nothing here (no channel limit).

    Returns:
        ``render_colors [..., C, H, W, X]`` (X = D, 1 or D+1 by render mode), ``render_alphas [..., C, H, W, 1]``
        and ``meta`` with gsplat's keys (``means2d`` keeps its ``.grad`` after ``retain_grad()``).

    Raises:
        NotImplementedError for options not supported yet (distributed, the ftheta camera,
        with_ut, with_eval3d, lens distortion, rolling shutter).
    """
    if newer_gsplat_kwargs:
        _warn_newer_keywords(newer_gsplat_kwargs)
    if distributed:
        raise _not_supported("distributed=True")
    if with_ut or with_eval3d:
        raise _not_supported("with_ut / with_eval3d")
    if any(x is not None for x in (radial_coeffs, tangential_coeffs, thin_prism_coeffs, ftheta_coeffs, viewmats_rs)):
        raise _not_supported("lens distortion / rolling shutter")
    if rolling_shutter is not None and getattr(rolling_shutter, "name", str(rolling_shutter)) != "GLOBAL":
        raise _not_supported(f"rolling_shutter={rolling_shutter}")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")

    want_color = render_mode in ("RGB", "RGB+D", "RGB+ED")
    want_depth = render_mode != "RGB"
    if want_color and colors is None:
        raise ValueError(f"render_mode={render_mode!r} needs colors")
    bg = backgrounds
    if bg is not None and want_color:
        bg = bg[..., None, :]  # [..., C, 1, D]: one expert
    out = render_pipeline(
        means, quats, scales, opacities, colors if want_color else None, viewmats, Ks, width, height,
        num_experts=1, with_depth=want_depth, sh_degree=sh_degree if want_color else None,
        backgrounds=bg if want_color else None, near_plane=near_plane, far_plane=far_plane,
        radius_clip=radius_clip, eps2d=eps2d, packed=packed, tile_size=tile_size,
        rasterize_mode=rasterize_mode, camera_model=camera_model, covars=covars, absgrad=absgrad,
        sparse_grad=sparse_grad,
    )
    render = out.render.squeeze(-4)  # [..., C, H, W, F]
    alphas = out.alphas.squeeze(-4)  # [..., C, H, W, 1]
    if render_mode in ("ED", "RGB+ED"):
        depth = render[..., -1:] / alphas.clamp_min(1e-10)
        render = torch.cat([render[..., :-1], depth], dim=-1)
    meta = out.meta
    meta.pop("n_experts")
    meta.pop("expert_ids")
    return render, alphas, meta
