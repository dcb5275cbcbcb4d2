"""Interfaces of other Gaussian-splatting rasterizers, implemented on moegs's ops.

- :mod:`moegs.compat.inria`: ``GaussianRasterizationSettings`` / ``GaussianRasterizer`` of
  diff-gaussian-rasterization (the original 3DGS code), also importable as
  :mod:`moegs.compat.diff_gaussian_rasterization`.
"""
