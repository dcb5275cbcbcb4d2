"""Stage ops of the rasterizer, each a ``torch.ops.moegs`` op with autograd.

project -> spherical harmonics -> tile intersection -> rasterize. Pure-PyTorch
twins of every op live in :mod:`moegs.ops._reference`.
"""

from moegs.ops.covariance import covar_matrix_to_triu, covar_triu_to_matrix, quat_scale_to_covar

__all__ = ["quat_scale_to_covar", "covar_triu_to_matrix", "covar_matrix_to_triu"]
