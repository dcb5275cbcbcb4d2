"""``from moegs.compat.diff_gaussian_rasterization import GaussianRasterizationSettings, GaussianRasterizer``.

The same objects as :mod:`moegs.compat.inria`, under the module name of the original package.
"""

from moegs.compat.inria import GaussianRasterizationSettings, GaussianRasterizer, rasterize_gaussians

__all__ = ["GaussianRasterizationSettings", "GaussianRasterizer", "rasterize_gaussians"]
