"""Synthetic benchmark scenes: random Gaussians in front of one pinhole camera.

The camera sits at the origin looking down +z (identity view matrix) with focal length ``f = width``
and the principal point at the image centre, so the tangent of the half field of view is 0.5 in
both axes (``width == height``). Gaussians are spread uniformly over the volume of the frustum
between depths 2 and 6.
"""

import math
from dataclasses import dataclass, fields
from typing import List, Optional

import torch
from torch import Tensor

TAN_HALF_FOV = 0.5
DEPTH_RANGE = (2.0, 6.0)
SCALE_RANGE = (0.008, 0.06)  # world units, sampled log-uniformly
OPACITY_RANGE = (0.1, 0.9)
SH_C0 = 0.28209479177387814  # degree-0 SH basis constant: rgb = SH_C0 * dc + 0.5


@dataclass
class Scene:
    means: Tensor  # [N, 3] world positions
    quats: Tensor  # [N, 4] unit quaternions (w, x, y, z)
    scales: Tensor  # [N, 3] linear standard deviations, world units
    opacities: Tensor  # [N] in (0, 1)
    colors: Tensor  # [N, 3] RGB in [0, 1], or SH coefficients [N, (sh_degree + 1)^2, 3]
    viewmats: Tensor  # [1, 4, 4] world-to-camera (identity)
    Ks: Tensor  # [1, 3, 3] pinhole intrinsics
    expert_ids: Tensor  # [N] int32 in [0, num_experts)
    grad_image: Tensor  # [1, H, W, 3] fixed weights G of the loss sum(image * G)
    grad_experts: Tensor  # [1, K, H, W, 3] fixed weights of the loss sum(expert_images * G_K)
    width: int
    height: int
    num_experts: int
    sh_degree: Optional[int]

    @property
    def n(self) -> int:
        return self.means.shape[0]

    def leaves(self) -> List[Tensor]:
        """The differentiable inputs (means, quats, scales, opacities, colors)."""
        return [self.means, self.quats, self.scales, self.opacities, self.colors]

    def fresh_leaves(self) -> List[Tensor]:
        """Detached copies of :meth:`leaves` with ``requires_grad=True`` (no stale ``.grad``)."""
        return [t.detach().clone().requires_grad_(True) for t in self.leaves()]

    def to(self, dtype: torch.dtype) -> "Scene":
        """The same scene with every floating-point tensor cast to ``dtype``."""
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor) and v.is_floating_point():
                v = v.to(dtype)
            values[f.name] = v
        return Scene(**values)


def pinhole_K(width: int, height: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[3, 3]`` intrinsics with f = width and the principal point at the image centre."""
    f = float(width)
    return torch.tensor(
        [[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype
    )


def make_scene(
    n: int,
    width: int,
    height: int,
    num_experts: int = 1,
    seed: int = 0,
    sh_degree: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
) -> Scene:
    """Random scene of ``n`` Gaussians seen by one camera of ``width`` x ``height`` pixels.

    Args:
        n: number of Gaussians.
        width, height: image size in pixels (the benchmarks use ``width == height``).
        num_experts: K; expert ids are drawn uniformly from ``[0, K)``.
        seed: seeds a private generator, so scenes do not depend on global RNG state.
        sh_degree: None for RGB colours ``[N, 3]``; otherwise SH coefficients
            ``[N, (sh_degree + 1)^2, 3]`` whose degree-0 term encodes a uniform RGB colour and
            whose higher terms are small N(0, 0.1) values.
        dtype: float dtype of every float tensor (sampling happens in float64 first).
    """
    if n < 0 or width <= 0 or height <= 0 or num_experts < 1:
        raise ValueError(
            f"make_scene: need n >= 0, positive image size and num_experts >= 1, got "
            f"n={n}, {width}x{height}, num_experts={num_experts}"
        )
    if sh_degree is not None and not 0 <= sh_degree <= 3:
        raise ValueError(f"make_scene: sh_degree must be None or in [0, 3], got {sh_degree}")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=f64)

    # Depth with density proportional to z^2, i.e. uniform over the frustum volume.
    z0, z1 = DEPTH_RANGE
    z = (uniform(z0**3, z1**3, n)) ** (1.0 / 3.0)
    tan_x = TAN_HALF_FOV
    tan_y = TAN_HALF_FOV * height / width
    x = z * tan_x * uniform(-1.0, 1.0, n)
    y = z * tan_y * uniform(-1.0, 1.0, n)
    means = torch.stack([x, y, z], dim=-1)

    quats = torch.randn(n, 4, generator=g, dtype=f64)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    log_lo, log_hi = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
    scales = torch.exp(uniform(log_lo, log_hi, n, 3))
    opacities = uniform(*OPACITY_RANGE, n)
    rgb = torch.rand(n, 3, generator=g, dtype=f64)
    if sh_degree is None:
        colors = rgb
    else:
        colors = 0.1 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=f64)
        colors[:, 0, :] = (rgb - 0.5) / SH_C0
    expert_ids = torch.randint(0, num_experts, (n,), generator=g, dtype=torch.int64).to(torch.int32)

    viewmats = torch.eye(4, dtype=f64)[None]
    Ks = pinhole_K(width, height, f64)[None]
    grad_image = torch.randn(1, height, width, 3, generator=g, dtype=f64)
    grad_experts = torch.randn(1, num_experts, height, width, 3, generator=g, dtype=f64)

    return Scene(
        means=means.to(dtype),
        quats=quats.to(dtype),
        scales=scales.to(dtype),
        opacities=opacities.to(dtype),
        colors=colors.to(dtype),
        viewmats=viewmats.to(dtype),
        Ks=Ks.to(dtype),
        expert_ids=expert_ids,
        grad_image=grad_image.to(dtype),
        grad_experts=grad_experts.to(dtype),
        width=width,
        height=height,
        num_experts=num_experts,
        sh_degree=sh_degree,
    )
