"""The ``diff_gaussian_rasterization`` interface of the original 3DGS code, on moegs's ops.

Replace ``from diff_gaussian_rasterization import GaussianRasterizationSettings,
GaussianRasterizer`` with ``from moegs.compat.inria import ...`` (or import from
``moegs.compat.diff_gaussian_rasterization``); nothing else changes.

Interface variant (which outputs come back):
    The 12-field settings (no ``antialiasing``) give ``(color, radii)`` like the 2023
    release; the 13-field settings (``antialiasing=True`` or ``False``) give
    ``(color, radii, invdepth)`` like the 2024 release. ``GaussianRasterizer(...,
    return_invdepth=True/False)`` overrides this.

Numerical rules (``GaussianRasterizer(..., numerics=...)``):
    ``"inria"`` (default) reproduces diff-gaussian-rasterization: alpha clamp 0.99,
    stop once the transmittance would drop below 1e-4, near cull at z = 0.2, a
    3-sigma square footprint from the largest eigenvalue on 16-pixel tiles, pixel
    centres at integer coordinates of ``ndc2pix``.
    ``"gsplat"`` uses moegs's native rules (those of :func:`moegs.rasterization`:
    alpha clamp 0.999, per-axis 3.33-sigma footprint shrunk by opacity, pixel centres
    at +0.5), with intrinsics read from ``tanfovx``/``tanfovy`` and the principal point
    from ``projmatrix``; near cull stays at z = 0.2.

Units of ``means2D.grad``: ``[N, 3]``, the first two columns hold dL/d(NDC centre),
i.e. the pixel-space gradient times ``W / 2`` and ``H / 2``; the third is zero.
Camera matrices get no gradient.
"""

import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from moegs import _validate as V
from moegs.compat._inria_projection import TILE, project_inria, view_points
from moegs.ops.covariance import covar_matrix_to_triu, quat_scale_to_covar
from moegs.ops.isect import isect_offset_encode, isect_tiles
from moegs.ops.projection import project
from moegs.ops.rasterize import rasterize_to_pixels_experts
from moegs.ops.sh import spherical_harmonics

NUMERICS = ("inria", "gsplat")
INRIA_ALPHA_MAX = 0.99
# The kernel stops when the next transmittance is <= its threshold; the 3DGS rule is
# "< 1e-4". The largest float32 below 1e-4 turns one into the other in float32.
INRIA_MIN_TRANSMITTANCE = float(torch.nextafter(torch.tensor(1e-4, dtype=torch.float32),
                                                torch.tensor(0.0, dtype=torch.float32)))


class GaussianRasterizationSettings(NamedTuple):
    """One camera and the render options, field for field as in diff-gaussian-rasterization.

    ``viewmatrix`` ``[4, 4]`` is the world-to-camera transform transposed (row vectors,
    OpenCV axes: x right, y down, z forward); ``projmatrix`` ``[4, 4]`` is
    ``viewmatrix @ projection^T`` (world to clip, row vectors). ``tanfovx``/``tanfovy``
    are tangents of the half fields of view, ``bg`` the ``[3]`` background colour (``[D]``
    with D-channel ``colors_precomp``), ``campos`` ``[3]`` the camera centre used for SH
    view directions, ``scale_modifier`` multiplies ``scales``. ``prefiltered`` and ``debug``
    are accepted and have no effect. ``antialiasing`` is None for the 12-field form.
    """

    image_height: int
    image_width: int
    tanfovx: float
    tanfovy: float
    bg: Tensor
    scale_modifier: float
    viewmatrix: Tensor
    projmatrix: Tensor
    sh_degree: int
    campos: Tensor
    prefiltered: bool
    debug: bool
    antialiasing: Optional[bool] = None


def _is_given(x) -> bool:
    # diff-gaussian-rasterization callers pass ``torch.Tensor([])`` for an absent input.
    return x is not None and not (isinstance(x, Tensor) and x.dim() == 1 and x.numel() == 0)


def _check_settings(s: GaussianRasterizationSettings, dtype, device) -> Tuple[int, int]:
    H, W = s.image_height, s.image_width
    for name, v in (("image_height", H), ("image_width", W)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"raster_settings.{name} must be a positive int, got {v!r}")
    for name in ("tanfovx", "tanfovy"):
        v = float(getattr(s, name))
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"raster_settings.{name} must be a positive finite number, got {v!r}")
    sm = float(s.scale_modifier)
    if not (math.isfinite(sm) and sm > 0):
        raise ValueError(f"raster_settings.scale_modifier must be positive and finite, got {sm!r}")
    for name, shape in (("viewmatrix", (4, 4)), ("projmatrix", (4, 4)), ("campos", (3,))):
        t = getattr(s, name)
        V.check_tensor(f"raster_settings.{name}", t)
        if tuple(t.shape) != shape:
            raise ValueError(f"raster_settings.{name} must have shape {list(shape)}, got {tuple(t.shape)}")
        V.check_finite(f"raster_settings.{name}", t)
        if t.device != device:
            raise ValueError(f"raster_settings.{name} is on {t.device}, expected {device} (like means3D)")
    V.check_tensor("raster_settings.bg", s.bg)
    if s.bg.dim() != 1:
        raise ValueError(f"raster_settings.bg must be [D], got {tuple(s.bg.shape)}")
    V.check_finite("raster_settings.bg", s.bg)
    deg = s.sh_degree
    if isinstance(deg, bool) or not isinstance(deg, int) or not 0 <= deg <= 3:
        raise ValueError(f"raster_settings.sh_degree must be an int in [0, 3], got {deg!r}")
    return H, W


def _check_point(name: str, t: Tensor, shape: tuple, dtype, device) -> None:
    V.check_tensor(name, t)
    if tuple(t.shape) != shape:
        want = ", ".join(str(x) for x in shape)
        raise ValueError(f"{name} must have shape [{want}], got {tuple(t.shape)}")
    V.check_float(name, t, dtype, device)
    V.check_finite(name, t)


def _intrinsics(s: GaussianRasterizationSettings, W: int, H: int, dtype, device) -> Tensor:
    """``[3, 3]`` pinhole K (pixel centres at +0.5) of the settings' camera."""
    view = s.viewmatrix.to(dtype)
    proj = torch.linalg.solve(view, s.projmatrix.to(dtype))  # projection^T, [4, 4]
    K = torch.zeros(3, 3, dtype=dtype, device=device)
    K[0, 0] = W / (2.0 * float(s.tanfovx))
    K[1, 1] = H / (2.0 * float(s.tanfovy))
    K[0, 2] = 0.5 * W * (1.0 + proj[2, 0])
    K[1, 2] = 0.5 * H * (1.0 + proj[2, 1])
    K[2, 2] = 1.0
    return K


def rasterize_gaussians(
    means3D: Tensor,
    means2D: Tensor,
    opacities: Tensor,
    raster_settings: GaussianRasterizationSettings,
    shs: Optional[Tensor] = None,
    colors_precomp: Optional[Tensor] = None,
    scales: Optional[Tensor] = None,
    rotations: Optional[Tensor] = None,
    cov3D_precomp: Optional[Tensor] = None,
    numerics: str = "inria",
    return_invdepth: Optional[bool] = None,
):
    """Renders one camera; see :class:`GaussianRasterizer` for the arguments and outputs."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
    s = raster_settings
    if not isinstance(s, GaussianRasterizationSettings):
        raise TypeError(f"raster_settings must be a GaussianRasterizationSettings, got {type(s).__name__}")
    V.check_tensor("means3D", means3D, dims=2, last=(3,))
    if means3D.dim() != 2:
        raise ValueError(f"means3D must be [N, 3], got {tuple(means3D.shape)}")
    N = means3D.shape[0]
    dtype, device = means3D.dtype, means3D.device
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"means3D must be float32 or float64, got {dtype}")
    V.check_device_supported(device)
    V.check_finite("means3D", means3D)
    H, W = _check_settings(s, dtype, device)
    _check_point("means2D", means2D, (N, 3), dtype, device)
    V.check_tensor("opacities", opacities)
    if tuple(opacities.shape) not in ((N, 1), (N,)):
        raise ValueError(f"opacities must have shape [{N}, 1], got {tuple(opacities.shape)}")
    V.check_float("opacities", opacities, dtype, device)
    V.check_finite("opacities", opacities)

    if _is_given(shs) == _is_given(colors_precomp):
        raise ValueError("pass exactly one of shs or colors_precomp")
    has_rs = _is_given(scales) or _is_given(rotations)
    if has_rs == _is_given(cov3D_precomp) or (has_rs and not (_is_given(scales) and _is_given(rotations))):
        raise ValueError("pass either scales and rotations, or cov3D_precomp (exactly one of the two)")
    if return_invdepth is None:
        return_invdepth = s.antialiasing is not None
    antialiasing = bool(s.antialiasing)

    # ------------------------------------------------------------ 3D covariance
    if has_rs:
        _check_point("scales", scales, (N, 3), dtype, device)
        _check_point("rotations", rotations, (N, 4), dtype, device)
        if N and not bool((rotations.detach().norm(dim=-1) > 0).all()):
            raise ValueError("rotations contains a zero quaternion")
        cov3d = quat_scale_to_covar(rotations, scales * float(s.scale_modifier))  # [N, 6]
    else:
        V.check_tensor("cov3D_precomp", cov3D_precomp)
        if tuple(cov3D_precomp.shape) == (N, 3, 3):
            cov3D_precomp = covar_matrix_to_triu(cov3D_precomp)
        _check_point("cov3D_precomp", cov3D_precomp, (N, 6), dtype, device)
        cov3d = cov3D_precomp

    # ------------------------------------------------------------------ colours
    if _is_given(shs):
        V.check_tensor("shs", shs)
        if shs.dim() != 3 or shs.shape[0] != N or shs.shape[2] != 3:
            raise ValueError(f"shs must be [N, M, 3] with N={N}, got {tuple(shs.shape)}")
        if shs.shape[1] < (s.sh_degree + 1) ** 2:
            raise ValueError(
                f"sh_degree={s.sh_degree} needs at least {(s.sh_degree + 1) ** 2} SH coefficients, "
                f"shs has {shs.shape[1]}"
            )
        V.check_float("shs", shs, dtype, device)
        V.check_finite("shs", shs)
        dirs = means3D - s.campos.to(dtype)[None, :]
        colors = spherical_harmonics(s.sh_degree, dirs, shs)  # [N, 3], max(SH + 0.5, 0)
    else:
        V.check_tensor("colors_precomp", colors_precomp)
        if colors_precomp.dim() != 2 or colors_precomp.shape[0] != N:
            raise ValueError(f"colors_precomp must be [N, D] with N={N}, got {tuple(colors_precomp.shape)}")
        V.check_float("colors_precomp", colors_precomp, dtype, device)
        V.check_finite("colors_precomp", colors_precomp)
        colors = colors_precomp
    D = colors.shape[-1]
    if s.bg.shape[0] != D:
        raise ValueError(f"raster_settings.bg must have {D} entries (one per colour channel), got {s.bg.shape[0]}")
    V.check_image_size(W, H, 1, 1, D + 1, TILE)

    # --------------------------------------------------------------- projection
    ndc_scale = torch.tensor([0.5 * W, 0.5 * H], dtype=dtype, device=device)
    # Same value as the pixel centre; the gradient reaching means2D is dL/dpixel * (W/2, H/2).
    ndc_handle = (means2D[:, :2] - means2D[:, :2].detach()) * ndc_scale
    opac = opacities.reshape(N)
    if numerics == "inria":
        pr = project_inria(means3D, cov3d, s.viewmatrix.to(dtype), s.projmatrix.to(dtype),
                           float(s.tanfovx), float(s.tanfovy), W, H, antialiasing)
        means2d, depths, conics = pr.means2d + ndc_handle, pr.depths, pr.conics
        opac = opac * pr.opacity_scale
        radii = pr.radii
        # isect_tiles covers [floor((m - r) / 16), ceil((m + r) / 16)); this centre and
        # radius make that range exactly the 3DGS tile rectangle.
        isect_means = ((pr.tile_min + pr.tile_max) * (TILE // 2)).to(dtype)
        isect_radii = ((pr.tile_max - pr.tile_min) * (TILE // 2)).to(torch.int32)
        alpha_max, min_t, pixel_offset = INRIA_ALPHA_MAX, INRIA_MIN_TRANSMITTANCE, 0.0
    else:
        viewmat = s.viewmatrix.to(dtype).transpose(0, 1)[None, None]  # [1, 1, 4, 4] world-to-camera
        K = _intrinsics(s, W, H, dtype, device)[None, None]
        r2, m2, d2, c2, comp = project(
            means3D[None], cov3d[None], viewmat, K, W, H, eps2d=0.3, near_plane=0.2,
            calc_compensations=antialiasing, opacities=opac[None],
        )
        means2d, depths, conics = m2[0, 0] + ndc_handle, d2[0, 0], c2[0, 0]
        if comp is not None:
            opac = opac * comp[0, 0]
        radii = r2[0, 0].max(dim=-1).values
        isect_means, isect_radii = m2[0, 0].detach(), r2[0, 0]
        alpha_max, min_t, pixel_offset = 0.999, 1e-4, 0.5

    # ------------------------------------------------------------ rasterization
    features = colors
    bg = s.bg.to(dtype)
    if return_invdepth:
        inv = torch.where(radii > 0, 1.0 / torch.where(radii > 0, depths, torch.ones_like(depths)),
                          torch.zeros_like(depths))
        features = torch.cat([colors, inv[:, None]], -1)
        bg = torch.cat([bg, bg.new_zeros(1)])
    tw, th = math.ceil(W / TILE), math.ceil(H / TILE)
    _, isect_ids, flatten_ids = isect_tiles(
        isect_means[None].contiguous(), isect_radii[None].contiguous(), depths.detach()[None], TILE, tw, th,
    )
    offsets = isect_offset_encode(isect_ids, 1, tw, th)
    render, _ = rasterize_to_pixels_experts(
        means2d[None], conics[None], opac[None], features[None],
        torch.zeros(1, N, dtype=torch.int32, device=device), bg.reshape(1, 1, -1), offsets, flatten_ids,
        W, H, TILE, 1, alpha_max=alpha_max, min_transmittance=min_t, pixel_offset=pixel_offset,
    )  # [1, 1, H, W, F]
    image = render[0, 0].permute(2, 0, 1)  # [F, H, W]
    color = image[:D]
    if return_invdepth:
        return color, radii, image[D:]
    return color, radii


class GaussianRasterizer(torch.nn.Module):
    """Renders Gaussians into the camera of ``raster_settings`` (a drop-in for diff-gaussian-rasterization).

    Args:
        raster_settings: :class:`GaussianRasterizationSettings`.
        numerics: ``"inria"`` (default, the 3DGS rules) or ``"gsplat"`` (moegs's native rules).
        return_invdepth: None follows the settings variant (12 fields: no, 13 fields: yes).
    """

    def __init__(self, raster_settings: GaussianRasterizationSettings, numerics: str = "inria",
                 return_invdepth: Optional[bool] = None):
        super().__init__()
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
        self.raster_settings = raster_settings
        self.numerics = numerics
        self.return_invdepth = return_invdepth

    @torch.no_grad()
    def markVisible(self, positions: Tensor) -> Tensor:
        """``[N]`` bool: which ``[N, 3]`` world positions lie in front of the near plane (view z > 0.2)."""
        V.check_tensor("positions", positions, dims=2, last=(3,))
        if positions.dim() != 2:
            raise ValueError(f"positions must be [N, 3], got {tuple(positions.shape)}")
        view = self.raster_settings.viewmatrix.to(positions.dtype)
        return view_points(positions, view)[:, 2] > 0.2

    def forward(
        self,
        means3D: Tensor,
        means2D: Tensor,
        opacities: Tensor,
        shs: Optional[Tensor] = None,
        colors_precomp: Optional[Tensor] = None,
        scales: Optional[Tensor] = None,
        rotations: Optional[Tensor] = None,
        cov3D_precomp: Optional[Tensor] = None,
        dc: Optional[Tensor] = None,
    ):
        """Renders the Gaussians.

        Args:
            means3D: ``[N, 3]`` world positions.
            means2D: ``[N, 3]`` screen-space handle (usually zeros with ``requires_grad``); its
                gradient's first two columns are dL/d(NDC centre), see the module docstring.
            opacities: ``[N, 1]`` in [0, 1] (after the sigmoid).
            shs: ``[N, M, 3]`` SH coefficients, M >= (sh_degree + 1)^2; or
            colors_precomp: ``[N, D]`` colours (``bg`` then has D entries).
            scales: ``[N, 3]`` standard deviations (after the exp), world units, with
            rotations: ``[N, 4]`` quaternions (w, x, y, z), normalised inside; or
            cov3D_precomp: ``[N, 6]`` upper triangle (xx, xy, xz, yy, yz, zz) of the world covariances.
            dc: optional ``[N, 1, 3]`` degree-0 coefficients, prepended to ``shs`` (split form).

        Returns:
            ``color`` ``[D, H, W]`` and ``radii`` int32 ``[N]`` (pixels, 0 = not rendered), plus
            ``invdepth`` ``[1, H, W]`` (sum of alpha-blended 1/z, background 0) in the 13-field variant.
        """
        if _is_given(dc):
            if not _is_given(shs):
                raise ValueError("dc was given without shs")
            shs = torch.cat([dc, shs], dim=1)
        return rasterize_gaussians(
            means3D, means2D, opacities, self.raster_settings, shs=shs, colors_precomp=colors_precomp,
            scales=scales, rotations=rotations, cov3D_precomp=cov3D_precomp, numerics=self.numerics,
            return_invdepth=self.return_invdepth,
        )


__all__ = ["GaussianRasterizationSettings", "GaussianRasterizer", "rasterize_gaussians", "NUMERICS"]
