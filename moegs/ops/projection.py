"""EWA projection of 3D Gaussians into cameras (ops ``moegs::project_fwd`` / ``project_bwd``)."""

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from moegs import _extension  # noqa: F401  (registers torch.ops.moegs)
from moegs.ops.covariance import covar_matrix_to_triu

_ops = torch.ops.moegs

# Values of the ops' camera_model argument (CameraModel in moegs/projection.h).
CAMERA_MODELS = {"pinhole": 0, "ortho": 1, "fisheye": 2}


@torch.library.register_fake("moegs::project_fwd")
def _project_fwd_fake(
    means, covars, viewmats, Ks, opacities, width, height, eps2d, near_plane, far_plane,
    radius_clip, calc_compensations, camera_model,
):
    B, N = means.shape[0], means.shape[1]
    C = viewmats.shape[1]
    radii = means.new_empty(B, C, N, 2, dtype=torch.int32)
    comps = means.new_empty(B, C, N) if calc_compensations else means.new_empty(0)
    return radii, means.new_empty(B, C, N, 2), means.new_empty(B, C, N), means.new_empty(B, C, N, 3), comps


@torch.library.register_fake("moegs::project_bwd")
def _project_bwd_fake(
    means, covars, viewmats, Ks, width, height, eps2d, camera_model, radii, conics, compensations,
    v_means2d, v_depths, v_conics, v_compensations, viewmats_requires_grad,
):
    v_viewmats = torch.empty_like(viewmats) if viewmats_requires_grad else means.new_empty(0)
    return torch.empty_like(means), torch.empty_like(covars), v_viewmats


def _project_setup_context(ctx, inputs, output):
    means, covars, viewmats, Ks, _opac, width, height, eps2d, _near, _far, _clip, calc_comp, model = inputs
    radii, _means2d, _depths, conics, compensations = output
    ctx.save_for_backward(means, covars, viewmats, Ks, radii, conics, compensations)
    ctx.width, ctx.height, ctx.eps2d, ctx.camera_model = width, height, eps2d, model
    ctx.calc_compensations = calc_comp


def _project_backward(ctx, v_radii, v_means2d, v_depths, v_conics, v_compensations):
    means, covars, viewmats, Ks, radii, conics, compensations = ctx.saved_tensors
    B, N, C = means.shape[0], means.shape[1], viewmats.shape[1]

    def cotangent(v, *shape):
        return means.new_zeros(shape) if v is None else v.contiguous()

    if not ctx.calc_compensations or v_compensations is None:
        compensations, v_compensations = None, None
    v_means, v_covars, v_viewmats = _ops.project_bwd(
        means, covars, viewmats, Ks, ctx.width, ctx.height, ctx.eps2d, ctx.camera_model,
        radii, conics, compensations,
        cotangent(v_means2d, B, C, N, 2), cotangent(v_depths, B, C, N),
        cotangent(v_conics, B, C, N, 3),
        None if v_compensations is None else v_compensations.contiguous(),
        ctx.needs_input_grad[2],
    )
    return (
        v_means if ctx.needs_input_grad[0] else None,
        v_covars if ctx.needs_input_grad[1] else None,
        v_viewmats if ctx.needs_input_grad[2] else None,
    ) + (None,) * 10


torch.library.register_autograd(
    "moegs::project_fwd", _project_backward, setup_context=_project_setup_context
)


def _check_inputs(means, covars, viewmats, Ks, opacities):
    for name, t in (("means", means), ("covars", covars), ("viewmats", viewmats), ("Ks", Ks)):
        if not isinstance(t, Tensor):
            raise TypeError(f"project: {name} must be a Tensor, got {type(t).__name__}")
    if opacities is not None and not isinstance(opacities, Tensor):
        raise TypeError(f"project: opacities must be a Tensor or None, got {type(opacities).__name__}")
    if means.dim() < 2 or means.shape[-1] != 3:
        raise ValueError(f"project: means must be [..., N, 3], got {tuple(means.shape)}")
    batch, N = means.shape[:-2], means.shape[-2]
    if viewmats.dim() < 3 or viewmats.shape[-2:] != (4, 4):
        raise ValueError(f"project: viewmats must be [..., C, 4, 4], got {tuple(viewmats.shape)}")
    C = viewmats.shape[-3]
    if covars.shape == batch + (N, 3, 3):
        covars = covar_matrix_to_triu(covars)
    if covars.shape != batch + (N, 6):
        raise ValueError(
            f"project: covars must be [..., N, 6] or [..., N, 3, 3] matching means "
            f"{tuple(means.shape)}, got {tuple(covars.shape)}"
        )
    if viewmats.shape[:-3] != batch:
        raise ValueError(
            f"project: leading dims of viewmats {tuple(viewmats.shape)} and means "
            f"{tuple(means.shape)} differ"
        )
    if Ks.shape != batch + (C, 3, 3):
        raise ValueError(f"project: Ks must be {tuple(batch + (C, 3, 3))}, got {tuple(Ks.shape)}")
    if opacities is not None and opacities.shape != batch + (N,):
        raise ValueError(
            f"project: opacities must be {tuple(batch + (N,))}, got {tuple(opacities.shape)}"
        )
    return covars, batch, C, N


def project(
    means: Tensor,
    covars: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
    camera_model: str = "pinhole",
    opacities: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Projects 3D Gaussians into every camera of their scene (EWA splatting).

    Same rules as gsplat 1.5.3's ``fully_fused_projection`` (dense mode).

    Args:
        means: ``[..., N, 3]`` world-space centres.
        covars: ``[..., N, 6]`` upper triangle (xx, xy, xz, yy, yz, zz) of the world-space
            covariances, or ``[..., N, 3, 3]`` full matrices (only their upper triangle is read).
        viewmats: ``[..., C, 4, 4]`` world-to-camera transforms, OpenCV axes
            (x right, y down, z forward).
        Ks: ``[..., C, 3, 3]`` intrinsics, pixels.
        width, height: image size, pixels.
        eps2d: added to the diagonal of each 2D covariance, pixels^2.
        near_plane, far_plane: Gaussians with camera z outside [near, far] are culled.
        radius_clip: Gaussians whose pixel radii are both <= this are culled.
        calc_compensations: also return sqrt(det(cov2d) / det(cov2d + eps2d I)).
        camera_model: ``"pinhole"``, ``"ortho"`` or ``"fisheye"`` (equidistant: pixel radius
            f * atan2(|xy|, z) around the principal point, as gsplat's fisheye model).
        opacities: ``[..., N]`` or None. When given, the bounding box is shrunk to where
            the Gaussian's alpha falls below 1/255 (times the compensation when
            ``calc_compensations``), and Gaussians fainter than 1/255 are culled.
            No gradient flows to it.

    Returns:
        ``radii`` int32 ``[..., C, N, 2]`` (x, y pixel radii, 0 = culled), ``means2d``
        ``[..., C, N, 2]`` (pixels, pixel centres at +0.5), ``depths`` ``[..., C, N]``
        (camera z), ``conics`` ``[..., C, N, 3]`` (upper triangle of the inverse 2D
        covariance), ``compensations`` ``[..., C, N]`` or None. Culled entries are zeros.
        Gradients flow to means, covars and viewmats.
    """
    covars, batch, C, N = _check_inputs(means, covars, viewmats, Ks, opacities)
    if camera_model not in CAMERA_MODELS:
        raise ValueError(
            f"project: camera_model must be one of {sorted(CAMERA_MODELS)}, got {camera_model!r}"
        )
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"project: image size must be positive, got {width}x{height}")
    B = math.prod(batch)
    radii, means2d, depths, conics, comps = _ops.project_fwd(
        means.reshape(B, N, 3), covars.reshape(B, N, 6), viewmats.reshape(B, C, 4, 4),
        Ks.reshape(B, C, 3, 3), None if opacities is None else opacities.reshape(B, N),
        int(width), int(height), float(eps2d), float(near_plane), float(far_plane),
        float(radius_clip), bool(calc_compensations), CAMERA_MODELS[camera_model],
    )
    return (
        radii.reshape(*batch, C, N, 2),
        means2d.reshape(*batch, C, N, 2),
        depths.reshape(*batch, C, N),
        conics.reshape(*batch, C, N, 3),
        comps.reshape(*batch, C, N) if calc_compensations else None,
    )
