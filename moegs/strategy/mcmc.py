"""``MCMCStrategy``: gsplat's MCMC densification with device-agnostic operations."""

from typing import Any, Dict

import torch
from gsplat.strategy import MCMCStrategy as _GsplatMCMCStrategy

from moegs.strategy import mcmc_ops


class MCMCStrategy(_GsplatMCMCStrategy):
    """gsplat 1.5.3's ``MCMCStrategy`` (same fields, state and call order) running on CPU or CUDA.

    Every ``refine_every`` steps in (``refine_start_iter``, ``refine_stop_iter``) Gaussians with opacity
    ≤ ``min_opacity`` are relocated onto live ones, then 5% more (up to ``cap_max``) are added; after every
    step the means get opacity-gated noise of scale ``lr * noise_lr``. Use it exactly like gsplat's::

        strategy = MCMCStrategy(cap_max=..., refine_start_iter=..., ...)
        state = strategy.initialize_state()
        ...  # render with moegs.rasterization, loss.backward()
        strategy.step_post_backward(params, optimizers, state, step, info, lr=means_lr)
    """

    def step_post_backward(self, params, optimizers, state: Dict[str, Any], step: int, info: Dict[str, Any],
                           lr: float) -> None:
        """After ``loss.backward()``: relocate / add Gaussians on refine steps, then perturb the means.

        Args:
            lr: learning rate of ``params["means"]`` (scales the position noise).
        """
        state["binoms"] = state["binoms"].to(params["means"].device)
        if self.refine_start_iter < step < self.refine_stop_iter and step % self.refine_every == 0:
            n_moved = self._relocate_gs(params, optimizers, state["binoms"])
            n_added = self._add_new_gs(params, optimizers, state["binoms"])
            if self.verbose:
                print(f"Step {step}: relocated {n_moved}, added {n_added}, now {len(params['means'])} Gaussians.")
        mcmc_ops.inject_noise_to_position(params, scaler=lr * self.noise_lr)

    @torch.no_grad()
    def _relocate_gs(self, params, optimizers, binoms) -> int:
        dead = torch.sigmoid(params["opacities"].detach()).reshape(-1) <= self.min_opacity
        return mcmc_ops.relocate(params, optimizers, dead, binoms, self.min_opacity)

    @torch.no_grad()
    def _add_new_gs(self, params, optimizers, binoms) -> int:
        n = len(params["means"])
        n_new = max(0, min(self.cap_max, int(1.05 * n)) - n)
        return mcmc_ops.sample_add(params, optimizers, n_new, binoms, self.min_opacity)
