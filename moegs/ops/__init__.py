"""Stage ops of the rasterizer, each a ``torch.ops.moegs`` op with autograd and a fake kernel.

covariance -> projection -> spherical harmonics -> tile intersection ->
single-pass multi-expert rasterization. Pure-PyTorch twins of every op live in
:mod:`moegs.ops._reference`.
"""

from moegs.ops.covariance import covar_matrix_to_triu, covar_triu_to_matrix, quat_scale_to_covar
from moegs.ops.isect import isect_offset_encode, isect_tiles
from moegs.ops.projection import project
from moegs.ops.rasterize import rasterize_to_pixels_experts
from moegs.ops.sh import spherical_harmonics

__all__ = [
    "quat_scale_to_covar",
    "covar_triu_to_matrix",
    "covar_matrix_to_triu",
    "project",
    "spherical_harmonics",
    "isect_tiles",
    "isect_offset_encode",
    "rasterize_to_pixels_experts",
]
