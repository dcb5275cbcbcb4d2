"""The built-in multi-view dynamic scene, rendered by analytic ray casting (not by moegs).

A textured room (floor and walls, static) holds four moving things, each a different kind
of motion so that no single deformation model fits every region well:

====  ==================  =====================================================================
 id   class               what moves
====  ==================  =====================================================================
 0    static              room: checkered floor, striped walls and ceiling
 1    rigid_rotation      a textured cube spinning about a tilted axis (one and a half turns)
 2    fast_oscillation    a small two-tone sphere bouncing back and forth ``osc_cycles`` times
 3    non_rigid           a striped blob whose surface ripples and whose texture twists
 4    flicker             a static box whose colour and brightness oscillate
====  ==================  =====================================================================

World axes: z up, floor at z = -1. Cameras sit on a ring around the origin looking at the
objects; every camera sees every time step (synchronised multi-view video). Training and test
cameras alternate around the ring, so test views are new viewpoints at the training times.

Output (D-NeRF layout, read back with :func:`moegs.data.load_dnerf`)::

    transforms_train.json, transforms_test.json   camera_angle_x; frames: file_path, time,
                                                  transform_matrix (OpenGL c2w), camera_id, frame,
                                                  depth_file_path, labels_file_path
    train/cXX_fYYY.png, test/...                  8-bit RGB
    depth/{train,test}/cXX_fYYY.npy               [H, W] float32 camera-z depth
    labels/{train,test}/cXX_fYYY.npy              [H, W] uint8 motion class (table above)
    points.npy                                    [P, 6] initial point cloud xyz + rgb (frame 0)
    points_time.npy                               [Q, 7] xyz + rgb + time: points.npy (time 0) plus
                                                  samples of every later frame, each tagged with its time
    scene_info.json                               label names and the config

The initial point cloud imitates a noisy sparse reconstruction of the first frame: random
pixels of the t = 0 training views are back-projected with their ground-truth depth, coloured
with the observed pixel colour, and jittered with Gaussian noise of ``point_noise`` world units.
``points_time.npy`` imitates per-frame sparse reconstructions (what Spacetime Gaussians initialise
from): the same lifting repeated at every later frame, ``n_temporal_points`` points per frame, each
point tagged with the time of the frame it came from.
"""

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from moegs.utils.png import write_png

MOTION_CLASSES = ["static", "rigid_rotation", "fast_oscillation", "non_rigid", "flicker"]

ROOM_MIN = (-4.0, -4.0, -1.0)
ROOM_MAX = (4.0, 4.0, 3.0)
LIGHT_DIR = (0.45, -0.35, 0.82)
CUBE_CENTER = (-0.85, 0.55, -0.45)
CUBE_HALF = 0.38
OSC_CENTER = (0.85, 0.55, -0.35)
OSC_RADIUS = 0.24
BLOB_CENTER = (0.05, -0.75, -0.4)
BLOB_RADIUS = 0.45
FLICKER_CENTER = (1.05, -0.55, -0.72)
FLICKER_HALF = (0.26, 0.26, 0.28)


@dataclass
class ProceduralSceneConfig:
    """Sizes of the built-in scene.

    width, height: image size in pixels. n_train_cameras / n_test_cameras: cameras on the ring.
    n_frames: time steps (t = frame / (n_frames - 1)). supersample: colour samples per pixel side
    (depth and labels always come from the pixel centre). osc_cycles: periods of the fast
    oscillation over the sequence. n_points: size of the initial point cloud; point_noise: its
    jitter in world units. n_temporal_points: points per later frame in ``points_time.npy``.
    seed: camera jitter, texture phases and point sampling.
    """

    width: int = 96
    height: int = 96
    n_train_cameras: int = 10
    n_test_cameras: int = 2
    n_frames: int = 14
    seed: int = 0
    supersample: int = 2
    fov_x_deg: float = 55.0
    camera_distance: float = 3.0
    camera_height: float = 0.7
    osc_cycles: float = 3.0
    n_points: int = 3000
    point_noise: float = 0.02
    n_temporal_points: int = 1200

    def validate(self) -> None:
        for name in ("width", "height", "n_train_cameras", "n_frames", "supersample", "n_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ProceduralSceneConfig.{name} must be a positive integer, got {v!r}")
        if isinstance(self.n_temporal_points, bool) or not isinstance(self.n_temporal_points, int) \
                or self.n_temporal_points < 0:
            raise ValueError(f"ProceduralSceneConfig.n_temporal_points must be >= 0, got {self.n_temporal_points!r}")
        if isinstance(self.n_test_cameras, bool) or not isinstance(self.n_test_cameras, int) or self.n_test_cameras < 0:
            raise ValueError(f"ProceduralSceneConfig.n_test_cameras must be >= 0, got {self.n_test_cameras!r}")
        if self.n_frames < 2:
            raise ValueError("ProceduralSceneConfig.n_frames must be at least 2")
        if not (5.0 < self.fov_x_deg < 170.0):
            raise ValueError(f"fov_x_deg must be in (5, 170), got {self.fov_x_deg}")
        if not (1.8 < self.camera_distance < 3.9):
            raise ValueError(f"camera_distance must be in (1.8, 3.9) to stay inside the room, got {self.camera_distance}")
        if not (-0.9 < self.camera_height < 2.9):
            raise ValueError(f"camera_height must be in (-0.9, 2.9), got {self.camera_height}")
        if not (math.isfinite(self.point_noise) and self.point_noise >= 0):
            raise ValueError(f"point_noise must be finite and >= 0, got {self.point_noise}")
        if not (math.isfinite(self.osc_cycles) and self.osc_cycles > 0):
            raise ValueError(f"osc_cycles must be positive, got {self.osc_cycles}")


# ----------------------------------------------------------------------------------------------
# cameras


def _look_at_c2w_opencv(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world [4, 4] with OpenCV axes looking from eye at target, world z up."""
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    return c2w


def ring_cameras(cfg: ProceduralSceneConfig):
    """(train c2w list, test c2w list) in OpenCV axes; test cameras sit between training ones."""
    rng = np.random.default_rng(cfg.seed)
    n_tr, n_te = cfg.n_train_cameras, cfg.n_test_cameras
    target = np.array([0.0, 0.0, -0.45])
    base = rng.uniform(0, 2 * math.pi)

    def cam(az, h):
        eye = np.array([cfg.camera_distance * math.cos(az), cfg.camera_distance * math.sin(az), h])
        return _look_at_c2w_opencv(eye, target)

    train = []
    for i in range(n_tr):
        az = base + 2 * math.pi * i / n_tr + rng.uniform(-0.08, 0.08)
        h = cfg.camera_height + 0.35 * math.sin(2.3 * i) + rng.uniform(-0.05, 0.05)
        train.append(cam(az, h))
    test = []
    for j in range(n_te):
        slot = (j * n_tr) // max(n_te, 1)
        az = base + 2 * math.pi * (slot + 0.5) / n_tr
        test.append(cam(az, cfg.camera_height + 0.1))
    return train, test


def _intrinsics(cfg: ProceduralSceneConfig) -> np.ndarray:
    f = 0.5 * cfg.width / math.tan(0.5 * math.radians(cfg.fov_x_deg))
    return np.array([[f, 0, cfg.width / 2], [0, f, cfg.height / 2], [0, 0, 1.0]])


def camera_rays(c2w: np.ndarray, K: np.ndarray, width: int, height: int, ss: int = 1, offset: float = 0.5):
    """World rays of a pinhole camera: origins [N, 3], unit directions [N, 3], camera-z of a
    unit step along each direction [N]. N = (H*ss) * (W*ss), row-major over the fine grid."""
    c2w_t = torch.as_tensor(c2w, dtype=torch.float64)
    Kinv = torch.linalg.inv(torch.as_tensor(K, dtype=torch.float64))
    if ss == 1:
        us = torch.arange(width, dtype=torch.float64) + offset
        vs = torch.arange(height, dtype=torch.float64) + offset
    else:
        us = (torch.arange(width * ss, dtype=torch.float64) + 0.5) / ss
        vs = (torch.arange(height * ss, dtype=torch.float64) + 0.5) / ss
    v, u = torch.meshgrid(vs, us, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
    d_cam = pix @ Kinv.T
    norm = d_cam.norm(dim=-1, keepdim=True)
    d_cam = d_cam / norm
    d = d_cam @ c2w_t[:3, :3].T
    o = c2w_t[:3, 3].expand_as(d)
    return o, d, d_cam[:, 2]


# ----------------------------------------------------------------------------------------------
# primitives: each returns (hit distance [N] (inf = miss), albedo [N, 3], normal [N, 3])

INF = float("inf")


def _rot_axis_angle(axis, angle: float) -> Tensor:
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    x, y, z = a.tolist()
    c, s = math.cos(angle), math.sin(angle)
    C = 1 - c
    return torch.tensor(
        [
            [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
            [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
            [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
        ],
        dtype=torch.float64,
    )


def _box_hit(o: Tensor, d: Tensor, lo: Tensor, hi: Tensor):
    """Slab test from outside: entry distance [N] (inf = miss) and entry face normal [N, 3]."""
    with torch.no_grad():
        inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        t0 = (lo - o) * inv
        t1 = (hi - o) * inv
        tmin = torch.minimum(t0, t1)
        tmax = torch.maximum(t0, t1)
        tn, axis = tmin.max(dim=-1)
        tf = tmax.min(dim=-1).values
        hit = (tn <= tf) & (tn > 1e-6)
        t = torch.where(hit, tn, torch.full_like(tn, INF))
        n = torch.zeros_like(o)
        n.scatter_(1, axis[:, None], -torch.sign(d.gather(1, axis[:, None])))
    return t, n


def _checker(a: Tensor, b: Tensor, scale: float) -> Tensor:
    return ((torch.floor(a / scale) + torch.floor(b / scale)) % 2).to(a.dtype)


def room(o: Tensor, d: Tensor, phase: float):
    """Interior of the room box: the ray always hits (cameras are inside)."""
    lo = torch.tensor(ROOM_MIN, dtype=o.dtype)
    hi = torch.tensor(ROOM_MAX, dtype=o.dtype)
    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    tt = torch.where(d > 0, (hi - o) * inv, (lo - o) * inv)
    t, axis = tt.min(dim=-1)
    p = o + t[:, None] * d
    n = torch.zeros_like(o)
    n.scatter_(1, axis[:, None], -torch.sign(d.gather(1, axis[:, None])))
    x, y, z = p.unbind(-1)
    alb = torch.empty_like(p)
    floor = (axis == 2) & (d[:, 2] < 0)
    ceil = (axis == 2) & (d[:, 2] >= 0)
    wall = axis != 2
    # floor: two-scale checker
    c1 = _checker(x, y, 0.5)
    c2 = _checker(x + 0.1, y + 0.3, 0.17)
    base_a = torch.tensor([0.82, 0.78, 0.70], dtype=o.dtype)
    base_b = torch.tensor([0.30, 0.34, 0.42], dtype=o.dtype)
    fl = base_a * c1[:, None] + base_b * (1 - c1[:, None])
    fl = fl * (0.85 + 0.15 * c2[:, None])
    # walls: hue depends on the wall, vertical stripes plus horizontal bands
    u = torch.where(axis == 0, y, x)
    wall_id = axis * 2 + (d.gather(1, axis[:, None])[:, 0] > 0).long()
    hue = wall_id.to(o.dtype) * 1.3 + phase
    stripes = 0.5 + 0.5 * torch.sin(3.1 * u + 0.7 * hue)
    bands = 0.5 + 0.5 * torch.sin(5.0 * z + hue)
    wl = torch.stack(
        [
            0.35 + 0.45 * stripes,
            0.30 + 0.40 * (0.5 + 0.5 * torch.sin(hue + 2.0)) * bands + 0.15 * stripes,
            0.35 + 0.45 * bands,
        ],
        -1,
    )
    ce = torch.full_like(p, 0.9) * (0.8 + 0.2 * _checker(x, y, 1.0))[:, None]
    alb = torch.where(floor[:, None], fl, alb)
    alb = torch.where(ceil[:, None], ce, alb)
    alb = torch.where(wall[:, None], wl, alb)
    return t, alb, n


def rotating_cube(o: Tensor, d: Tensor, t: float):
    """Cube spinning about a tilted axis through its centre by 3 pi t."""
    c = torch.tensor(CUBE_CENTER, dtype=o.dtype)
    R = _rot_axis_angle((0.3, 0.2, 1.0), 3.0 * math.pi * t)  # object -> world
    ol = (o - c) @ R  # world -> object: R^T (o - c)
    dl = d @ R
    h = torch.full((3,), CUBE_HALF, dtype=o.dtype)
    dist, nl = _box_hit(ol, dl, -h, h)
    pl = ol + torch.where(torch.isfinite(dist), dist, torch.zeros_like(dist))[:, None] * dl
    # per-face colour with a checker of the two in-face coordinates
    face = nl.abs().argmax(-1) * 2 + (nl.sum(-1) > 0).long()
    palette = torch.tensor(
        [[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.35, 0.9], [0.95, 0.85, 0.2], [0.85, 0.3, 0.85], [0.2, 0.85, 0.85]],
        dtype=o.dtype,
    )
    col = palette[face]
    ck = _checker(pl[:, 0] + pl[:, 1], pl[:, 2] - pl[:, 1], 0.19)
    alb = col * (0.45 + 0.55 * ck[:, None])
    return dist, alb, nl @ R.T


def _sphere_hit(o: Tensor, d: Tensor, c: Tensor, r: float):
    oc = o - c
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - r * r)
    sq = torch.sqrt(disc.clamp_min(0))
    t0 = -b - sq
    t1 = -b + sq
    hit = disc > 0
    return t0, t1, hit


def oscillating_sphere(o: Tensor, d: Tensor, t: float, cycles: float):
    """Small sphere swinging fast along x with a bounce in z and a spin about z."""
    ph = 2 * math.pi * cycles * t
    c = torch.tensor(OSC_CENTER, dtype=o.dtype) + torch.tensor(
        [0.5 * math.sin(ph), 0.15 * math.sin(2 * ph), 0.3 * abs(math.sin(ph))], dtype=o.dtype
    )
    t0, _, hit = _sphere_hit(o, d, c, OSC_RADIUS)
    hit = hit & (t0 > 1e-6)
    dist = torch.where(hit, t0, torch.full_like(t0, INF))
    p = o + torch.where(hit, t0, torch.zeros_like(t0))[:, None] * d
    n = (p - c) / OSC_RADIUS
    az = torch.atan2(n[:, 1], n[:, 0]) - ph * 0.5
    two = (torch.sin(3 * az) > 0).to(o.dtype)
    top = (n[:, 2] > 0.3).to(o.dtype)
    a = torch.tensor([1.0, 0.55, 0.1], dtype=o.dtype)
    b = torch.tensor([0.1, 0.15, 0.35], dtype=o.dtype)
    w = torch.tensor([0.95, 0.95, 0.95], dtype=o.dtype)
    alb = a * two[:, None] + b * (1 - two[:, None])
    alb = alb * (1 - top[:, None]) + w * top[:, None]
    return dist, alb, n


def _blob_radius(dirs: Tensor, t: float) -> Tensor:
    """Radius of the rippling blob along unit directions [N, 3] at time t."""
    phi = torch.atan2(dirs[:, 1], dirs[:, 0])
    z = dirs[:, 2]
    return BLOB_RADIUS * (
        1.0
        + 0.16 * torch.sin(3 * phi - 2 * math.pi * 2.0 * t) * (1 - z * z)
        + 0.10 * torch.sin(2 * math.pi * 1.5 * t + 4.0 * z)
    )


def _blob_sdf(p: Tensor, c: Tensor, t: float) -> Tensor:
    v = p - c
    r = v.norm(dim=-1).clamp_min(1e-9)
    return r - _blob_radius(v / r[:, None], t)


def rippling_blob(o: Tensor, d: Tensor, t: float, steps: int = 24, bisect: int = 10):
    """Star-shaped blob with a travelling surface wave; its stripes twist with time."""
    c = torch.tensor(BLOB_CENTER, dtype=o.dtype)
    rb = BLOB_RADIUS * 1.3
    t0, t1, hit = _sphere_hit(o, d, c, rb)
    hit = hit & (t1 > 1e-6)
    dist = torch.full_like(t0, INF)
    alb = torch.zeros_like(o)
    nrm = torch.zeros_like(o)
    idx = hit.nonzero()[:, 0]
    if idx.numel() == 0:
        return dist, alb, nrm
    oo, dd = o[idx], d[idx]
    a = t0[idx].clamp_min(0)
    b = t1[idx]
    ts = a[:, None] + (b - a)[:, None] * torch.linspace(0, 1, steps + 1, dtype=o.dtype)[None]
    pts = oo[:, None] + ts[..., None] * dd[:, None]
    f = _blob_sdf(pts.reshape(-1, 3), c, t).reshape(ts.shape)
    inside = f < 0
    any_in = inside.any(-1)
    first = inside.to(torch.int64).argmax(-1)
    keep = any_in & (first > 0)
    idx, oo, dd, ts, first = idx[keep], oo[keep], dd[keep], ts[keep], first[keep]
    if idx.numel() == 0:
        return dist, alb, nrm
    lo = ts.gather(1, (first - 1)[:, None])[:, 0]
    hi = ts.gather(1, first[:, None])[:, 0]
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        fm = _blob_sdf(oo + mid[:, None] * dd, c, t)
        lo = torch.where(fm > 0, mid, lo)
        hi = torch.where(fm > 0, hi, mid)
    th = 0.5 * (lo + hi)
    p = oo + th[:, None] * dd
    eps = 1e-4
    grad = torch.stack(
        [
            _blob_sdf(p + e, c, t) - _blob_sdf(p - e, c, t)
            for e in torch.eye(3, dtype=o.dtype) * eps
        ],
        -1,
    )
    n = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    v = p - c
    u = v / v.norm(dim=-1, keepdim=True)
    phi = torch.atan2(u[:, 1], u[:, 0]) + 0.9 * math.sin(2 * math.pi * t) * u[:, 2]
    stripes = 0.5 + 0.5 * torch.sin(5 * phi)
    bands = (torch.sin(7 * u[:, 2]) > 0).to(o.dtype)
    col = torch.stack([0.55 + 0.4 * stripes, 0.25 + 0.3 * bands, 0.75 - 0.45 * stripes], -1)
    dist[idx] = th
    alb[idx] = col
    nrm[idx] = n
    return dist, alb, nrm


def flicker_box(o: Tensor, d: Tensor, t: float):
    """Static box whose texture colour and brightness oscillate over time."""
    c = torch.tensor(FLICKER_CENTER, dtype=o.dtype)
    h = torch.tensor(FLICKER_HALF, dtype=o.dtype)
    dist, n = _box_hit(o, d, c - h, c + h)
    p = o + torch.where(torch.isfinite(dist), dist, torch.zeros_like(dist))[:, None] * d - c
    ck = _checker(p[:, 0] + p[:, 2], p[:, 1] - p[:, 2], 0.13)
    m = 0.5 + 0.5 * math.sin(2 * math.pi * 2.5 * t)
    bright = 0.55 + 0.45 * math.cos(2 * math.pi * 3.5 * t + 0.4)
    a = torch.tensor([0.95, 0.25 + 0.6 * m, 0.15], dtype=o.dtype)
    b = torch.tensor([0.15, 0.35, 0.95 - 0.6 * m], dtype=o.dtype)
    alb = (a * ck[:, None] + b * (1 - ck[:, None])) * bright
    return dist, alb, n


def shade_rays(o: Tensor, d: Tensor, t: float, cfg: ProceduralSceneConfig, phase: float):
    """Colour [N, 3], hit distance along the ray [N] and motion class [N] (int64) of rays."""
    hits = [
        room(o, d, phase),
        rotating_cube(o, d, t),
        oscillating_sphere(o, d, t, cfg.osc_cycles),
        rippling_blob(o, d, t),
        flicker_box(o, d, t),
    ]
    dists = torch.stack([h[0] for h in hits], 0)  # [5, N]
    dist, label = dists.min(0)
    alb = torch.stack([h[1] for h in hits], 0).gather(0, label[None, :, None].expand(1, -1, 3))[0]
    nrm = torch.stack([h[2] for h in hits], 0).gather(0, label[None, :, None].expand(1, -1, 3))[0]
    L = torch.tensor(LIGHT_DIR, dtype=o.dtype)
    L = L / L.norm()
    # two-sided Lambert with ambient term (no shadows)
    lam = (nrm * L).sum(-1).abs()
    rgb = (alb * (0.4 + 0.6 * lam)[:, None]).clamp(0, 1)
    return rgb, dist, label


def render_view(c2w: np.ndarray, K: np.ndarray, t: float, cfg: ProceduralSceneConfig, phase: float = 0.0):
    """Ray-cast one view: rgb [H, W, 3] float32 in [0, 1], depth [H, W] float32 (camera z),
    labels [H, W] uint8 (indices into MOTION_CLASSES)."""
    H, W = cfg.height, cfg.width
    o, d, dz = camera_rays(c2w, K, W, H, 1)
    rgb, dist, label = shade_rays(o, d, t, cfg, phase)
    depth = (dist * dz).reshape(H, W)
    if cfg.supersample > 1:
        s = cfg.supersample
        o2, d2, _ = camera_rays(c2w, K, W, H, s)
        rgb2, _, _ = shade_rays(o2, d2, t, cfg, phase)
        rgb = rgb2.reshape(H, s, W, s, 3).mean(dim=(1, 3))
    else:
        rgb = rgb.reshape(H, W, 3)
    return (
        rgb.float().numpy(),
        depth.float().numpy(),
        label.reshape(H, W).to(torch.uint8).numpy(),
    )


def _opencv_c2w_to_blender(c2w: np.ndarray) -> np.ndarray:
    out = c2w.copy()
    out[:3, 1:3] *= -1.0
    return out


def write_procedural_scene(out_dir: str, cfg: ProceduralSceneConfig = ProceduralSceneConfig(), progress: bool = True) -> str:
    """Render the built-in scene into ``out_dir`` (D-NeRF layout + depth + labels); returns out_dir."""
    if not isinstance(cfg, ProceduralSceneConfig):
        raise TypeError(f"cfg must be a ProceduralSceneConfig, got {type(cfg).__name__}")
    cfg.validate()
    os.makedirs(out_dir, exist_ok=True)
    # many small tensor ops: one thread is faster than contended intra-op parallelism
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _write_scene(out_dir, cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _write_scene(out_dir: str, cfg: ProceduralSceneConfig, progress: bool) -> str:
    K = _intrinsics(cfg)
    train_c2w, test_c2w = ring_cameras(cfg)
    rng = np.random.default_rng(cfg.seed + 1)
    phase = float(rng.uniform(0, 2 * math.pi))
    times = [f / (cfg.n_frames - 1) for f in range(cfg.n_frames)]
    jobs = [("train", i, c) for i, c in enumerate(train_c2w)] + [("test", i, c) for i, c in enumerate(test_c2w)]
    total = len(jobs) * cfg.n_frames
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="procedural scene", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover
        bar = None
    frames = {"train": [], "test": []}
    pts, cols = [], []
    t_pts, t_cols, t_times = [], [], []
    per_cam = max(1, cfg.n_points // len(train_c2w))
    per_cam_frame = cfg.n_temporal_points // len(train_c2w)
    for split, ci, c2w in jobs:
        for sub in ("", "depth/", "labels/"):
            os.makedirs(os.path.join(out_dir, sub + split), exist_ok=True)
        for f, t in enumerate(times):
            rgb, depth, labels = render_view(c2w, K, t, cfg, phase)
            stem = f"c{ci:02d}_f{f:03d}"
            write_png(os.path.join(out_dir, split, stem + ".png"), rgb)
            np.save(os.path.join(out_dir, "depth", split, stem + ".npy"), depth)
            np.save(os.path.join(out_dir, "labels", split, stem + ".npy"), labels)
            frames[split].append(
                {
                    "file_path": f"./{split}/{stem}",
                    "time": t,
                    "transform_matrix": _opencv_c2w_to_blender(c2w).tolist(),
                    "camera_id": ci,
                    "frame": f,
                    "depth_file_path": f"./depth/{split}/{stem}.npy",
                    "labels_file_path": f"./labels/{split}/{stem}.npy",
                }
            )
            if split == "train" and f == 0:
                p, c = _backproject_samples(rgb, depth, c2w, K, per_cam, rng)
                pts.append(p)
                cols.append(c)
            elif split == "train" and per_cam_frame > 0:
                p, c = _backproject_samples(rgb, depth, c2w, K, per_cam_frame, rng)
                t_pts.append(p)
                t_cols.append(c)
                t_times.append(np.full((len(p), 1), t))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    pts = np.concatenate(pts)
    pts = pts + rng.normal(0.0, cfg.point_noise, pts.shape)
    cloud = np.concatenate([pts, np.concatenate(cols)], 1)
    np.save(os.path.join(out_dir, "points.npy"), cloud.astype(np.float32))
    later = [np.zeros((0, 7))]
    if t_pts:
        tp = np.concatenate(t_pts)
        later.append(np.concatenate([tp + rng.normal(0.0, cfg.point_noise, tp.shape), np.concatenate(t_cols),
                                     np.concatenate(t_times)], 1))
    temporal = np.concatenate([np.concatenate([cloud, np.zeros((len(cloud), 1))], 1), *later])
    np.save(os.path.join(out_dir, "points_time.npy"), temporal.astype(np.float32))
    fov = math.radians(cfg.fov_x_deg)
    for split in ("train", "test"):
        with open(os.path.join(out_dir, f"transforms_{split}.json"), "w") as fh:
            json.dump({"camera_angle_x": fov, "frames": frames[split]}, fh, indent=1)
    with open(os.path.join(out_dir, "scene_info.json"), "w") as fh:
        json.dump({"label_names": MOTION_CLASSES, "config": asdict(cfg)}, fh, indent=1)
    return out_dir


def procedural_scene(out_dir: str, cfg: ProceduralSceneConfig = ProceduralSceneConfig(), progress: bool = True, **load_opts):
    """The built-in scene as a SceneData: renders it into ``out_dir`` unless a scene with the same
    config is already there, then reads it back with :func:`moegs.data.load_dnerf`
    (``load_opts`` go to the loader; images are opaque, so the background choice does not matter)."""
    from moegs.data.dnerf import load_dnerf

    if not isinstance(cfg, ProceduralSceneConfig):
        raise TypeError(f"cfg must be a ProceduralSceneConfig, got {type(cfg).__name__}")
    info = os.path.join(out_dir, "scene_info.json")
    cached = False
    if os.path.isfile(info):
        try:
            with open(info) as fh:
                cached = json.load(fh).get("config") == asdict(cfg)
        except (OSError, ValueError):
            cached = False
    if not cached:
        if os.path.isfile(info):
            os.remove(info)  # written last: its absence marks an incomplete scene
        write_procedural_scene(out_dir, cfg, progress=progress)
    return load_dnerf(out_dir, **load_opts)


def _backproject_samples(rgb, depth, c2w, K, n, rng) -> Tuple[np.ndarray, np.ndarray]:
    """n random pixels with a surface, lifted to world points [n, 3] with their colours [n, 3]."""
    H, W = depth.shape
    ys, xs = np.nonzero(depth > 0)
    pick = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    ys, xs = ys[pick], xs[pick]
    z = depth[ys, xs].astype(np.float64)
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(z)], -1)
    cam = (pix @ np.linalg.inv(K).T) * z[:, None]
    world = cam @ c2w[:3, :3].T + c2w[:3, 3]
    return world, rgb[ys, xs].astype(np.float64)
