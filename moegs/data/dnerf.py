"""D-NeRF / Blender loader: ``transforms_{train,val,test}.json`` with a per-frame ``time``.

Frame entries may carry optional extras written by moegs' procedural scene:
``depth_file_path`` (.npy, [H, W] float32 camera-z depth), ``labels_file_path`` (.npy, [H, W]
integer motion class) and ``camera_id``. A ``points.npy`` ([P, 6] xyz + rgb) next to the JSON
files is used as the initial point cloud; otherwise 2000 random points fill [-1.3, 1.3]^3. A
``points_time.npy`` ([Q, 7] xyz + rgb + time in [0, 1]) becomes ``SceneData.temporal_points``.
"""

import json
import math
import os
from typing import List, Optional

import numpy as np
import torch

from moegs.data.cameras import (
    Camera,
    SceneData,
    check_downscale,
    check_max_frames,
    downscale_image,
    intrinsics,
    make_camera,
    opengl_c2w_to_opencv_w2c,
    random_points,
    scene_bounds,
    subsample_indices,
)
from moegs.utils.png import read_png_float


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise ValueError(f"{path}: expected an object with a 'frames' list")
    return meta


def _resolve_image(root: str, file_path: str) -> str:
    p = os.path.normpath(os.path.join(root, file_path))
    for cand in (p, p + ".png"):
        if os.path.isfile(cand):
            return cand
    raise FileNotFoundError(f"image for frame '{file_path}' not found (tried {p} and {p}.png)")


def _load_extra(root: str, rel: Optional[str], shape, what: str, downscale: int):
    if rel is None:
        return None
    p = os.path.normpath(os.path.join(root, rel))
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{what} file not found: {p}")
    try:
        a = np.load(p)
    except Exception as e:  # corrupt .npy
        raise ValueError(f"{p}: cannot read {what} ({e})") from None
    if a.shape != shape:
        raise ValueError(f"{p}: {what} has shape {a.shape}, expected {shape}")
    if downscale > 1:
        # nearest sample (top-left of each block): averaging depth or class ids across an edge
        # would invent values that exist nowhere in the scene
        h, w = shape[0] // downscale, shape[1] // downscale
        a = a[: h * downscale : downscale, : w * downscale : downscale]
    return a


def _load_split(root: str, split: str, downscale: int, background: np.ndarray) -> List[Camera]:
    path = os.path.join(root, f"transforms_{split}.json")
    meta = _read_json(path)
    frames = meta["frames"]
    if not frames:
        raise ValueError(f"{path}: no frames")
    have_time = ["time" in fr for fr in frames]
    if any(have_time) and not all(have_time):
        raise ValueError(f"{path}: some frames have a 'time' and others do not")
    cams = []
    for i, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise ValueError(f"{path}: frame {i} lacks 'file_path' or 'transform_matrix'")
        img_path = _resolve_image(root, fr["file_path"])
        rgba = read_png_float(img_path)
        c = rgba.shape[2]
        if c in (1, 2):  # grey (+alpha) -> RGB (+alpha)
            rgba = np.concatenate([np.repeat(rgba[..., :1], 3, axis=2), rgba[..., 1:]], axis=2)
        if rgba.shape[2] == 4:
            a = rgba[..., 3:4]
            rgb = rgba[..., :3] * a + background * (1.0 - a)
        else:
            rgb = rgba[..., :3]
        H0, W0 = rgb.shape[:2]
        rgb = downscale_image(rgb, downscale)
        H, W = rgb.shape[:2]
        if "camera_angle_x" in meta or "fl_x" in meta:
            if "fl_x" in meta:
                fx = float(meta["fl_x"])
                fy = float(meta.get("fl_y", fx))
                cx = float(meta.get("cx", W0 / 2))
                cy = float(meta.get("cy", H0 / 2))
            else:
                ax = float(meta["camera_angle_x"])
                if not (0.0 < ax < math.pi):
                    raise ValueError(f"{path}: camera_angle_x must be in (0, pi) radians, got {ax}")
                fx = fy = 0.5 * W0 / math.tan(0.5 * ax)
                cx, cy = W0 / 2, H0 / 2
        else:
            raise ValueError(f"{path}: needs 'camera_angle_x' or 'fl_x' for the intrinsics")
        s = W / W0
        K = intrinsics(fx * s, fy * (H / H0), cx * s, cy * (H / H0))
        t = float(fr.get("time", 0.0))
        if not (math.isfinite(t) and -1e-6 <= t <= 1 + 1e-6):
            raise ValueError(f"{path}: frame {i} time {t} outside [0, 1]")
        w2c = opengl_c2w_to_opencv_w2c(fr["transform_matrix"])
        depth = _load_extra(root, fr.get("depth_file_path"), (H0, W0), "depth", downscale)
        labels = _load_extra(root, fr.get("labels_file_path"), (H0, W0), "labels", downscale)
        name = f"{split}/{os.path.splitext(os.path.basename(img_path))[0]}"
        cams.append(
            make_camera(
                w2c, K, W, H, min(max(t, 0.0), 1.0), rgb,
                depth=None if depth is None else torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)),
                labels=None if labels is None else torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64)),
                name=name,
                camera_id=int(fr.get("camera_id", i)),
                frame=int(fr.get("frame", i)),
            )
        )
    return cams


def load_dnerf(path: str, *, downscale: int = 1, white_background: bool = True, max_frames: Optional[int] = None) -> SceneData:
    """Load a D-NeRF / Blender scene folder.

    Train = ``transforms_train.json``; test = ``transforms_test.json`` (or ``transforms_val.json``
    if there is no test file). ``max_frames`` keeps at most that many evenly spaced distinct
    training times (all cameras of a kept time stay). Images are composited on white
    (``white_background``) or black.
    """
    downscale = check_downscale(downscale)
    max_frames = check_max_frames(max_frames)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"D-NeRF scene folder not found: {path}")
    if not os.path.isfile(os.path.join(path, "transforms_train.json")):
        raise FileNotFoundError(f"{path}: no transforms_train.json (not a D-NeRF/Blender scene)")
    bg = np.ones(3, np.float32) if white_background else np.zeros(3, np.float32)
    train = _load_split(path, "train", downscale, bg)
    test_split = "test" if os.path.isfile(os.path.join(path, "transforms_test.json")) else "val"
    test = _load_split(path, test_split, downscale, bg) if os.path.isfile(os.path.join(path, f"transforms_{test_split}.json")) else []
    times = sorted({c.time for c in train})
    if max_frames is not None and len(times) > max_frames:
        keep = {times[i] for i in subsample_indices(len(times), max_frames)}
        train = [c for c in train if c.time in keep]
        times = sorted(keep)
    center, radius = scene_bounds(train)
    pts_path = os.path.join(path, "points.npy")
    if os.path.isfile(pts_path):
        arr = np.load(pts_path)
        if arr.ndim != 2 or arr.shape[1] != 6 or not np.all(np.isfinite(arr)):
            raise ValueError(f"{pts_path}: expected finite [P, 6] xyz+rgb, got {arr.shape}")
        points = torch.from_numpy(arr[:, :3].astype(np.float32))
        colors = torch.from_numpy(np.clip(arr[:, 3:], 0, 1).astype(np.float32))
    else:
        points, colors = random_points(torch.zeros(3), 1.3, 2000)
    temporal = _read_temporal_points(os.path.join(path, "points_time.npy"))
    label_names = None
    info_path = os.path.join(path, "scene_info.json")
    if os.path.isfile(info_path):
        with open(info_path) as f:
            label_names = json.load(f).get("label_names")
    return SceneData(
        name=os.path.basename(os.path.normpath(path)),
        train=train,
        test=test,
        background=torch.from_numpy(bg),
        points=points,
        point_colors=colors,
        center=center,
        radius=radius,
        label_names=label_names,
        times=times,
        temporal_points=temporal,
    )


def _read_temporal_points(path: str) -> Optional[torch.Tensor]:
    """``[Q, 7]`` float32 (xyz, rgb clamped to [0, 1], time) from ``path``, or None if the file is absent."""
    if not os.path.isfile(path):
        return None
    try:
        arr = np.load(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if arr.ndim != 2 or arr.shape[1] != 7 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: expected finite [Q, 7] xyz+rgb+time, got shape {arr.shape}")
    if arr.shape[0] and (arr[:, 6].min() < 0 or arr[:, 6].max() > 1):
        raise ValueError(f"{path}: times must lie in [0, 1]")
    out = torch.from_numpy(arr.astype(np.float32))
    out[:, 3:6] = out[:, 3:6].clamp(0, 1)
    return out
