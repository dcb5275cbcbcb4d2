"""The rendering pipeline shared by :func:`moegs.rasterization` and :func:`moegs.rasterize_experts`.

covariance -> projection -> (SH colour) -> tile intersection -> single-pass
multi-expert rasterization. The per-Gaussian channels blended by the
rasterizer are concatenated as ``features = [colour (D) | depth (0/1) | router (R)]``.
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch
from torch import Tensor

from moegs import _validate as V
from moegs.ops.covariance import covar_matrix_to_triu, quat_scale_to_covar
from moegs.ops.isect import isect_offset_encode, isect_tiles
from moegs.ops.projection import project
from moegs.ops.rasterize import rasterize_to_pixels_experts
from moegs.ops.sh import spherical_harmonics
from moegs.sparse_grad import VisibleRows, sparse_rows

CAMERA_MODELS = ("pinhole", "ortho", "fisheye")
RASTERIZE_MODES = ("classic", "antialiased")


@dataclass
class PipelineOutput:
    render: Tensor  # [..., C, K, H, W, F] blended features (colour | depth | router)
    alphas: Tensor  # [..., C, K, H, W, 1]
    n_color: int  # D: colour channels at the front of render
    has_depth: bool  # whether channel D is the accumulated depth
    n_router: int  # R: router channels at the end of render
    meta: Dict


def _normalize_colors(colors: Tensor, sh_degree, nb: int, batch: tuple, C: int, N: int) -> Tensor:
    """Checks colour shapes; returns per-camera colours or SH [..., C, N, D] / [..., C, N, Kc, 3] (broadcast)."""
    if sh_degree is None:
        if colors.dim() == nb + 2 and tuple(colors.shape[:-1]) == (*batch, N):
            return colors[..., None, :, :].expand(*batch, C, N, colors.shape[-1])
        if colors.dim() == nb + 3 and tuple(colors.shape[:-1]) == (*batch, C, N):
            return colors
        raise ValueError(
            f"colors must be [..., N, D] or [..., C, N, D] with ...={batch}, N={N}, C={C}; "
            f"got {tuple(colors.shape)} (pass sh_degree for SH coefficients)"
        )
    if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be None or an int in [0, 3], got {sh_degree!r}")
    if colors.shape[-1] != 3:
        raise ValueError(f"SH coefficients must be [..., N, K, 3], got {tuple(colors.shape)}")
    if colors.shape[-2] < (sh_degree + 1) ** 2:
        raise ValueError(
            f"sh_degree={sh_degree} needs at least {(sh_degree + 1) ** 2} coefficients, colors has "
            f"{colors.shape[-2]}"
        )
    if colors.dim() == nb + 3 and tuple(colors.shape[:-2]) == (*batch, N):
        return colors[..., None, :, :, :].expand(*batch, C, N, *colors.shape[-2:])
    if colors.dim() == nb + 4 and tuple(colors.shape[:-2]) == (*batch, C, N):
        return colors
    raise ValueError(
        f"SH colors must be [..., N, K, 3] or [..., C, N, K, 3] with ...={batch}, N={N}, C={C}; "
        f"got {tuple(colors.shape)}"
    )


def _broadcast_background(name: str, bg: Tensor, batch: tuple, C: int, K: int, D: int, ref: Tensor) -> Tensor:
    V.check_float(name, bg, ref.dtype, ref.device)
    V.check_finite(name, bg)
    try:
        return torch.broadcast_to(bg, (*batch, C, K, D))
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(bg.shape)} does not broadcast to [..., C, K, D] = {(*batch, C, K, D)}"
        ) from None


def render_pipeline(
    means: Tensor,  # [..., N, 3]
    quats: Optional[Tensor],  # [..., N, 4]
    scales: Optional[Tensor],  # [..., N, 3]
    opacities: Tensor,  # [..., N]
    colors: Optional[Tensor],  # [..., (C,) N, D] or SH [..., (C,) N, Kc, 3]; None: no colour channels
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    *,
    expert_ids: Optional[Tensor] = None,  # [..., N] ints in [0, K); None: all expert 0
    num_experts: int = 1,
    router_features: Optional[Tensor] = None,  # [..., N, R]
    with_depth: bool = True,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # broadcastable to [..., C, K, D]
    router_background: Union[float, Tensor] = 1.0,  # broadcastable to [..., C, K, R]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    packed: bool = False,
    tile_size: int = 16,
    rasterize_mode: str = "classic",
    camera_model: str = "pinhole",
    covars: Optional[Tensor] = None,  # [..., N, 3, 3] or [..., N, 6]; replaces quats/scales
    absgrad: bool = False,
    sparse_grad: bool = False,  # with packed: COO gradients for means, quats, scales / covars
) -> PipelineOutput:
    # ------------------------------------------------------------------ checks
    V.check_tensor("means", means, dims=2, last=(3,))
    visible_rows = None
    if sparse_grad:
        if not packed:
            raise ValueError("sparse_grad=True needs packed=True (gradients are sparse over the visible Gaussians)")
        visible_rows = VisibleRows()  # filled in after projection
        means, quats, scales, covars = (sparse_rows(t, visible_rows) for t in (means, quats, scales, covars))
    batch, N = tuple(means.shape[:-2]), means.shape[-2]
    nb = len(batch)
    dtype, device = means.dtype, means.device
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"means must be float32 or float64, got {dtype}")
    V.check_device_supported(device)
    V.check_tensor("viewmats", viewmats, dims=nb + 3, last=(4, 4))
    V.check_tensor("Ks", Ks, dims=nb + 3, last=(3, 3))
    C = viewmats.shape[-3]
    if tuple(viewmats.shape[:-3]) != batch or tuple(Ks.shape[:-2]) != (*batch, C):
        raise ValueError(
            f"viewmats [..., C, 4, 4] and Ks [..., C, 3, 3] must share the batch dims of means {batch}; got "
            f"{tuple(viewmats.shape)} and {tuple(Ks.shape)}"
        )
    V.check_tensor("opacities", opacities)
    if tuple(opacities.shape) != (*batch, N):
        raise ValueError(f"opacities must have shape {(*batch, N)}, got {tuple(opacities.shape)}")
    for name, t in (("means", means), ("opacities", opacities), ("viewmats", viewmats), ("Ks", Ks)):
        V.check_float(name, t, dtype, device)
        V.check_finite(name, t)
    if covars is None:
        if quats is None or scales is None:
            raise ValueError("pass quats and scales, or covars")
        V.check_tensor("quats", quats, last=(4,))
        V.check_tensor("scales", scales, last=(3,))
        for name, t in (("quats", quats), ("scales", scales)):
            if tuple(t.shape[:-1]) != (*batch, N):
                raise ValueError(f"{name} must have shape {(*batch, N, t.shape[-1])}, got {tuple(t.shape)}")
            V.check_float(name, t, dtype, device)
            V.check_finite(name, t)
        if N and V.checking_values() and not bool((quats.detach().norm(dim=-1) > 0).all()):
            raise ValueError("quats contains a zero quaternion, which has no rotation")
    else:
        V.check_tensor("covars", covars)
        V.check_float("covars", covars, dtype, device)
        V.check_finite("covars", covars)
        if tuple(covars.shape) == (*batch, N, 3, 3):
            covars = covar_matrix_to_triu(covars)
        elif tuple(covars.shape) != (*batch, N, 6):
            raise ValueError(f"covars must be [..., N, 3, 3] or [..., N, 6], got {tuple(covars.shape)}")
    if camera_model not in CAMERA_MODELS:
        if camera_model == "ftheta":
            raise NotImplementedError("camera_model='ftheta' is not supported (pinhole, ortho, fisheye)")
        raise ValueError(f"camera_model must be one of {CAMERA_MODELS}, got {camera_model!r}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode must be one of {RASTERIZE_MODES}, got {rasterize_mode!r}")
    K = num_experts
    if expert_ids is None:
        V.check_expert_ids(torch.zeros(1, dtype=torch.int32), K, (), 1, torch.device("cpu"))
        ids = torch.zeros((*batch, N), dtype=torch.int32, device=device)
    else:
        ids = V.check_expert_ids(expert_ids, K, batch, N, device)

    if colors is not None:
        V.check_tensor("colors", colors)
        V.check_float("colors", colors, dtype, device)
        V.check_finite("colors", colors)
        colors_pc = _normalize_colors(colors, sh_degree, nb, batch, C, N)
    D = 0 if colors is None else (3 if sh_degree is not None else colors.shape[-1])
    R = 0
    if router_features is not None:
        V.check_tensor("router_features", router_features, dims=nb + 2)
        if tuple(router_features.shape[:-1]) != (*batch, N):
            raise ValueError(
                f"router_features must be [..., N, R] = {(*batch, N, '*')}, got {tuple(router_features.shape)}"
            )
        V.check_float("router_features", router_features, dtype, device)
        V.check_finite("router_features", router_features)
        R = router_features.shape[-1]
    F = D + int(with_depth) + R
    if F == 0:
        raise ValueError("nothing to render: no colours, depth or router features requested")
    I = math.prod(batch) * C
    V.check_image_size(width, height, I, K, F, tile_size)

    # -------------------------------------------------------------- projection
    if covars is None:
        covars = quat_scale_to_covar(quats, scales)  # [..., N, 6]
    radii, means2d, depths, conics, compensations = project(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane,
        far_plane=far_plane, radius_clip=radius_clip,
        calc_compensations=(rasterize_mode == "antialiased"), camera_model=camera_model,
        opacities=opacities,
    )  # radii [..., C, N, 2], means2d [..., C, N, 2], depths [..., C, N], conics [..., C, N, 3]
    opacities_pc = opacities[..., None, :].expand(*batch, C, N)
    if compensations is not None:
        opacities_pc = opacities_pc * compensations

    # ---------------------------------------------------------- per-pair channels
    parts = []
    if colors is not None:
        if sh_degree is not None:
            campos = torch.inverse(viewmats)[..., :3, 3]  # [..., C, 3]
            dirs = means[..., None, :, :] - campos[..., :, None, :]  # [..., C, N, 3]
            colors_pc = spherical_harmonics(sh_degree, dirs, colors_pc)  # [..., C, N, 3], max(SH + 0.5, 0)
        parts.append(colors_pc)
    if with_depth:
        parts.append(depths[..., None])
    if R:
        parts.append(router_features[..., None, :, :].expand(*batch, C, N, R))
    features = torch.cat([p.expand(*batch, C, N, p.shape[-1]) for p in parts], dim=-1)  # [..., C, N, F]
    ids_pc = ids[..., None, :].expand(*batch, C, N)

    # backgrounds [I, K, F]: colour | depth 0 | router
    ref = means
    bg_parts = []
    if D:
        bg_parts.append(
            torch.zeros((*batch, C, K, D), dtype=dtype, device=device) if backgrounds is None
            else _broadcast_background("backgrounds", backgrounds, batch, C, K, D, ref)
        )
    elif backgrounds is not None:
        raise ValueError("backgrounds were given but no colour channels are rendered")
    if with_depth:
        bg_parts.append(torch.zeros((*batch, C, K, 1), dtype=dtype, device=device))
    if R:
        rb = router_background
        if not isinstance(rb, Tensor):
            rb = torch.tensor(float(rb), dtype=dtype, device=device)
        bg_parts.append(_broadcast_background("router_background", rb, batch, C, K, R, ref))
    bg_full = torch.cat(bg_parts, dim=-1).reshape(I, K, F)

    # ------------------------------------------------------------ packing
    B = math.prod(batch)
    if packed:
        sel = (radii > 0).all(dim=-1).reshape(B, C, N)
        if visible_rows is not None:
            visible_rows.set_from_mask(sel.any(dim=1).reshape(*batch, N))
        batch_ids, camera_ids, gaussian_ids = sel.nonzero(as_tuple=True)
        if not torch.compiler.is_compiling() and gaussian_ids.numel() == B * C * N:
            # Every Gaussian is visible in every image: the ids run in row-major order over [B, C, N], so
            # the packed rows are the dense rows and a reshape replaces the gathers (and their backward).
            # Under torch.compile the count is data-dependent, so the gathers stay.
            radii_r = radii.reshape(B * C * N, 2)
            means2d_r = means2d.reshape(B * C * N, 2)
            depths_r = depths.reshape(B * C * N)
            conics_r = conics.reshape(B * C * N, 3)
            opac_r = opacities_pc.reshape(B * C * N).contiguous()
            feat_r = features.reshape(B * C * N, F)
            ids_r = ids_pc.reshape(B * C * N).contiguous()
        else:
            radii_r = radii.reshape(B, C, N, 2)[batch_ids, camera_ids, gaussian_ids]
            means2d_r = means2d.reshape(B, C, N, 2)[batch_ids, camera_ids, gaussian_ids]
            depths_r = depths.reshape(B, C, N)[batch_ids, camera_ids, gaussian_ids]
            conics_r = conics.reshape(B, C, N, 3)[batch_ids, camera_ids, gaussian_ids]
            opac_r = opacities_pc.reshape(B, C, N)[batch_ids, camera_ids, gaussian_ids]
            feat_r = features.reshape(B, C, N, F)[batch_ids, camera_ids, gaussian_ids]
            ids_r = ids_pc.reshape(B, C, N)[batch_ids, camera_ids, gaussian_ids].contiguous()
        image_ids = (batch_ids * C + camera_ids).to(torch.int32)
        batch_ids, camera_ids, gaussian_ids = (t.to(torch.int64) for t in (batch_ids, camera_ids, gaussian_ids))
        n_images_arg = I
    else:
        batch_ids = camera_ids = gaussian_ids = None
        radii_r, means2d_r, depths_r, conics_r = radii, means2d, depths, conics
        opac_r, feat_r, ids_r = opacities_pc, features, ids_pc.contiguous()
        image_ids, n_images_arg = None, None

    # ------------------------------------------------------- tile intersection
    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    with torch.no_grad():
        if packed:
            tiles_per_gauss, isect_ids, flatten_ids = isect_tiles(
                means2d_r, radii_r, depths_r, tile_size, tile_width, tile_height,
                image_ids=image_ids, n_images=n_images_arg,
            )
        else:
            tiles_per_gauss, isect_ids, flatten_ids = isect_tiles(
                means2d_r.reshape(I, N, 2), radii_r.reshape(I, N, 2), depths_r.reshape(I, N),
                tile_size, tile_width, tile_height,
            )
            tiles_per_gauss = tiles_per_gauss.reshape(*batch, C, N)
        isect_offsets = isect_offset_encode(isect_ids, I, tile_width, tile_height)  # [I, th, tw]

    # ---------------------------------------------------------- rasterization
    render, alphas = rasterize_to_pixels_experts(
        means2d_r, conics_r, opac_r, feat_r, ids_r, bg_full, isect_offsets, flatten_ids,
        width, height, tile_size, K, absgrad=absgrad,
    )  # [I, K, H, W, F], [I, K, H, W, 1]
    render = render.reshape(*batch, C, K, height, width, F)
    alphas = alphas.reshape(*batch, C, K, height, width, 1)

    meta = {
        "batch_ids": batch_ids,
        "camera_ids": camera_ids,
        "gaussian_ids": gaussian_ids,
        "radii": radii_r,
        "means2d": means2d_r,
        "depths": depths_r,
        "conics": conics_r,
        "opacities": opac_r,
        "expert_ids": ids_r,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "isect_ids": isect_ids,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets.reshape(*batch, C, tile_height, tile_width),
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": B,
        "n_cameras": C,
        "n_experts": K,
    }
    return PipelineOutput(render, alphas, D, with_depth, R, meta)
