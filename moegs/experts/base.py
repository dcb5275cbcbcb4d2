"""Common base of the deformation experts: the activated Gaussian set and the expert interface.

Every expert keeps ALL of its per-Gaussian tensors in one ``torch.nn.ParameterDict`` (``splats``), each with
the Gaussian index as first dimension and stored raw (before activation). Densification and pruning
(``gsplat.strategy.ops`` duplicate / split / remove, gsplat's ``DefaultStrategy``) act uniformly on every
entry, so an expert stays consistent whatever its Gaussian count. Quantities shared by all Gaussians (MLPs,
feature planes, embedding tables) are ordinary sub-modules, returned by ``network_param_groups()``.

Shared entries of ``splats`` (N Gaussians, SH degree d, B = (d+1)**2 coefficients):

=============  ============  ====================================================================
key            shape         meaning
=============  ============  ====================================================================
means          [N, 3]        canonical centre, world units
quats          [N, 4]        canonical rotation, wxyz, not necessarily normalised
scales         [N, 3]        log of the standard deviations along the local axes (world units)
opacities      [N]           opacity logit
sh0            [N, 1, 3]     SH DC coefficient
shN            [N, B-1, 3]   higher SH coefficients (empty second dim when d = 0)
router         [N, 3]        router parameters (w, w_dir, w_time), initialised (0.9, 0.9, 0.0)
=============  ============  ====================================================================
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
ROUTER_INIT = (0.9, 0.9, 0.0)
# Published learning rates of the router parameters (w, w_dir, w_time). ``splat_lrs()["router"]`` is the
# first; a trainer that wants the smaller time rate can scale that column's gradient by 0.05 / 0.5.
ROUTER_LRS = (0.5, 0.5, 0.05)
INIT_OPACITY = 0.1


@dataclass
class GaussianSet:
    """An expert's Gaussians at one time, activated and ready for the rasterizer.

    Attributes:
        means: [N, 3] world-space centres.
        quats: [N, 4] rotations, wxyz, not necessarily normalised.
        scales: [N, 3] positive standard deviations along the local axes, world units.
        opacities: [N] opacities in (0, 1), including any temporal factor.
        sh: [N, (sh_degree+1)**2, 3] SH coefficients, DC first.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.sh.shape[1]))) - 1


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] → SH DC coefficient whose evaluation (+0.5) gives that colour. Same shape."""
    return (rgb - 0.5) / SH_C0


def knn_mean_sq_dist(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean squared distance of each point to its ``k`` nearest other points.

    Args:
        points: [N, 3] positions.
        k: number of neighbours (reduced to N-1 when there are fewer points).
    Returns:
        [N] mean squared distance (0 when N == 1). Computed exactly by chunked brute force.
    """
    n = points.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return torch.zeros(n, dtype=points.dtype, device=points.device)
    pts = points.detach()
    out = torch.empty(n, dtype=pts.dtype, device=pts.device)
    for s in range(0, n, chunk):
        d2 = torch.cdist(pts[s:s + chunk], pts).square()
        d2[torch.arange(d2.shape[0]), torch.arange(s, s + d2.shape[0])] = float("inf")
        out[s:s + chunk] = d2.topk(k, dim=1, largest=False).values.mean(dim=1)
    return out


def knn_indices(points: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Indices [N, k] of each point's ``k`` nearest other points (brute force, chunked)."""
    n = points.shape[0]
    k = min(k, n - 1)
    pts = points.detach()
    out = torch.empty(n, max(k, 0), dtype=torch.long, device=pts.device)
    if k <= 0:
        return out
    for s in range(0, n, chunk):
        d2 = torch.cdist(pts[s:s + chunk], pts)
        d2[torch.arange(d2.shape[0]), torch.arange(s, s + d2.shape[0])] = float("inf")
        out[s:s + chunk] = d2.topk(k, dim=1, largest=False).indices
    return out


def check_point_times(point_times, n: int) -> Tensor:
    """Validate per-point observation times: a [n] tensor of finite values in [0, 1]. Returns them as float32."""
    if not isinstance(point_times, Tensor) or point_times.shape != (n,):
        raise ValueError(f"point_times must be a tensor of shape [{n}], got "
                         f"{getattr(point_times, 'shape', type(point_times).__name__)}")
    times = point_times.detach().to(torch.float32)
    if not torch.isfinite(times).all() or times.min() < 0 or times.max() > 1:
        raise ValueError("point_times must be finite and in [0, 1]")
    return times


def check_time(t) -> float:
    """Validate a normalised time: a finite real number (or 0-d tensor) in [0, 1]."""
    if isinstance(t, Tensor):
        if t.numel() != 1:
            raise ValueError(f"time t must be a scalar, got a tensor of shape {tuple(t.shape)}")
        t = float(t.detach())
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"time t must be a float in [0, 1], got {type(t).__name__}")
    t = float(t)
    if not math.isfinite(t) or t < 0.0 or t > 1.0:
        raise ValueError(f"time t must be a finite value in [0, 1], got {t}")
    return t


def _check_points(points: Tensor, colors: Tensor) -> None:
    if not isinstance(points, Tensor) or not isinstance(colors, Tensor):
        raise TypeError("points and colors must be torch tensors")
    if not points.is_floating_point() or not colors.is_floating_point():
        raise TypeError(f"points and colors must be floating point, got {points.dtype} and {colors.dtype}")
    if points.dim() != 2 or points.shape[1] != 3 or points.shape[0] < 1:
        raise ValueError(f"points must have shape [P, 3] with P >= 1, got {tuple(points.shape)}")
    if colors.shape != points.shape:
        raise ValueError(f"colors must have shape {tuple(points.shape)} like points, got {tuple(colors.shape)}")
    if not torch.isfinite(points).all() or not torch.isfinite(colors).all():
        raise ValueError("points and colors must be finite (found NaN or inf)")


class DeformationExpert(torch.nn.Module):
    """Base class: a set of canonical Gaussians plus a time-dependent deformation.

    Subclasses add their per-Gaussian tensors to ``self.splats`` (in ``__init__``) and implement
    ``deform(t)``. Everything else (initialisation from a point cloud, time validation, activation, the
    shared learning rates) lives here.

    Args:
        points: [P, 3] initial point cloud (world units); one Gaussian per point.
        colors: [P, 3] point colours in [0, 1].
        sh_degree: SH degree of the colour model (0..3).
        scene_radius: scene extent; position-like learning rates are multiplied by it.
    """

    name: str = "base"

    def __init__(self, points: Tensor, colors: Tensor, *, sh_degree: int = 3, scene_radius: float = 1.0):
        super().__init__()
        _check_points(points, colors)
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be an int in 0..3, got {sh_degree!r}")
        if not isinstance(scene_radius, (int, float)) or not math.isfinite(scene_radius) or scene_radius <= 0:
            raise ValueError(f"scene_radius must be a finite positive number, got {scene_radius!r}")
        self.sh_degree = sh_degree
        self.scene_radius = float(scene_radius)
        pts = points.detach().to(torch.float32)
        rgb = colors.detach().to(torch.float32).clamp(0.0, 1.0)
        n = pts.shape[0]
        dist2 = knn_mean_sq_dist(pts, k=3).clamp_min(1e-14)
        if n == 1:
            dist2 = torch.full_like(dist2, (0.01 * self.scene_radius) ** 2)
        log_scale = torch.log(torch.sqrt(dist2))[:, None].repeat(1, 3)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        n_coeffs = (sh_degree + 1) ** 2
        self.splats = torch.nn.ParameterDict({
            "means": torch.nn.Parameter(pts.clone()),
            "quats": torch.nn.Parameter(quats),
            "scales": torch.nn.Parameter(log_scale),
            "opacities": torch.nn.Parameter(torch.full((n,), math.log(INIT_OPACITY / (1 - INIT_OPACITY)))),
            "sh0": torch.nn.Parameter(rgb_to_sh(rgb)[:, None, :].clone()),
            "shN": torch.nn.Parameter(torch.zeros(n, n_coeffs - 1, 3)),
            "router": torch.nn.Parameter(torch.tensor(ROUTER_INIT).repeat(n, 1)),
        })

    # ------------------------------------------------------------------ interface
    @property
    def num_gaussians(self) -> int:
        return int(self.splats["means"].shape[0])

    def forward(self, t: float) -> GaussianSet:
        """The Gaussians at normalised time ``t`` in [0, 1] (activated; see ``GaussianSet``)."""
        return self.deform(check_time(t))

    def deform(self, t: float) -> GaussianSet:  # pragma: no cover - abstract
        raise NotImplementedError

    def splat_lrs(self) -> Dict[str, float]:
        """Learning rate of every ``splats`` key: the 3DGS defaults (positions scaled by the scene radius)."""
        return {
            "means": 1.6e-4 * self.scene_radius,
            "quats": 1e-3,
            "scales": 5e-3,
            "opacities": 5e-2,
            "sh0": 2.5e-3,
            "shN": 2.5e-3 / 20,
            "router": ROUTER_LRS[0],
        }

    def network_param_groups(self) -> List[dict]:
        """Optimiser groups for the parameters shared by all Gaussians: [{"params", "lr", "name"}]."""
        return []

    def regularization(self, t: float) -> Tensor:
        """Scalar extra loss of this expert at time ``t`` (0 when it has none)."""
        check_time(t)
        return self.splats["means"].new_zeros(())

    def step_schedule(self, step: int, total: int) -> None:
        """Per-step hook called by the trainer before the step's forward (no-op unless overridden)."""
        _check_step(step, total)

    # ------------------------------------------------------------------ helpers for subclasses
    def sh(self) -> Tensor:
        """[N, (d+1)**2, 3] SH coefficients (DC first)."""
        return torch.cat([self.splats["sh0"], self.splats["shN"]], dim=1)

    def activate(self, means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                 sh: Optional[Tensor] = None, opacity_factor: Optional[Tensor] = None) -> GaussianSet:
        """Build a ``GaussianSet`` from raw values: exp of log-scales, sigmoid of logits (times a factor)."""
        opac = torch.sigmoid(opacity_logits)
        if opacity_factor is not None:
            opac = opac * opacity_factor
        return GaussianSet(means=means, quats=quats, scales=torch.exp(log_scales), opacities=opac,
                           sh=self.sh() if sh is None else sh)

    def extra_repr(self) -> str:
        return f"name={self.name}, num_gaussians={self.num_gaussians}, sh_degree={self.sh_degree}"


def _check_step(step: int, total: int) -> None:
    for v, nm in ((step, "step"), (total, "total")):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{nm} must be an int, got {type(v).__name__}")
    if total < 1 or step < 0:
        raise ValueError(f"need step >= 0 and total >= 1, got step={step}, total={total}")


def positional_encoding(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """NeRF positional encoding γ(x) = [x, sin(2^k x), cos(2^k x)] for k = 0..L-1.

    Args:
        x: [..., D] input.
        num_freqs: L, number of octaves.
    Returns:
        [..., D * (2L + include_input)]; per octave the D sines come before the D cosines.
    """
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [L]
    xf = x[..., None, :] * freqs[:, None]  # [..., L, D]
    enc = torch.cat([torch.sin(xf), torch.cos(xf)], dim=-1).flatten(-2)  # [..., L*2D]
    return torch.cat([x, enc], dim=-1) if include_input else enc


def make_mlp(in_dim: int, width: int, depth: int, out_dim: Optional[int] = None) -> torch.nn.Sequential:
    """Linear(in, W) followed by (depth-1) × [ReLU, Linear(W, W)], optionally a final [ReLU, Linear(W, out)]."""
    layers: List[torch.nn.Module] = [torch.nn.Linear(in_dim, width)]
    for _ in range(max(depth, 1) - 1):
        layers += [torch.nn.ReLU(), torch.nn.Linear(width, width)]
    if out_dim is not None:
        layers += [torch.nn.ReLU(), torch.nn.Linear(width, out_dim)]
    return torch.nn.Sequential(*layers)


class DeltaHeads(torch.nn.Module):
    """Output heads [ReLU, Linear(W, W), ReLU, Linear(W, k)] for each named delta (e.g. Δμ 3, Δs 3, Δq 4).

    The last layer of each head starts near zero (Xavier scaled by ``out_gain``), so a freshly built expert is
    close to its canonical Gaussians while gradients still reach every layer.
    """

    def __init__(self, width: int, sizes: Dict[str, int], out_gain: float = 0.01):
        super().__init__()
        self.heads = torch.nn.ModuleDict()
        for key, k in sizes.items():
            head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(width, width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, k))
            torch.nn.init.xavier_uniform_(head[-1].weight, gain=out_gain)
            torch.nn.init.zeros_(head[-1].bias)
            self.heads[key] = head

    def forward(self, h: Tensor) -> Dict[str, Tensor]:
        """h: [N, W] trunk features → {name: [N, k]} deltas."""
        return {k: head(h) for k, head in self.heads.items()}
