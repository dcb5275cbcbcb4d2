"""Loaders on tiny fixtures written in each dataset's own format."""

import json
import math
import os

import numpy as np
import pytest
import torch

from moegs.data import detect_format, load_dataset, load_dnerf, load_n3v, load_technicolor
from moegs.utils.png import write_png


def _look_at_opencv_c2w(eye, target):
    eye = np.asarray(eye, float)
    fwd = np.asarray(target, float) - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, eye
    return m


POINT = np.array([0.3, -0.2, 0.25])


# ------------------------------------------------------------------------------------------ D-NeRF


def _blender_pixel(c2w_gl, fov, W, H, p):
    """Pixel of world point p for a Blender camera (camera looks down -z, y up)."""
    x, y, z, _ = np.linalg.inv(c2w_gl) @ np.append(p, 1.0)
    f = 0.5 * W / math.tan(0.5 * fov)
    return np.array([W / 2 + f * x / -z, H / 2 - f * y / -z])


def write_dnerf(root, n_train=3, n_test=2, W=16, H=12, fov=0.8):
    os.makedirs(root / "train")
    os.makedirs(root / "test")
    poses = {}
    for split, n in (("train", n_train), ("test", n_test)):
        frames = []
        for i in range(n):
            az = 2 * math.pi * i / n + (0.3 if split == "test" else 0.0)
            c2w_cv = _look_at_opencv_c2w([3 * math.cos(az), 3 * math.sin(az), 1.0], [0, 0, 0])
            c2w_gl = c2w_cv.copy()
            c2w_gl[:3, 1:3] *= -1
            img = np.zeros((H, W, 4))
            img[..., 0] = 1.0
            img[..., 3] = 1.0
            img[0, 0, 3] = 0.0  # transparent corner -> background
            write_png(str(root / split / f"r_{i:03d}.png"), img)
            frames.append({"file_path": f"./{split}/r_{i:03d}", "time": i / max(n - 1, 1),
                           "rotation": 0.0, "transform_matrix": c2w_gl.tolist()})
            poses[(split, i)] = c2w_gl
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}))
    return poses


def test_dnerf_cameras_times_background(tmp_path):
    poses = write_dnerf(tmp_path)
    s = load_dnerf(str(tmp_path))
    assert len(s.train) == 3 and len(s.test) == 2
    assert [c.time for c in s.train] == pytest.approx([0.0, 0.5, 1.0])
    for (split, i), c2w in poses.items():
        cam = (s.train if split == "train" else s.test)[i]
        uv = cam.project(torch.tensor(POINT[None], dtype=torch.float32))[0].numpy()
        np.testing.assert_allclose(uv, _blender_pixel(c2w, 0.8, 16, 12, POINT), atol=1e-3)
        # the camera looks at the origin: it must project to the image centre, in front
        assert (cam.viewmat[:3, :3] @ torch.zeros(3) + cam.viewmat[:3, 3])[2] > 0
    img = s.train[0].image
    assert img.shape == (12, 16, 3)
    np.testing.assert_allclose(img[0, 0].numpy(), [1, 1, 1])  # composited on white
    np.testing.assert_allclose(img[5, 5].numpy(), [1, 0, 0])
    black = load_dnerf(str(tmp_path), white_background=False)
    np.testing.assert_allclose(black.train[0].image[0, 0].numpy(), [0, 0, 0])
    assert s.points.shape[1] == 3 and s.radius > 0


def test_dnerf_downscale_and_max_frames(tmp_path):
    write_dnerf(tmp_path, n_train=5)
    s = load_dnerf(str(tmp_path), downscale=2, max_frames=3)
    assert len(s.train) == 3 and s.train[0].image.shape == (6, 8, 3)
    full = load_dnerf(str(tmp_path))
    p = torch.tensor(POINT[None], dtype=torch.float32)
    np.testing.assert_allclose(s.train[0].project(p).numpy(), full.train[0].project(p).numpy() / 2, atol=1e-4)


def test_dnerf_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dnerf(str(tmp_path / "nope"))
    write_dnerf(tmp_path)
    with pytest.raises(ValueError, match="downscale"):
        load_dnerf(str(tmp_path), downscale=0)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"][0]["time"] = 3.0
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="time"):
        load_dnerf(str(tmp_path))
    meta["frames"][0]["time"] = 0.0
    meta["frames"][0]["file_path"] = "./train/missing"
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dnerf(str(tmp_path))
    (tmp_path / "transforms_train.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_dnerf(str(tmp_path))


# --------------------------------------------------------------------------------------------- N3V


def _n3v_rig(n_cams):
    """OpenCV c2w of a forward-facing arc looking at +y."""
    return [_look_at_opencv_c2w([0.4 * (i - (n_cams - 1) / 2), -3.0, 0.1 * i], [0, 0, 0]) for i in range(n_cams)]


def _llff_row(c2w_cv, H, W, f, near=1.0, far=6.0):
    """LLFF 3x5 (columns down, right, back, centre, hwf) + bounds, from an OpenCV c2w."""
    m = np.zeros((3, 5))
    m[:, 0] = c2w_cv[:3, 1]   # down
    m[:, 1] = c2w_cv[:3, 0]   # right
    m[:, 2] = -c2w_cv[:3, 2]  # back
    m[:, 3] = c2w_cv[:3, 3]
    m[:, 4] = [H, W, f]
    return np.concatenate([m.reshape(-1), [near, far]])


def _frame_color(cam, frame):
    return np.array([0.2 + 0.15 * cam, 0.9 - 0.2 * frame, 0.5])


def write_n3v(root, n_cams=3, n_frames=4, W=32, H=24, f=30.0, video=True):
    rig = _n3v_rig(n_cams)
    np.save(root / "poses_bounds.npy", np.stack([_llff_row(c, H, W, f) for c in rig]))
    for c in range(n_cams):
        frames = np.stack([np.broadcast_to(_frame_color(c, k), (H, W, 3)) for k in range(n_frames)])
        if video:
            from moegs.utils.video import write_video

            write_video(frames, str(root / f"cam{c:02d}.mp4"), fps=5)
        else:
            os.makedirs(root / f"cam{c:02d}" / "images")
            for k in range(n_frames):
                write_png(str(root / f"cam{c:02d}" / "images" / f"{k:04d}.png"), frames[k])
    return rig


def _pinhole(c2w_cv, f, cx, cy, p):
    w2c = np.linalg.inv(c2w_cv)
    x, y, z = w2c[:3, :3] @ p + w2c[:3, 3]
    return np.array([f * x / z + cx, f * y / z + cy])


@pytest.mark.parametrize("video", [True, False])
def test_n3v(tmp_path, video):
    pytest.importorskip("imageio_ffmpeg") if video else None
    rig = write_n3v(tmp_path, video=video)
    s = load_n3v(str(tmp_path), downscale=2)
    assert {c.camera_id for c in s.test} == {0} and {c.camera_id for c in s.train} == {1, 2}
    assert len(s.train) == 8 and len(s.test) == 4
    assert sorted({c.time for c in s.train}) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    for cam in s.train + s.test:
        assert cam.image.shape == (12, 16, 3)
        uv = cam.project(torch.tensor(POINT[None], dtype=torch.float32))[0].numpy()
        np.testing.assert_allclose(uv, _pinhole(rig[cam.camera_id], 15.0, 8.0, 6.0, POINT), atol=1e-3)
        tol = 0.04 if video else 1e-2
        np.testing.assert_allclose(cam.image.mean((0, 1)).numpy(), _frame_color(cam.camera_id, cam.frame), atol=tol)
    sub = load_n3v(str(tmp_path), downscale=1, max_frames=2, test_cameras=(1,))
    assert sorted({c.frame for c in sub.train}) == [0, 3] and {c.camera_id for c in sub.test} == {1}


def test_n3v_bad_inputs(tmp_path):
    write_n3v(tmp_path, video=False)
    np.save(tmp_path / "poses_bounds.npy", np.zeros((2, 17)))
    with pytest.raises(ValueError, match="rows"):
        load_n3v(str(tmp_path))
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(ValueError, match="17"):
        load_n3v(str(tmp_path))


# ------------------------------------------------------------------------------------- Technicolor


def _quat_from_rotmat(R):
    w = math.sqrt(max(1e-12, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


@pytest.mark.parametrize("layout", ["undist", "colmap"])
def test_technicolor(tmp_path, layout):
    rig = _n3v_rig(3)
    W, H, f, cx, cy = 20, 10, 18.0, 11.0, 4.5  # off-centre principal point
    lines = ["f cx cy ar skew qw qx qy qz tx ty tz"]
    for c2w in rig:
        w2c = np.linalg.inv(c2w)
        q = _quat_from_rotmat(w2c[:3, :3])
        lines.append(" ".join(str(v) for v in [f, cx, cy, 1, 0, *q, *w2c[:3, 3]]))
    (tmp_path / "cameras_parameters.txt").write_text("\n".join(lines) + "\n")
    for fr in (151, 152, 153):
        for c in range(3):
            img = np.full((H, W, 3), 0.1 * c + 0.05 * (fr - 150))
            if layout == "undist":
                p = tmp_path / f"Birthday_undist_{fr:05d}_{c:02d}.png"
            else:
                os.makedirs(tmp_path / f"colmap_{fr}" / "images", exist_ok=True)
                p = tmp_path / f"colmap_{fr}" / "images" / f"cam{c:02d}.png"
            write_png(str(p), img)
    assert detect_format(str(tmp_path)) == "technicolor"
    s = load_dataset(str(tmp_path), test_cameras=(2,))
    assert {c.camera_id for c in s.test} == {2} and len(s.train) == 6
    assert sorted({c.time for c in s.train}) == pytest.approx([0, 0.5, 1])
    for cam in s.train + s.test:
        uv = cam.project(torch.tensor(POINT[None], dtype=torch.float32))[0].numpy()
        np.testing.assert_allclose(uv, _pinhole(rig[cam.camera_id], f, cx, cy, POINT), atol=1e-3)
        np.testing.assert_allclose(float(cam.image.mean()), 0.1 * cam.camera_id + 0.05 * (cam.frame - 150), atol=3e-3)


def test_technicolor_bad_params(tmp_path):
    (tmp_path / "cameras_parameters.txt").write_text("header\n1 2 3\n")
    with pytest.raises(ValueError, match="12 values"):
        load_technicolor(str(tmp_path))


def test_unknown_layout(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        load_dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "absent"))
