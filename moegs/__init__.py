"""moegs: a differentiable Gaussian-splatting rasterizer that renders a mixture of experts in one pass."""

from moegs import ops  # noqa: F401
from moegs._extension import has_cuda_kernels

__version__ = "0.1.0"
__all__ = ["ops", "has_cuda_kernels", "__version__"]
