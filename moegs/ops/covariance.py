"""Quaternion + scale -> 3D covariance (op ``moegs::quat_scale_to_covar_fwd``)."""

import torch
from torch import Tensor

from moegs import _extension  # noqa: F401  (registers torch.ops.moegs)

_ops = torch.ops.moegs


@torch.library.register_fake("moegs::quat_scale_to_covar_fwd")
def _covar_fwd_fake(quats, scales):
    return quats.new_empty(quats.shape[0], 6)


@torch.library.register_fake("moegs::quat_scale_to_covar_bwd")
def _covar_bwd_fake(quats, scales, v_covars):
    return torch.empty_like(quats), torch.empty_like(scales)


def _covar_setup_context(ctx, inputs, output):
    quats, scales = inputs
    ctx.save_for_backward(quats, scales)


def _covar_backward(ctx, v_covars):
    quats, scales = ctx.saved_tensors
    v_quats, v_scales = _ops.quat_scale_to_covar_bwd(quats, scales, v_covars.contiguous())
    return (
        v_quats if ctx.needs_input_grad[0] else None,
        v_scales if ctx.needs_input_grad[1] else None,
    )


torch.library.register_autograd(
    "moegs::quat_scale_to_covar_fwd", _covar_backward, setup_context=_covar_setup_context
)


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances of Gaussians from rotation and scale.

    Args:
        quats: ``[..., 4]`` rotations as (w, x, y, z); need not be normalised.
        scales: ``[..., 3]`` per-axis standard deviations (linear, not log), world units.

    Returns:
        ``[..., 6]`` upper triangle (xx, xy, xz, yy, yz, zz) of R diag(s)^2 R^T.
    """
    if quats.shape[-1] != 4 or scales.shape[-1] != 3 or quats.shape[:-1] != scales.shape[:-1]:
        raise ValueError(
            f"quat_scale_to_covar: expected quats [..., 4] and scales [..., 3] with the same "
            f"leading shape, got {tuple(quats.shape)} and {tuple(scales.shape)}"
        )
    batch = quats.shape[:-1]
    covars = _ops.quat_scale_to_covar_fwd(quats.reshape(-1, 4), scales.reshape(-1, 3))
    return covars.reshape(*batch, 6)


def covar_triu_to_matrix(covars: Tensor) -> Tensor:
    """``[..., 6]`` upper triangle -> ``[..., 3, 3]`` symmetric matrix."""
    xx, xy, xz, yy, yz, zz = covars.unbind(-1)
    rows = [torch.stack(r, -1) for r in ((xx, xy, xz), (xy, yy, yz), (xz, yz, zz))]
    return torch.stack(rows, -2)


def covar_matrix_to_triu(covars: Tensor) -> Tensor:
    """``[..., 3, 3]`` symmetric matrix -> ``[..., 6]`` upper triangle (xx, xy, xz, yy, yz, zz)."""
    if covars.shape[-2:] != (3, 3):
        raise ValueError(f"expected covariances [..., 3, 3], got {tuple(covars.shape)}")
    i, j = (0, 0, 0, 1, 1, 2), (0, 1, 2, 1, 2, 2)
    return covars[..., i, j]
