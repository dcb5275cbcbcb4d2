"""View-dependent colour from spherical harmonics (op ``moegs::spherical_harmonics_fwd``)."""

import torch
from torch import Tensor

from moegs import _extension  # noqa: F401  (registers torch.ops.moegs)

_ops = torch.ops.moegs

MAX_SH_DEGREE = 3


@torch.library.register_fake("moegs::spherical_harmonics_fwd")
def _sh_fwd_fake(degree, dirs, coeffs):
    return dirs.new_empty(dirs.shape[0], 3)


@torch.library.register_fake("moegs::spherical_harmonics_bwd")
def _sh_bwd_fake(degree, dirs, coeffs, colors, v_colors, compute_v_dirs):
    v_dirs = torch.empty_like(dirs) if compute_v_dirs else dirs.new_empty(0)
    return v_dirs, torch.empty_like(coeffs)


def _sh_setup_context(ctx, inputs, output):
    degree, dirs, coeffs = inputs
    ctx.degree = degree
    ctx.save_for_backward(dirs, coeffs, output)


def _sh_backward(ctx, v_colors):
    dirs, coeffs, colors = ctx.saved_tensors
    compute_v_dirs = ctx.needs_input_grad[1]
    v_dirs, v_coeffs = _ops.spherical_harmonics_bwd(
        ctx.degree, dirs, coeffs, colors, v_colors.contiguous(), compute_v_dirs
    )
    return (
        None,
        v_dirs if compute_v_dirs else None,
        v_coeffs if ctx.needs_input_grad[2] else None,
    )


torch.library.register_autograd(
    "moegs::spherical_harmonics_fwd", _sh_backward, setup_context=_sh_setup_context
)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """RGB colour of each Gaussian seen from a direction, ``max(SH + 0.5, 0)``.

    Same real SH basis, constants and signs as 3DGS / gsplat. Only the first
    ``(degree + 1)**2`` coefficients are used (progressive SH); the rest get a
    zero gradient. Differentiable w.r.t. ``dirs`` and ``coeffs``; no gradient
    where a channel is clamped to 0.

    Args:
        degree: SH degree to evaluate, 0..3.
        dirs: ``[..., 3]`` view directions (Gaussian mean minus camera centre,
            world units); need not be normalised.
        coeffs: ``[..., Kc, 3]`` SH coefficients per colour channel, with
            ``(degree + 1)**2 <= Kc``; same dtype as ``dirs``.

    Returns:
        ``[..., 3]`` colours, >= 0.
    """
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise TypeError(f"spherical_harmonics: degree must be an int, got {type(degree).__name__}")
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"spherical_harmonics: degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    for name, x in (("dirs", dirs), ("coeffs", coeffs)):
        if not isinstance(x, Tensor):
            raise TypeError(f"spherical_harmonics: {name} must be a torch.Tensor, got {type(x).__name__}")
    if dirs.dim() < 1 or dirs.shape[-1] != 3:
        raise ValueError(f"spherical_harmonics: dirs must be [..., 3], got {tuple(dirs.shape)}")
    batch = dirs.shape[:-1]
    if coeffs.dim() != dirs.dim() + 1 or coeffs.shape[:-2] != batch or coeffs.shape[-1] != 3:
        raise ValueError(
            f"spherical_harmonics: coeffs must be [..., Kc, 3] with the leading shape of dirs "
            f"{tuple(batch)}, got {tuple(coeffs.shape)}"
        )
    n_bases = (degree + 1) ** 2
    if coeffs.shape[-2] < n_bases:
        raise ValueError(
            f"spherical_harmonics: degree {degree} needs Kc >= {n_bases}, got coeffs {tuple(coeffs.shape)}"
        )
    if dirs.dtype not in (torch.float32, torch.float64) or coeffs.dtype != dirs.dtype:
        raise TypeError(
            f"spherical_harmonics: dirs and coeffs must share a float32/float64 dtype, got "
            f"{dirs.dtype} and {coeffs.dtype}"
        )
    kc = coeffs.shape[-2]
    colors = _ops.spherical_harmonics_fwd(degree, dirs.reshape(-1, 3), coeffs.reshape(-1, kc, 3))
    return colors.reshape(*batch, 3)
