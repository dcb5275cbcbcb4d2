"""A small built-in static scene, ray-cast analytically (independent of the rasterizer).

Coloured, Lambert-shaded spheres over a checkerboard floor, seen by cameras on
a circle around the origin. World axes: z up; cameras use OpenCV axes.
"""

import math
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

SPHERES = (  # centre (x, y, z), radius, colour
    ((0.0, 0.0, 0.0), 0.55, (0.85, 0.20, 0.15)),
    ((0.9, 0.5, -0.2), 0.35, (0.15, 0.55, 0.85)),
    ((-0.8, 0.6, -0.25), 0.30, (0.20, 0.75, 0.25)),
    ((0.2, -0.9, 0.1), 0.40, (0.90, 0.75, 0.20)),
)
FLOOR_Z = -0.55
FLOOR_RADIUS = 1.6
SKY = (0.55, 0.70, 0.90)
LIGHT = (0.4, -0.3, 0.85)


@dataclass
class View:
    viewmat: Tensor  # [4, 4] world -> camera (OpenCV)
    K: Tensor  # [3, 3]
    image: Tensor  # [H, W, 3] in [0, 1]


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> Tensor:
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    f = target - eye
    f = f / f.norm()
    r = torch.linalg.cross(f, up)
    r = r / r.norm()
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])  # rows: camera x (right), y (down), z (forward) in world coords
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = R
    m[:3, 3] = -R @ eye
    return m


def intrinsics(width: int, height: int, tan_half_fov: float = 0.5) -> Tensor:
    f = 0.5 * width / tan_half_fov
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)


def ray_cast(viewmat: Tensor, K: Tensor, width: int, height: int) -> Tensor:
    """[H, W, 3] image of the analytic scene."""
    c2w = torch.linalg.inv(viewmat)
    js, is_ = torch.meshgrid(torch.arange(width) + 0.5, torch.arange(height) + 0.5, indexing="xy")
    d_cam = torch.stack([(js - K[0, 2]) / K[0, 0], (is_ - K[1, 2]) / K[1, 1], torch.ones_like(js)], -1)
    d = d_cam.to(torch.float64) @ c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[:3, 3].expand_as(d)
    best_t = torch.full(d.shape[:-1], math.inf, dtype=torch.float64)
    color = torch.tensor(SKY, dtype=torch.float64).expand_as(d).clone()
    normal = torch.zeros_like(d)
    light = torch.tensor(LIGHT, dtype=torch.float64)
    light = light / light.norm()
    for centre, radius, rgb in SPHERES:
        c = torch.tensor(centre, dtype=torch.float64)
        oc = o - c
        b = (oc * d).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - radius * radius)
        t = -b - torch.sqrt(disc.clamp_min(0.0))
        hit = (disc > 0) & (t > 1e-6) & (t < best_t)
        best_t = torch.where(hit, t, best_t)
        p = o + t[..., None] * d
        n = (p - c) / radius
        normal = torch.where(hit[..., None], n, normal)
        color = torch.where(hit[..., None], torch.tensor(rgb, dtype=torch.float64), color)
    # floor
    t = (FLOOR_Z - o[..., 2]) / d[..., 2]
    p = o + t[..., None] * d
    hit = (d[..., 2] < 0) & (t > 1e-6) & (t < best_t) & ((p[..., :2] ** 2).sum(-1) < FLOOR_RADIUS**2)
    checker = ((torch.floor(p[..., 0] * 2) + torch.floor(p[..., 1] * 2)) % 2 == 0).to(torch.float64)
    floor_rgb = (0.35 + 0.45 * checker)[..., None].expand_as(d)
    best_t = torch.where(hit, t, best_t)
    normal = torch.where(hit[..., None], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), normal)
    color = torch.where(hit[..., None], floor_rgb, color)
    shade = 0.35 + 0.65 * (normal * light).sum(-1).clamp_min(0.0)
    shaded = torch.where(torch.isfinite(best_t)[..., None], color * shade[..., None], color)
    return shaded.clamp(0, 1).to(torch.float32)


def make_views(n_views: int, width: int, height: int, radius: float = 3.6) -> List[View]:
    """Cameras on a circle around the origin, alternating between two elevations."""
    views = []
    K = intrinsics(width, height)
    for k in range(n_views):
        a = 2 * math.pi * k / n_views + 0.3
        elevation = 1.0 if k % 2 == 0 else 2.0
        vm = look_at((radius * math.cos(a), radius * math.sin(a), elevation))
        views.append(View(vm.to(torch.float32), K.to(torch.float32), ray_cast(vm, K, width, height)))
    return views
