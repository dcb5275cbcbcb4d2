"""Keyframe expert (Ex4DGS): static Gaussians with a linear drift, dynamic Gaussians on keyframes.

Time is normalised: keyframe k sits at t_k = k / (K − 1), k = 0..K−1.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DeformationExpert, GaussianSet, _check_step, check_point_times, check_time


def hermite_catmull_rom(keys: Tensor, t: float) -> Tensor:
    """Cubic Hermite interpolation of keyframes with Catmull-Rom tangents.

    Args:
        keys: [N, K, D] values at the K >= 2 keyframes t_k = k / (K − 1).
        t: normalised time in [0, 1].
    Returns:
        [N, D] interpolated values. Tangents (per keyframe interval) m_k = (y_{k+1} − y_{k−1}) / 2, with the
        sequence padded by linear extrapolation (y_{−1} = 2y_0 − y_1, y_K = 2y_{K−1} − y_{K−2}), so the end
        tangents are one-sided differences. Hits every keyframe exactly.
    """
    K = keys.shape[1]
    first = 2 * keys[:, :1] - keys[:, 1:2]
    last = 2 * keys[:, -1:] - keys[:, -2:-1]
    padded = torch.cat([first, keys, last], dim=1)  # [N, K+2, D]; key k is at padded index k+1
    x = t * (K - 1)
    k = min(int(math.floor(x)), K - 2)
    u = x - k
    y_m1, y0, y1, y2 = padded[:, k], padded[:, k + 1], padded[:, k + 2], padded[:, k + 3]
    m0 = 0.5 * (y1 - y_m1)
    m1 = 0.5 * (y2 - y0)
    h00 = 2 * u ** 3 - 3 * u ** 2 + 1
    h10 = u ** 3 - 2 * u ** 2 + u
    h01 = -2 * u ** 3 + 3 * u ** 2
    h11 = u ** 3 - u ** 2
    return h00 * y0 + h10 * m0 + h01 * y1 + h11 * m1


def slerp(q0: Tensor, q1: Tensor, u: float, eps: float = 1e-6) -> Tensor:
    """Spherical linear interpolation of unit quaternions along the shorter arc.

    Args:
        q0, q1: [N, 4] quaternions (normalised here).
        u: interpolation weight in [0, 1].
    Returns:
        [N, 4] unit quaternions; falls back to normalised linear interpolation when q0 ≈ ±q1.
    """
    q0 = F.normalize(q0, dim=-1)
    q1 = F.normalize(q1, dim=-1)
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs()
    close = dot > 1 - eps
    theta = torch.acos(torch.where(close, torch.zeros_like(dot), dot.clamp(max=1.0)))
    sin_t = torch.where(close, torch.ones_like(theta), torch.sin(theta))
    w0 = torch.where(close, torch.full_like(dot, 1 - u), torch.sin((1 - u) * theta) / sin_t)
    w1 = torch.where(close, torch.full_like(dot, u), torch.sin(u * theta) / sin_t)
    return F.normalize(w0 * q0 + w1 * q1, dim=-1)


def slerp_keyframes(keys: Tensor, t: float) -> Tensor:
    """Slerp between the two keyframe quaternions around time t. keys: [N, K, 4] → [N, 4]."""
    K = keys.shape[1]
    x = t * (K - 1)
    k = min(int(math.floor(x)), K - 2)
    return slerp(keys[:, k], keys[:, k + 1], x - k)


class KeyframeExpert(DeformationExpert):
    """Ex4DGS-style expert: a static/dynamic split of the Gaussians.

    * static Gaussians (flag 0): μ(t) = μ + d·t (a learned linear drift d), canonical rotation, full opacity;
    * dynamic Gaussians (flag 1): μ(t) = μ + Hermite(P)(t) over keyframe offsets P [K, 3] (Catmull-Rom
      tangents), q(t) = slerp of keyframe quaternions Q [K, 4], opacity × a two-sided temporal Gaussian that
      is 1 between its centres c_l ≤ c_r and exp(−(t − c)² / w²) outside, w = exp(v) + w_min, measured to the
      nearer centre.

    Extra ``splats`` entries: "drift" [N, 3], "dynamic" [N] (0/1 flag, learning rate 0; the Gaussians' values
    are blended with it, so a flag of 0 gives exactly the static model), "kf_means" [N, K, 3] (offsets from
    "means", so densification moves the whole trajectory), "kf_quats" [N, K, 4], "t_center" [N, 2] (c_l, c_r),
    "t_logwidth" [N, 2] (v_l, v_r).

    Static → dynamic conversion (``step_schedule``): every ``promote_every`` steps inside the
    ``promote_window`` fraction of training, the ``promote_fraction`` of static Gaussians with the largest
    drift become dynamic; their keyframes start on the drift line (P_k = d·t_k) and at their current rotation.

    Seeding from per-frame points (``point_times``): a Gaussian seeded by a point observed after the first
    time step starts dynamic, on a still trajectory (P_k = 0), with both temporal centres at that point's time
    and total width ``seed_width`` on each side. This is the published rule (a converted Gaussian's opacity is
    centred at the frame where it fits best) applied to Gaussians whose best frame is known from the start;
    points of the first time step start static.

    Args:
        num_keyframes: K; or derived from ``num_frames`` and ``keyframe_interval`` (published 10 frames) as
            ceil((num_frames − 1) / interval) + 1.
        dynamic_fraction: fraction of Gaussians that start dynamic (evenly spaced indices).
        point_times: optional [P] normalised time at which each point was observed (see above).
        seed_width: temporal width w of the Gaussians seeded dynamic (normalised time); default half the
            smallest gap between distinct ``point_times``, so a neighbouring frame sees at most e^-4 of them,
            but at least 1.5 × the minimum width (frames denser than the keyframes).
    """

    name = "keyframe"

    def __init__(self, points: Tensor, colors: Tensor, *, sh_degree: int = 3, scene_radius: float = 1.0,
                 num_keyframes: Optional[int] = None, num_frames: Optional[int] = None,
                 keyframe_interval: int = 10, dynamic_fraction: float = 0.0, promote_fraction: float = 0.02,
                 promote_every: int = 100, promote_window=(0.1, 0.75), drift_reg: float = 1e-4,
                 motion_reg: float = 1e-4, point_times: Optional[Tensor] = None, seed_width: Optional[float] = None):
        super().__init__(points, colors, sh_degree=sh_degree, scene_radius=scene_radius)
        if num_keyframes is None:
            if num_frames is None:
                num_keyframes = 11
            else:
                if num_frames < 2 or keyframe_interval < 1:
                    raise ValueError("num_frames must be >= 2 and keyframe_interval >= 1")
                num_keyframes = int(math.ceil((num_frames - 1) / keyframe_interval)) + 1
        if num_keyframes < 2:
            raise ValueError(f"num_keyframes must be >= 2, got {num_keyframes}")
        if not 0.0 <= dynamic_fraction <= 1.0 or not 0.0 <= promote_fraction <= 1.0:
            raise ValueError("dynamic_fraction and promote_fraction must be in [0, 1]")
        if promote_every < 1 or not 0.0 <= promote_window[0] <= promote_window[1] <= 1.0:
            raise ValueError("promote_every must be >= 1 and promote_window a sub-interval of [0, 1]")
        self.num_keyframes = int(num_keyframes)
        self.promote_fraction = float(promote_fraction)
        self.promote_every = int(promote_every)
        self.promote_window = (float(promote_window[0]), float(promote_window[1]))
        self.drift_reg, self.motion_reg = float(drift_reg), float(motion_reg)
        self.min_width = 1.0 / (self.num_keyframes - 1) / (2 * 2.36)
        n, K = self.num_gaussians, self.num_keyframes
        flag = torch.zeros(n)
        n_dyn = int(round(dynamic_fraction * n))
        if n_dyn > 0:
            flag[torch.linspace(0, n - 1, n_dyn).round().long()] = 1.0
        center = torch.tensor([0.0, 1.0]).repeat(n, 1)
        logwidth = torch.full((n, 2), math.log(0.1))
        if point_times is not None:
            times = check_point_times(point_times, n).cpu()
            seeded = times > times.min()
            if bool(seeded.any()):
                width = self._seed_width(times, seed_width)
                flag[seeded] = 1.0
                center[seeded] = times[seeded, None].expand(-1, 2)
                logwidth[seeded] = math.log(width - self.min_width)
        elif seed_width is not None:
            raise ValueError("seed_width needs point_times")
        self.splats["drift"] = torch.nn.Parameter(torch.zeros(n, 3))
        self.splats["dynamic"] = torch.nn.Parameter(flag)
        self.splats["kf_means"] = torch.nn.Parameter(torch.zeros(n, K, 3))
        self.splats["kf_quats"] = torch.nn.Parameter(self.splats["quats"].detach()[:, None].repeat(1, K, 1))
        self.splats["t_center"] = torch.nn.Parameter(center)
        self.splats["t_logwidth"] = torch.nn.Parameter(logwidth)

    def _seed_width(self, times: Tensor, seed_width: Optional[float]) -> float:
        """Total temporal width of seeded dynamic Gaussians: ``seed_width`` or half the smallest time gap."""
        if seed_width is None:
            distinct = torch.unique(times)
            seed_width = max(0.5 * float((distinct[1:] - distinct[:-1]).min()), 1.5 * self.min_width)
        if not math.isfinite(seed_width) or seed_width <= self.min_width:
            raise ValueError(f"seed_width must exceed the minimum temporal width {self.min_width:.4g} "
                             f"(1 / (2·2.36·(K − 1)) for K = {self.num_keyframes} keyframes), got {seed_width}")
        return float(seed_width)

    @property
    def keyframe_times(self) -> Tensor:
        """[K] normalised times of the keyframes."""
        return torch.linspace(0.0, 1.0, self.num_keyframes)

    def temporal_opacity(self, t: float) -> Tensor:
        """[N] two-sided temporal Gaussian factor of the dynamic Gaussians (1 between c_l and c_r)."""
        s = self.splats
        c_l, c_r = s["t_center"][:, 0], s["t_center"][:, 1]
        w = torch.exp(s["t_logwidth"]) + self.min_width
        left = torch.exp(-((t - c_l) / w[:, 0]).square())
        right = torch.exp(-((t - c_r) / w[:, 1]).square())
        inside = torch.ones_like(c_l)
        return torch.where(t < c_l, left, torch.where(t > torch.maximum(c_l, c_r), right, inside))

    def deform(self, t: float) -> GaussianSet:
        s = self.splats
        f = s["dynamic"][:, None]  # [N, 1]
        static_means = s["means"] + s["drift"] * t
        dynamic_means = s["means"] + hermite_catmull_rom(s["kf_means"], t)
        means = (1 - f) * static_means + f * dynamic_means
        quats = (1 - f) * F.normalize(s["quats"], dim=-1) + f * slerp_keyframes(s["kf_quats"], t)
        factor = (1 - f[:, 0]) + f[:, 0] * self.temporal_opacity(t)
        return self.activate(means, quats, s["scales"], s["opacities"], opacity_factor=factor)

    def regularization(self, t: float) -> Tensor:
        """Scalar: drift sparsity ``drift_reg``·mean log(‖d‖ + 1e-3) over static Gaussians plus
        ``motion_reg``·mean ‖P_k − P_0‖ over dynamic ones (published weights 1e-4)."""
        check_time(t)
        s = self.splats
        f = s["dynamic"]
        drift = ((1 - f) * torch.log(s["drift"].norm(dim=-1) + 1e-3)).mean()
        kf = s["kf_means"]
        motion = (f[:, None] * (kf - kf[:, :1]).norm(dim=-1)).mean()
        return self.drift_reg * drift + self.motion_reg * motion

    @torch.no_grad()
    def promote(self, fraction: float) -> int:
        """Turn the given fraction of static Gaussians with the largest drift into dynamic ones. Returns the count."""
        s = self.splats
        static = s["dynamic"] < 0.5
        n_move = int(fraction * int(static.sum()))
        if n_move == 0:
            return 0
        score = torch.where(static, s["drift"].norm(dim=-1), torch.full_like(s["dynamic"], -1.0))
        idx = score.topk(n_move).indices
        tk = self.keyframe_times.to(s["drift"])
        s["kf_means"].data[idx] = s["drift"].data[idx, None, :] * tk[None, :, None]
        s["kf_quats"].data[idx] = F.normalize(s["quats"].data[idx], dim=-1)[:, None].expand(-1, self.num_keyframes, -1)
        s["t_center"].data[idx] = torch.tensor([0.0, 1.0]).to(s["t_center"])
        s["dynamic"].data[idx] = 1.0
        return n_move

    def step_schedule(self, step: int, total: int) -> None:
        _check_step(step, total)
        lo, hi = self.promote_window
        if step > 0 and step % self.promote_every == 0 and lo * total <= step <= hi * total:
            self.promote(self.promote_fraction)

    def splat_lrs(self) -> Dict[str, float]:
        lrs = super().splat_lrs()
        lrs.update({
            "quats": 1e-5,  # static rotations (published)
            "drift": 1e-4,
            "dynamic": 0.0,  # a flag, changed only by promote()
            "kf_means": 1.6e-4 * self.scene_radius,
            "kf_quats": 1e-3,
            "t_center": 1e-3,
            "t_logwidth": 1e-3,
        })
        return lrs
