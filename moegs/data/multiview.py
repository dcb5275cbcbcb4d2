"""Multi-view video loaders: Neural 3D Video (N3V / DyNeRF) and Technicolor light-field video.

N3V: ``poses_bounds.npy`` ([N, 17]: LLFF camera-to-world 3x4, column 5 = (H, W, focal) at full
resolution, then near/far) and one stream per camera, either ``camXX.mp4`` or pre-extracted frames
``camXX/images/*.png``; row i of the npy belongs to the i-th camera in sorted order.

Technicolor: ``cameras_parameters.txt`` (a header, then one row per camera
``f cx cy _ _ qw qx qy qz tx ty tz`` with (q, t) world-to-camera, OpenCV axes, pixels at the image
resolution) and either the distributed frames ``<Scene>_undist_<FFFFF>_<CC>.png`` in one folder or
per-frame folders ``colmap_<F>/images/camCC.png``.

Times are frame / (frames in the sequence - 1), before any ``max_frames`` subsampling. The initial
point cloud is random: 4000 points at uniform depths in [near, far] along random rays of random
training cameras (grey), since neither format ships points without running COLMAP.
"""

import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from moegs.data.cameras import (
    Camera,
    SceneData,
    check_downscale,
    check_max_frames,
    downscale_image,
    intrinsics,
    llff_to_opencv_w2c,
    make_camera,
    quat_wxyz_to_rotmat,
    scene_bounds,
    subsample_indices,
)
from moegs.utils.png import read_png_float


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.shape[2] in (1, 2):
        return np.repeat(img[..., :1], 3, axis=2)
    return img[..., :3]


def _frustum_points(cams: List[Camera], near: float, far: float, n: int = 4000, seed: int = 0):
    g = np.random.default_rng(seed)
    pts = []
    for _ in range(n):
        c = cams[g.integers(len(cams))]
        u, v = g.uniform(0, c.width), g.uniform(0, c.height)
        z = g.uniform(near, far)
        K = c.K.double().numpy()
        xc = np.array([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
        vm = c.viewmat.double().numpy()
        pts.append(vm[:3, :3].T @ (xc - vm[:3, 3]))
    p = torch.tensor(np.array(pts), dtype=torch.float32)
    return p, torch.full_like(p, 0.5)


def _check_test_cameras(test_cameras) -> Tuple[int, ...]:
    try:
        ids = tuple(int(i) for i in test_cameras)
    except TypeError:
        raise TypeError(f"test_cameras must be a sequence of camera numbers, got {test_cameras!r}") from None
    return ids


def _scene(name, train, test, points, colors) -> SceneData:
    if not train:
        raise ValueError(f"{name}: no training cameras left after holding out the test cameras")
    center, radius = scene_bounds(train)
    return SceneData(
        name=name, train=train, test=test, background=torch.zeros(3), points=points, point_colors=colors,
        center=center, radius=radius, times=sorted({c.time for c in train}),
    )


# ---------------------------------------------------------------------------------------------- N3V


def _n3v_streams(path: str) -> List[Tuple[int, str, str]]:
    """Sorted (camera number, name, source) with source an mp4 file or a frames folder."""
    found: Dict[str, Tuple[int, str, str]] = {}
    for p in glob.glob(os.path.join(path, "cam*.mp4")):
        m = re.fullmatch(r"cam(\d+)\.mp4", os.path.basename(p))
        if m:
            found[f"cam{m.group(1)}"] = (int(m.group(1)), f"cam{m.group(1)}", p)
    for p in glob.glob(os.path.join(path, "cam*")):
        m = re.fullmatch(r"cam(\d+)", os.path.basename(p))
        if m and os.path.isdir(p):
            img_dir = os.path.join(p, "images") if os.path.isdir(os.path.join(p, "images")) else p
            if glob.glob(os.path.join(img_dir, "*.png")):
                found[f"cam{m.group(1)}"] = (int(m.group(1)), f"cam{m.group(1)}", img_dir)
    return sorted(found.values())


def _stream_frames(src: str, indices: List[int], downscale: int) -> Tuple[List[np.ndarray], Tuple[int, int]]:
    """(kept frames, each [H, W, 3] float32 box-downscaled, (H0, W0) stored size before downscaling)."""
    if os.path.isdir(src):
        files = sorted(glob.glob(os.path.join(src, "*.png")))
        out, size = [], None
        for i in indices:
            img = _rgb(read_png_float(files[i]))
            size = img.shape[:2]
            out.append(downscale_image(img, downscale))
        return out, size
    from moegs.utils.video import read_video, video_size

    frames = read_video(src, indices, downscale=downscale)
    return list(frames), video_size(src)


def _stream_length(src: str) -> int:
    if os.path.isdir(src):
        return len(glob.glob(os.path.join(src, "*.png")))
    from moegs.utils.video import count_video_frames

    return count_video_frames(src)


def load_n3v(path: str, *, downscale: int = 4, max_frames: Optional[int] = None, test_cameras: Sequence[int] = (0,)) -> SceneData:
    """Load a Neural 3D Video scene (see the module docstring). Cameras whose number is in
    ``test_cameras`` (default cam00) are held out. ``max_frames`` keeps that many evenly spaced frames.
    Images are box-downscaled by ``downscale``; the focal length follows the actual image size."""
    downscale = check_downscale(downscale)
    max_frames = check_max_frames(max_frames)
    test_ids = _check_test_cameras(test_cameras)
    pb_path = os.path.join(path, "poses_bounds.npy")
    if not os.path.isfile(pb_path):
        raise FileNotFoundError(f"{path}: no poses_bounds.npy (not an N3V scene)")
    try:
        pb = np.load(pb_path)
    except Exception as e:
        raise ValueError(f"{pb_path}: cannot read ({e})") from None
    if pb.ndim != 2 or pb.shape[1] != 17 or not np.all(np.isfinite(pb)):
        raise ValueError(f"{pb_path}: expected a finite [N, 17] array, got shape {pb.shape}")
    streams = _n3v_streams(path)
    if not streams:
        raise FileNotFoundError(f"{path}: no camXX.mp4 videos or camXX/images/*.png folders")
    if len(streams) != pb.shape[0]:
        raise ValueError(f"{path}: {len(streams)} camera streams but {pb.shape[0]} rows in poses_bounds.npy")
    total = min(_stream_length(src) for _, _, src in streams)
    if total < 1:
        raise ValueError(f"{path}: a camera stream has no frames")
    frame_ids = subsample_indices(total, max_frames)
    poses = pb[:, :15].reshape(-1, 3, 5)
    near, far = float(pb[:, 15].min()), float(pb[:, 16].max())
    train, test = [], []
    for row, (num, name, src) in enumerate(streams):
        Hf, Wf, f = poses[row, :, 4]
        w2c = llff_to_opencv_w2c(poses[row, :, :4])
        imgs, (H0, W0) = _stream_frames(src, frame_ids, downscale)
        s = W0 / Wf  # stored frames may already be smaller than the full resolution
        H, W = imgs[0].shape[:2]
        sx, sy = s * W / W0, (H0 / Hf) * H / H0
        K = intrinsics(f * sx, f * sy, 0.5 * Wf * sx, 0.5 * Hf * sy)
        for fi, img in zip(frame_ids, imgs):
            t = fi / max(total - 1, 1)
            cam = make_camera(w2c, K, W, H, t, img, name=f"{name}/{fi:04d}", camera_id=num, frame=fi)
            (test if num in test_ids else train).append(cam)
    pts, cols = _frustum_points(train, near, far) if train else (torch.zeros(0, 3), torch.zeros(0, 3))
    return _scene(os.path.basename(os.path.normpath(path)), train, test, pts, cols)


# ------------------------------------------------------------------------------------- Technicolor


def read_technicolor_cameras(path: str) -> List[Tuple[float, float, float, np.ndarray]]:
    """Rows of ``cameras_parameters.txt`` as (f, cx, cy, w2c [4, 4]) in file order."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"camera parameter file not found: {path}")
    rows = []
    with open(path) as fh:
        for ln, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                vals = [float(x) for x in parts]
            except ValueError:
                if not rows:
                    continue  # header line
                raise ValueError(f"{path}:{ln}: non-numeric camera row: {line.strip()!r}") from None
            if len(vals) < 12:
                raise ValueError(f"{path}:{ln}: expected 12 values (f cx cy _ _ qw qx qy qz tx ty tz), got {len(vals)}")
            f, cx, cy = vals[:3]
            w2c = np.eye(4)
            w2c[:3, :3] = quat_wxyz_to_rotmat(vals[5:9])
            w2c[:3, 3] = vals[9:12]
            if not np.all(np.isfinite(w2c)):
                raise ValueError(f"{path}:{ln}: non-finite pose")
            rows.append((f, cx, cy, w2c))
    if not rows:
        raise ValueError(f"{path}: no camera rows")
    return rows


def _technicolor_images(path: str) -> Dict[int, Dict[int, str]]:
    """{frame number: {camera number: png path}} for either supported layout."""
    table: Dict[int, Dict[int, str]] = {}
    for p in glob.glob(os.path.join(path, "*.png")):
        m = re.fullmatch(r".*_undist_(\d+)_(\d+)\.png", os.path.basename(p))
        if m:
            table.setdefault(int(m.group(1)), {})[int(m.group(2))] = p
    for d in glob.glob(os.path.join(path, "colmap_*")):
        m = re.fullmatch(r"colmap_(\d+)", os.path.basename(d))
        if not m:
            continue
        for p in glob.glob(os.path.join(d, "images", "cam*.png")):
            mc = re.fullmatch(r"cam(\d+)\.png", os.path.basename(p))
            if mc:
                table.setdefault(int(m.group(1)), {})[int(mc.group(1))] = p
    return table


def load_technicolor(path: str, *, downscale: int = 1, max_frames: Optional[int] = None, test_cameras: Sequence[int] = (0,)) -> SceneData:
    """Load a Technicolor scene (see the module docstring). Camera numbers index the rows of
    ``cameras_parameters.txt``; those in ``test_cameras`` are held out (the published protocol
    holds out cam10: pass ``test_cameras=(10,)``)."""
    downscale = check_downscale(downscale)
    max_frames = check_max_frames(max_frames)
    test_ids = _check_test_cameras(test_cameras)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Technicolor scene folder not found: {path}")
    params = read_technicolor_cameras(os.path.join(path, "cameras_parameters.txt"))
    table = _technicolor_images(path)
    if not table:
        raise FileNotFoundError(f"{path}: no *_undist_FFFFF_CC.png or colmap_F/images/camCC.png images")
    frames = sorted(table)
    cams_all = sorted(set.intersection(*[set(table[f]) for f in frames]))
    if not cams_all:
        raise ValueError(f"{path}: no camera has an image in every frame")
    for c in cams_all:
        if c >= len(params):
            raise ValueError(f"{path}: image for camera {c} but cameras_parameters.txt has {len(params)} rows")
    keep = [frames[i] for i in subsample_indices(len(frames), max_frames)]
    first = frames[0]
    span = max(frames[-1] - first, 1)
    train, test = [], []
    for c in cams_all:
        f, cx, cy, w2c = params[c]
        for fr in keep:
            img = _rgb(read_png_float(table[fr][c]))
            H0, W0 = img.shape[:2]
            img = downscale_image(img, downscale)
            H, W = img.shape[:2]
            sx, sy = W / W0, H / H0
            K = intrinsics(f * sx, f * sy, cx * sx, cy * sy)
            cam = make_camera(w2c, K, W, H, (fr - first) / span, img, name=f"cam{c:02d}/{fr:05d}", camera_id=c, frame=fr)
            (test if c in test_ids else train).append(cam)
    near, far = 0.5 * _mean_camera_distance(train), 2.0 * _mean_camera_distance(train) + 1.0
    pts, cols = _frustum_points(train, near, far) if train else (torch.zeros(0, 3), torch.zeros(0, 3))
    return _scene(os.path.basename(os.path.normpath(path)), train, test, pts, cols)


def _mean_camera_distance(cams: List[Camera]) -> float:
    if len(cams) < 2:
        return 1.0
    centers = torch.stack([c.camera_center for c in cams])
    d = (centers - centers.mean(0)).norm(dim=-1).mean()
    return max(float(d) * 4.0, 0.5)
