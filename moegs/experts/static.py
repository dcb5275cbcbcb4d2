"""Static expert: time-invariant 3D Gaussian splatting (the same Gaussians at every time)."""

from __future__ import annotations

from .base import DeformationExpert, GaussianSet


class StaticExpert(DeformationExpert):
    """Plain 3DGS: ``forward(t)`` activates the canonical Gaussians and ignores ``t``.

    Trained on all frames it converges to a time average, which fits static background; inside a mixture it
    is the router's background prior. Learning rates: the 3DGS defaults (``DeformationExpert.splat_lrs``).
    """

    name = "static"

    def deform(self, t: float) -> GaussianSet:
        s = self.splats
        return self.activate(s["means"], s["quats"], s["scales"], s["opacities"])
