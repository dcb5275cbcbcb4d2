"""Projection of 3D Gaussians under the original 3DGS (diff-gaussian-rasterization) rules.

Written in PyTorch so autograd provides the gradients. The rules:

- a Gaussian is culled when its view-space z <= 0.2 (no far plane, no x/y test);
- its pixel centre comes from the full projection matrix (row-vector convention,
  homogeneous divide by ``w + 1e-7``) mapped with ``((ndc + 1) * S - 1) / 2``, so
  pixel centres sit at integer coordinates;
- the EWA Jacobian uses ``focal = S / (2 tan(fov / 2))`` and clamps ``x/z``, ``y/z``
  to +-1.3 tan(fov / 2); 0.3 is added to the 2D covariance diagonal;
- the footprint is a square of radius ``ceil(3 sqrt(lambda_max))`` pixels and the
  Gaussian touches the 16-pixel tiles ``[trunc((m - r) / 16), trunc((m + r + 15) / 16))``
  per axis, each clamped to the tile grid; an empty rectangle or a zero
  determinant culls it;
- with antialiasing the opacity is scaled by
  ``sqrt(max(2.5e-5, det(cov2d) / det(cov2d + 0.3 I)))``.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

NEAR_Z = 0.2  # view-space z at or below which a Gaussian is culled
DILATION = 0.3  # added to the 2D covariance diagonal, pixels^2
JACOBIAN_LIMIT = 1.3  # |x/z| is clamped to JACOBIAN_LIMIT * tan(fovx / 2)
TILE = 16  # tile side, pixels
AA_FLOOR = 2.5e-5  # lower bound of the antialiasing determinant ratio


@dataclass
class InriaProjection:
    """Per-Gaussian projection of one camera; culled entries hold finite placeholders."""

    means2d: Tensor  # [N, 2] pixel centre, pixel centres of the image at integer coordinates
    depths: Tensor  # [N] view-space z
    conics: Tensor  # [N, 3] (a, b, c) of the inverse dilated 2D covariance, 1/pixels^2
    opacity_scale: Tensor  # [N] antialiasing factor (ones without antialiasing)
    radii: Tensor  # [N] int32 square radius in pixels, 0 = culled
    tile_min: Tensor  # [N, 2] int64 first tile (x, y) touched
    tile_max: Tensor  # [N, 2] int64 one past the last tile (x, y) touched


def view_points(means3d: Tensor, viewmatrix: Tensor) -> Tensor:
    """``[N, 3]`` view-space points of ``[N, 3]`` world points; viewmatrix is ``[4, 4]`` row-vector (W2C^T)."""
    return means3d @ viewmatrix[:3, :3] + viewmatrix[3, :3]


def project_inria(
    means3d: Tensor,
    cov3d: Tensor,
    viewmatrix: Tensor,
    projmatrix: Tensor,
    tanfovx: float,
    tanfovy: float,
    width: int,
    height: int,
    antialiasing: bool,
) -> InriaProjection:
    """Projects Gaussians into one camera with the 3DGS rules (see the module docstring).

    Args:
        means3d: ``[N, 3]`` world positions.
        cov3d: ``[N, 6]`` upper triangle (xx, xy, xz, yy, yz, zz) of the world covariances.
        viewmatrix: ``[4, 4]`` world-to-view transform, transposed (row vectors: ``[p, 1] @ V``).
        projmatrix: ``[4, 4]`` world-to-clip transform, transposed (``[p, 1] @ P``).
        tanfovx, tanfovy: tangents of the half fields of view.
        width, height: image size, pixels.
        antialiasing: scale opacities by the 2D filter's determinant ratio.
    """
    dtype = means3d.dtype
    N = means3d.shape[0]
    t = view_points(means3d, viewmatrix)  # [N, 3]
    z = t[:, 2]
    valid = z > NEAR_Z
    one = torch.ones((), dtype=dtype, device=means3d.device)
    z_safe = torch.where(valid, z, one)

    # pixel centre from the full projection
    p_hom = means3d @ projmatrix[:3, :] + projmatrix[3, :]  # [N, 4]
    w = p_hom[:, 3] + 1e-7
    w_safe = torch.where(valid & (w != 0), w, one)
    ndc = p_hom[:, :2] / w_safe[:, None]
    size = torch.tensor([float(width), float(height)], dtype=dtype, device=means3d.device)
    means2d = ((ndc + 1.0) * size - 1.0) * 0.5

    # EWA 2D covariance
    fx = width / (2.0 * tanfovx)
    fy = height / (2.0 * tanfovy)
    limx, limy = JACOBIAN_LIMIT * tanfovx, JACOBIAN_LIMIT * tanfovy
    tx = torch.clamp(t[:, 0] / z_safe, -limx, limx) * z_safe
    ty = torch.clamp(t[:, 1] / z_safe, -limy, limy) * z_safe
    zero = torch.zeros_like(z)
    J = torch.stack(
        [
            torch.stack([fx / z_safe, zero, -fx * tx / z_safe**2], -1),
            torch.stack([zero, fy / z_safe, -fy * ty / z_safe**2], -1),
        ],
        -2,
    )  # [N, 2, 3]
    xx, xy, xz, yy, yz, zz = cov3d.unbind(-1)
    sigma = torch.stack(
        [torch.stack([xx, xy, xz], -1), torch.stack([xy, yy, yz], -1), torch.stack([xz, yz, zz], -1)], -2
    )
    Rw = viewmatrix[:3, :3].transpose(0, 1)  # world-to-view rotation (column vectors)
    T = J @ Rw  # [N, 2, 3]
    cov2d = T @ sigma @ T.transpose(-1, -2)  # [N, 2, 2]
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det_raw = a * c - b * b
    a, c = a + DILATION, c + DILATION
    det = a * c - b * b
    valid = valid & (det != 0)
    det_safe = torch.where(valid, det, one)
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    if antialiasing:
        ratio = torch.clamp(det_raw / det_safe, min=AA_FLOOR)
        opacity_scale = torch.sqrt(torch.where(valid, ratio, one))
    else:
        opacity_scale = torch.ones_like(z)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        disc = torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        lam = torch.maximum(mid + disc, mid - disc)
        radius = torch.ceil(3.0 * torch.sqrt(torch.clamp(lam, min=0.0)))
        grid = torch.tensor([(width + TILE - 1) // TILE, (height + TILE - 1) // TILE], device=means3d.device)
        m = means2d.detach()
        r = radius[:, None]
        lo = torch.trunc((m - r) / TILE).to(torch.int64)
        hi = torch.trunc((m + r + TILE - 1) / TILE).to(torch.int64)
        lo = torch.minimum(grid, torch.clamp(lo, min=0))
        hi = torch.minimum(grid, torch.clamp(hi, min=0))
        area = (hi - lo).prod(-1)
        valid = valid & (area > 0) & torch.isfinite(m).all(-1) & torch.isfinite(radius)
        radii = torch.where(valid, radius, torch.zeros_like(radius)).to(torch.int32)
        lo = torch.where(valid[:, None], lo, torch.zeros_like(lo))
        hi = torch.where(valid[:, None], hi, torch.zeros_like(hi))

    keep = valid[:, None]
    return InriaProjection(
        means2d=torch.where(keep, means2d, torch.zeros_like(means2d)),
        depths=torch.where(valid, z, zero),
        conics=torch.where(keep, conics, torch.zeros_like(conics)),
        opacity_scale=opacity_scale,
        radii=radii.reshape(N),
        tile_min=lo,
        tile_max=hi,
    )
