"""Bad input raises a clear Python exception before any kernel runs."""

import warnings

import pytest
import torch

import moegs
from moegs import rendering as rast_module
from tests.scenes import random_scene


def _args(s, W, H):
    return [s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], W, H]


@pytest.fixture
def scene():
    return random_scene(n=20, n_cams=1)


def test_wrong_shapes(scene):
    s, W, H = scene
    for key, bad in [("means", torch.rand(20, 2)), ("quats", torch.rand(20, 3)), ("scales", torch.rand(19, 3)),
                     ("opacities", torch.rand(20, 1)), ("colors", torch.rand(21, 3)),
                     ("viewmats", torch.rand(1, 3, 4)), ("Ks", torch.rand(2, 3, 3))]:
        with pytest.raises(ValueError, match=key if key != "Ks" else "Ks"):
            moegs.rasterization(*_args({**s, key: bad}, W, H))


def test_wrong_dtype_and_device(scene):
    s, W, H = scene
    with pytest.raises(TypeError, match="colors"):
        moegs.rasterization(*_args({**s, "colors": s["colors"].double()}, W, H))
    with pytest.raises(TypeError, match="means"):
        moegs.rasterization(*_args({**s, "means": s["means"].half()}, W, H))
    with pytest.raises(TypeError):
        moegs.rasterization(*_args({**s, "opacities": [0.5] * 20}, W, H))
    with pytest.raises(ValueError, match="device"):
        moegs.rasterization(*_args({k: v.to("meta") for k, v in s.items()}, W, H))


def test_nan_is_reported(scene):
    s, W, H = scene
    for key in ("means", "quats", "scales", "opacities", "colors", "viewmats"):
        bad = s[key].clone()
        bad.view(-1)[3] = float("nan")
        with pytest.raises(ValueError, match=f"{key} contains 1 NaN"):
            moegs.rasterization(*_args({**s, key: bad}, W, H))
    q = s["quats"].clone()
    q[2] = 0
    with pytest.raises(ValueError, match="zero quaternion"):
        moegs.rasterization(*_args({**s, "quats": q}, W, H))


def test_expert_ids_and_K(scene):
    s, W, H = scene
    a = _args(s, W, H)
    with pytest.raises(ValueError, match=r"expert_ids must lie in \[0, 3\)"):
        moegs.rasterize_experts(*a, torch.full((20,), 3, dtype=torch.int32), 3)
    with pytest.raises(ValueError, match=r"expert_ids must lie"):
        moegs.rasterize_experts(*a, torch.full((20,), -1, dtype=torch.int32), 3)
    with pytest.raises(TypeError, match="integer"):
        moegs.rasterize_experts(*a, torch.zeros(20), 3)
    with pytest.raises(ValueError, match="shape"):
        moegs.rasterize_experts(*a, torch.zeros(19, dtype=torch.int32), 3)
    for k in (0, 17):
        with pytest.raises(ValueError, match="num_experts"):
            moegs.rasterize_experts(*a, torch.zeros(20, dtype=torch.int32), k)


def test_image_sizes(scene):
    s, W, H = scene
    for w, h in ((0, 10), (10, 0), (-3, 10)):
        with pytest.raises(ValueError, match="must be positive"):
            moegs.rasterization(*_args(s, w, h))
    with pytest.raises(ValueError, match="too large"):
        moegs.rasterization(*_args(s, 100_000, 10))
    with pytest.raises(ValueError, match="elements"):
        moegs.rasterize_experts(*_args(s, 30_000, 30_000), torch.zeros(20, dtype=torch.int32), 4)
    with pytest.raises(TypeError, match="width"):
        moegs.rasterization(*_args(s, 10.5, 10))


def test_unsupported_options_raise(scene):
    s, W, H = scene
    for kw in ({"distributed": True}, {"camera_model": "ftheta"}, {"with_ut": True},
               {"with_eval3d": True}, {"radial_coeffs": torch.zeros(1, 6)}):
        with pytest.raises(NotImplementedError):
            moegs.rasterization(*_args(s, W, H), **kw)
    with pytest.raises(ValueError, match="render_mode"):
        moegs.rasterization(*_args(s, W, H), render_mode="XYZ")
    with pytest.raises(ValueError, match="camera_model"):
        moegs.rasterization(*_args(s, W, H), camera_model="spherical")


def test_newer_gsplat_keywords_warn_once(scene):
    s, W, H = scene
    rast_module._warned_keywords.discard("global_z_order")
    with pytest.warns(UserWarning, match="global_z_order"):
        moegs.rasterization(*_args(s, W, H), global_z_order=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        moegs.rasterization(*_args(s, W, H), global_z_order=True)
    with pytest.raises(TypeError, match="no_such_option"):
        moegs.rasterization(*_args(s, W, H), no_such_option=1)


def test_non_contiguous_inputs_accepted(scene):
    s, W, H = scene
    ref, _, _ = moegs.rasterization(*_args(s, W, H))
    nc = {k: v.transpose(-1, -2).contiguous().transpose(-1, -2) if v.dim() >= 2 else v for k, v in s.items()}
    assert not nc["means"].is_contiguous()
    out, _, _ = moegs.rasterization(*_args(nc, W, H))
    assert torch.equal(out, ref)
