"""Densification strategies that run on any device, for gsplat-style training loops.

gsplat's ``DefaultStrategy`` already runs on CPU with :func:`moegs.rasterization` (its meta has the keys it
reads). gsplat's ``MCMCStrategy`` calls two CUDA-only gsplat ops (the relocation formula and the covariance
used by the position noise); :class:`MCMCStrategy` here is a drop-in subclass that uses moegs's CPU/CUDA
covariance op and a PyTorch relocation formula instead::

    from moegs.strategy import MCMCStrategy   # instead of: from gsplat import MCMCStrategy

The strategies need gsplat installed (``pip install moegs[test]`` pins gsplat 1.5.3); the functions in
:mod:`moegs.strategy.mcmc_ops` and :mod:`moegs.strategy.relocation` do not.
"""

from moegs.strategy.relocation import binomial_table, compute_relocation

__all__ = ["MCMCStrategy", "binomial_table", "compute_relocation"]


def __getattr__(name):
    if name == "MCMCStrategy":  # imports gsplat only when asked for
        from moegs.strategy.mcmc import MCMCStrategy

        return MCMCStrategy
    raise AttributeError(f"module 'moegs.strategy' has no attribute {name!r}")
