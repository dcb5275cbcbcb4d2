"""Camera and scene containers shared by every loader, plus pose/intrinsics helpers.

Conventions: world-to-camera ``viewmat`` with OpenCV camera axes (x right, y down,
z forward); intrinsics ``K`` in pixels, pixel centres at integer + 0.5 (a point
projecting to ``(u, v)`` lies inside pixel ``(floor(u), floor(v))``).
"""

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass
class Camera:
    """One posed image.

    viewmat: [4, 4] float32 world-to-camera, OpenCV axes.
    K: [3, 3] float32 intrinsics in pixels.
    time: normalised to [0, 1] over the sequence.
    image: [H, W, 3] float32 in [0, 1], alpha already composited on the scene background.
    depth: [H, W] float32 camera-z depth (world units), 0 where there is no surface.
    labels: [H, W] int64 per-pixel motion class, -1 where unknown.
    """

    viewmat: Tensor
    K: Tensor
    width: int
    height: int
    time: float
    image: Optional[Tensor]
    depth: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    name: str = ""
    camera_id: int = 0
    frame: int = 0

    @property
    def camera_center(self) -> Tensor:
        """[3] camera centre in world coordinates."""
        R = self.viewmat[:3, :3]
        return -R.T @ self.viewmat[:3, 3]

    def project(self, points: Tensor) -> Tensor:
        """Project world points [P, 3] to pixel coordinates [P, 2] (u right, v down)."""
        p = points.to(self.viewmat) @ self.viewmat[:3, :3].T + self.viewmat[:3, 3]
        uvw = p @ self.K.T
        return uvw[:, :2] / uvw[:, 2:3]


@dataclass
class SceneData:
    """A dataset split into training and held-out cameras.

    background: [3] float32 colour the images were composited on.
    points: [P, 3] float32 initial point cloud; point_colors: [P, 3] in [0, 1].
    center: [3] scene centre; radius: scene extent in world units.
    """

    name: str
    train: List[Camera]
    test: List[Camera]
    background: Tensor
    points: Tensor
    point_colors: Tensor
    center: Tensor
    radius: float
    label_names: Optional[List[str]] = None
    times: List[float] = field(default_factory=list)  # sorted distinct training times
    # optional time-tagged cloud [Q, 7] (xyz, rgb in [0, 1], time in [0, 1]): per-frame sparse points, the
    # initialisation of experts that place Gaussians in time (polynomial / Spacetime Gaussians)
    temporal_points: Optional[Tensor] = None


def _as_matrix(m, shape, what: str) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return a


def opengl_c2w_to_opencv_w2c(c2w) -> np.ndarray:
    """Blender/NeRF camera-to-world [4, 4] (x right, y up, z back) -> OpenCV world-to-camera [4, 4].

    Flips the camera's y and z axes (``c2w[:3, 1:3] *= -1``) and inverts the rigid transform.
    """
    c2w = _as_matrix(c2w, (4, 4), "transform_matrix").copy()
    c2w[:3, 1:3] *= -1.0
    return rigid_inverse(c2w)


def llff_to_opencv_w2c(pose_3x4) -> np.ndarray:
    """LLFF camera-to-world [3, 4] with columns (down, right, back, centre) -> OpenCV w2c [4, 4].

    OpenCV camera axes in LLFF columns: x = right = c1, y = down = c0, z = forward = -c2.
    """
    p = _as_matrix(pose_3x4, (3, 4), "LLFF pose")
    c2w = np.eye(4)
    c2w[:3, 0] = p[:, 1]
    c2w[:3, 1] = p[:, 0]
    c2w[:3, 2] = -p[:, 2]
    c2w[:3, 3] = p[:, 3]
    return rigid_inverse(c2w)


def rigid_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform [R | t]."""
    R = m[:3, :3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ m[:3, 3]
    return out


def quat_wxyz_to_rotmat(q) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> [3, 3] rotation matrix (normalises the input)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"quaternion must be 4 finite values with non-zero norm, got {q}")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    """[3, 3] float32 pinhole intrinsics."""
    for v, n in ((fx, "fx"), (fy, "fy"), (cx, "cx"), (cy, "cy")):
        if not math.isfinite(v):
            raise ValueError(f"intrinsic {n} is not finite: {v}")
    if fx <= 0 or fy <= 0:
        raise ValueError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def intrinsics_from_fov(camera_angle_x: float, width: int, height: int) -> Tensor:
    """Centred intrinsics from the horizontal field of view (radians), square pixels."""
    if not (0.0 < camera_angle_x < math.pi):
        raise ValueError(f"camera_angle_x must be in (0, pi) radians, got {camera_angle_x}")
    f = 0.5 * width / math.tan(0.5 * camera_angle_x)
    return intrinsics(f, f, 0.5 * width, 0.5 * height)


def scale_intrinsics(K: Tensor, sx: float, sy: Optional[float] = None) -> Tensor:
    """Intrinsics after resizing the image by (sx, sy) (pixel-edge convention: cx scales exactly)."""
    sy = sx if sy is None else sy
    out = K.clone()
    out[0, :] *= sx
    out[1, :] *= sy
    return out


def downscale_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter [H, W, C] by an integer factor (crops H and W to multiples of it)."""
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"downscale must be a positive integer, got {factor!r}")
    if factor == 1:
        return img
    h, w = img.shape[0] // factor, img.shape[1] // factor
    if h == 0 or w == 0:
        raise ValueError(f"downscale {factor} is larger than the image {img.shape[:2]}")
    img = img[: h * factor, : w * factor]
    return img.reshape(h, factor, w, factor, *img.shape[2:]).mean(axis=(1, 3))


def check_downscale(factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"downscale must be a positive integer, got {factor!r}")
    return int(factor)


def check_max_frames(max_frames) -> Optional[int]:
    if max_frames is None:
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise ValueError(f"max_frames must be None or a positive integer, got {max_frames!r}")
    return int(max_frames)


def subsample_indices(n: int, max_frames: Optional[int]) -> List[int]:
    """Evenly spaced indices into range(n), at most max_frames of them, first and last kept."""
    if max_frames is None or max_frames >= n:
        return list(range(n))
    if max_frames == 1:
        return [0]
    return sorted({int(round(i * (n - 1) / (max_frames - 1))) for i in range(max_frames)})


def scene_bounds(cameras: Sequence[Camera]):
    """(center [3], radius): mean camera centre and 1.1 x the largest distance to it."""
    centers = torch.stack([c.camera_center for c in cameras])
    center = centers.mean(0)
    radius = 1.1 * float((centers - center).norm(dim=-1).max())
    return center, max(radius, 1e-3)


def random_points(center: Tensor, half_extent: float, n: int, seed: int = 0):
    """n uniform random points in the cube center ± half_extent, grey colours."""
    g = torch.Generator().manual_seed(seed)
    pts = center.float() + (torch.rand(n, 3, generator=g) * 2 - 1) * half_extent
    cols = torch.full((n, 3), 0.5)
    return pts, cols


def make_camera(viewmat, K: Tensor, width: int, height: int, time: float, image=None, **kw) -> Camera:
    vm = torch.as_tensor(np.asarray(viewmat), dtype=torch.float32)
    img = None if image is None else torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)
    if img is not None and tuple(img.shape) != (height, width, 3):
        raise ValueError(f"image shape {tuple(img.shape)} does not match {height}x{width}x3")
    return Camera(viewmat=vm, K=K.float(), width=int(width), height=int(height), time=float(time), image=img, **kw)
