"""The built-in procedural scene: determinism, depth/label consistency, D-NeRF read-back."""

import filecmp
import os

import numpy as np
import pytest
import torch

import moegs.data.procedural as P
from moegs.data import MOTION_CLASSES, ProceduralSceneConfig, load_dnerf, procedural_scene, write_procedural_scene

SMALL = dict(width=24, height=20, n_train_cameras=4, n_test_cameras=1, n_frames=3, supersample=1, n_points=200)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("proc"))
    write_procedural_scene(d, ProceduralSceneConfig(**SMALL), progress=False)
    return d


def test_read_back_through_dnerf(scene_dir):
    s = load_dnerf(scene_dir)
    assert len(s.train) == 4 * 3 and len(s.test) == 1 * 3
    assert s.label_names == MOTION_CLASSES
    assert sorted({c.time for c in s.train}) == pytest.approx([0, 0.5, 1])
    assert {c.camera_id for c in s.train} == {0, 1, 2, 3}
    for c in s.train + s.test:
        assert c.image.shape == (20, 24, 3) and c.depth.shape == (20, 24) and c.labels.dtype == torch.int64
        assert (c.depth > 0).all()  # the room closes every ray
    assert s.points.shape == (200, 3) and s.point_colors.shape == (200, 3)
    assert np.isfinite(s.points.numpy()).all()


def test_deterministic_by_seed(scene_dir, tmp_path):
    again = str(tmp_path / "again")
    write_procedural_scene(again, ProceduralSceneConfig(**SMALL), progress=False)
    for rel in ("train/c01_f002.png", "depth/test/c00_f001.npy", "points.npy", "transforms_train.json"):
        assert filecmp.cmp(os.path.join(scene_dir, rel), os.path.join(again, rel), shallow=False), rel
    other = str(tmp_path / "other")
    write_procedural_scene(other, ProceduralSceneConfig(**{**SMALL, "seed": 3}), progress=False)
    assert not filecmp.cmp(os.path.join(scene_dir, "train/c01_f002.png"), os.path.join(other, "train/c01_f002.png"), shallow=False)


def test_depth_consistent_with_surfaces(scene_dir):
    """Back-project every pixel centre with its depth and check it lies on the labelled surface."""
    s = load_dnerf(scene_dir)
    lo, hi = np.array(P.ROOM_MIN), np.array(P.ROOM_MAX)
    checked = set()
    for cam in s.train:
        K = cam.K.double().numpy()
        vm = cam.viewmat.double().numpy()
        v, u = np.mgrid[0 : cam.height, 0 : cam.width] + 0.5
        z = cam.depth.double().numpy()
        xc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1).reshape(-1, 3)
        world = (xc - vm[:3, 3]) @ vm[:3, :3]
        lab = cam.labels.numpy().reshape(-1)
        room = world[lab == 0]
        gap = np.minimum(np.abs(room - lo), np.abs(room - hi)).min(-1)
        assert np.all(gap < 1e-3)
        blob = world[lab == 3]
        if len(blob):
            sdf = P._blob_sdf(torch.tensor(blob), torch.tensor(P.BLOB_CENTER, dtype=torch.float64), cam.time)
            assert sdf.abs().max() < 2e-3
        cube = world[lab == 1]
        if len(cube):
            R = P._rot_axis_angle((0.3, 0.2, 1.0), 3.0 * np.pi * cam.time).numpy()
            local = (cube - np.array(P.CUBE_CENTER)) @ R
            assert np.abs(np.abs(local).max(-1) - P.CUBE_HALF).max() < 1e-3
        checked |= set(np.unique(lab).tolist())
    assert {0, 1, 3} <= checked


def test_labels_cover_all_classes():
    """At the default geometry every motion class is visible in the training views."""
    cfg = ProceduralSceneConfig(width=32, height=32, supersample=1)
    K = P._intrinsics(cfg)
    train, _ = P.ring_cameras(cfg)
    seen = set()
    for c2w in train:
        for t in (0.0, 0.5):
            _, _, labels = P.render_view(c2w, K, t, cfg)
            seen |= set(np.unique(labels).tolist())
    assert seen == set(range(len(MOTION_CLASSES)))


def test_regions_move_as_described():
    """Static pixels never change over time; flicker pixels (fixed geometry) change colour."""
    cfg = ProceduralSceneConfig(width=32, height=32, supersample=1)
    K = P._intrinsics(cfg)
    flicker_seen = 0
    for c2w in P.ring_cameras(cfg)[0][:4]:
        renders = [P.render_view(c2w, K, t, cfg) for t in np.linspace(0, 1, 5)]
        labels = np.stack([r[2] for r in renders])
        rgb = np.stack([r[0] for r in renders])
        always_static = (labels == 0).all(0)
        assert always_static.sum() > 100
        assert np.abs(rgb[:, always_static] - rgb[0, always_static]).max() < 1e-6
        flicker_always = (labels == 4).all(0)
        if flicker_always.any():
            assert np.abs(rgb[:, flicker_always] - rgb[0, flicker_always]).max() > 0.1
            flicker_seen += 1
    assert flicker_seen > 0


def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match="n_frames"):
        write_procedural_scene(str(tmp_path), ProceduralSceneConfig(n_frames=1))
    with pytest.raises(ValueError, match="width"):
        write_procedural_scene(str(tmp_path), ProceduralSceneConfig(width=0))
    with pytest.raises(TypeError):
        write_procedural_scene(str(tmp_path), {"width": 8})


def test_procedural_scene_cache(scene_dir, tmp_path):
    cfg = ProceduralSceneConfig(**SMALL)
    stamp = os.path.getmtime(os.path.join(scene_dir, "points.npy"))
    s = procedural_scene(scene_dir, cfg, progress=False)  # same config: no re-render
    assert os.path.getmtime(os.path.join(scene_dir, "points.npy")) == stamp and len(s.train) == 12
    d = str(tmp_path / "p")
    s2 = procedural_scene(d, ProceduralSceneConfig(**{**SMALL, "n_frames": 2}), progress=False)
    assert len(s2.train) == 8
    s3 = procedural_scene(d, cfg, progress=False)  # config changed: re-rendered
    assert len(s3.train) == 12


def test_temporal_points_lie_on_the_surfaces_of_their_frame(tmp_path):
    """Without jitter, every time-tagged point must sit on a visible surface of its own frame: projected into
    some training camera at that time it lands on a pixel whose depth equals its camera-z."""
    d = str(tmp_path / "tp")
    write_procedural_scene(d, ProceduralSceneConfig(**{**SMALL, "point_noise": 0.0, "n_temporal_points": 40}),
                           progress=False)
    s = load_dnerf(d)
    tp = s.temporal_points
    assert tp.shape == (200 + 2 * 40, 7)  # frame 0 = points.npy, then 40 per later frame
    assert torch.equal(tp[:200, :6], torch.cat([s.points, s.point_colors], 1))
    assert sorted(set(tp[:, 6].tolist())) == pytest.approx([0, 0.5, 1])
    assert int((tp[:, 6] == 0.5).sum()) == 40 and int((tp[:, 6] == 1.0).sum()) == 40
    for p in tp[200:].double():
        best = float("inf")
        for cam in (c for c in s.train if abs(c.time - float(p[6])) < 1e-6):
            xc = cam.viewmat.double()[:3, :3] @ p[:3] + cam.viewmat.double()[:3, 3]
            u = float(cam.K[0, 0] * xc[0] / xc[2] + cam.K[0, 2])
            v = float(cam.K[1, 1] * xc[1] / xc[2] + cam.K[1, 2])
            if 0 <= u < cam.width and 0 <= v < cam.height:
                best = min(best, abs(float(cam.depth[int(v), int(u)]) - float(xc[2])))
        assert best < 1e-3, f"point {p.tolist()} is on no surface of its frame (depth gap {best})"


@pytest.mark.parametrize("bad", [np.zeros((5, 6)), np.full((3, 7), np.nan), np.concatenate([np.zeros((2, 6)), [[0.5], [1.5]]], 1)])
def test_corrupt_temporal_points_raise(scene_dir, tmp_path, bad):
    import shutil

    d = str(tmp_path / "copy")
    shutil.copytree(scene_dir, d)
    np.save(os.path.join(d, "points_time.npy"), bad)
    with pytest.raises(ValueError, match="points_time"):
        load_dnerf(d)
    with open(os.path.join(d, "points_time.npy"), "wb") as f:
        f.write(b"not an npy file")
    with pytest.raises(ValueError, match="points_time"):
        load_dnerf(d)
