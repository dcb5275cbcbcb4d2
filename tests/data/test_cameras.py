import math

import numpy as np
import pytest
import torch

from moegs.data.cameras import (
    downscale_image,
    intrinsics_from_fov,
    opengl_c2w_to_opencv_w2c,
    quat_wxyz_to_rotmat,
    scale_intrinsics,
    subsample_indices,
)


def test_fov_intrinsics_put_the_field_edge_on_the_image_edge():
    K = intrinsics_from_fov(math.radians(60), 40, 30)
    # a ray at half the horizontal FOV hits u = W (right edge)
    d = np.array([math.tan(math.radians(30)), 0.0, 1.0])
    u = K.double().numpy() @ d
    assert u[0] / u[2] == pytest.approx(40.0) and u[1] / u[2] == pytest.approx(15.0)
    np.testing.assert_allclose(scale_intrinsics(K, 0.5).numpy(), intrinsics_from_fov(math.radians(60), 20, 15).numpy(), rtol=1e-6)
    with pytest.raises(ValueError):
        intrinsics_from_fov(4.0, 10, 10)


def test_blender_pose_sign_trap():
    """A Blender camera one unit along +x of the origin, looking back at it with z up."""
    c2w = np.array([[0, 0, 1, 1.0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # x_cam=+y, y_cam=+z, back=+x
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    p = w2c[:3, :3] @ np.array([0.0, 0.5, 0.0]) + w2c[:3, 3]  # a point at world +y
    np.testing.assert_allclose(p, [0.5, 0.0, 1.0])  # right of centre, in front, 1 unit away


def test_quaternion():
    R = quat_wxyz_to_rotmat([math.cos(0.5), 0, 0, math.sin(0.5)])  # 1 rad about z
    np.testing.assert_allclose(R, [[math.cos(1), -math.sin(1), 0], [math.sin(1), math.cos(1), 0], [0, 0, 1]], atol=1e-12)
    with pytest.raises(ValueError):
        quat_wxyz_to_rotmat([0, 0, 0, 0])


def test_downscale_and_subsample():
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    np.testing.assert_allclose(downscale_image(img, 2)[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    assert subsample_indices(10, 4) == [0, 3, 6, 9]
    assert subsample_indices(3, None) == [0, 1, 2]
    with pytest.raises(ValueError):
        downscale_image(img, 0)
