"""moegs: a differentiable Gaussian-splatting rasterizer that renders a mixture of experts in one pass."""

from moegs import ops  # noqa: F401
from moegs._extension import has_cuda_kernels
from moegs.blend import blend_experts
from moegs.multi_expert import ExpertRender, rasterize_experts
from moegs.rendering import rasterization

__version__ = "0.1.0"
__all__ = [
    "rasterization",
    "rasterize_experts",
    "ExpertRender",
    "blend_experts",
    "ops",
    "has_cuda_kernels",
    "__version__",
]
