"""Parameter surgery of the MCMC strategy (relocate, add, perturb), device-agnostic.

``params`` is a dict (or ``ParameterDict``) of ``[N, ...]`` tensors with at least ``means [N, 3]``,
``scales [N, 3]`` (log), ``quats [N, 4]`` and ``opacities [N]`` or ``[N, 1]`` (logit);
``optimizers[name]`` optimises ``params[name]`` alone.
"""

from typing import Callable, Dict, Union

import numpy as np
import torch
from torch import Tensor

from moegs.ops.covariance import covar_triu_to_matrix, quat_scale_to_covar
from moegs.strategy.relocation import compute_relocation

Params = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]

_TORCH_MULTINOMIAL_MAX = 1 << 24  # torch.multinomial's category limit


def sample_indices(weights: Tensor, n: int) -> Tensor:
    """``n`` indices drawn with replacement, proportional to the non-negative ``weights [M]``."""
    if weights.numel() <= _TORCH_MULTINOMIAL_MAX:
        return torch.multinomial(weights, n, replacement=True)
    p = weights.detach().double().cpu().numpy()
    idx = np.random.choice(len(p), size=n, p=p / p.sum(), replace=True)
    return torch.from_numpy(idx).to(weights.device)


def replace_params(
    params: Params,
    optimizers: Dict[str, torch.optim.Optimizer],
    new_param: Callable[[str, Tensor], Tensor],
    new_state: Callable[[str, Tensor], Tensor],
) -> None:
    """Replaces every ``params[name]`` by ``new_param(name, p)`` and maps its optimiser's per-element state
    (e.g. Adam moments, not ``step``) through ``new_state(key, v)``."""
    for name in list(params.keys()):
        old = params[name]
        new = new_param(name, old)
        params[name] = new
        if name not in optimizers:
            if old.requires_grad:
                raise ValueError(f"parameter {name!r} is trainable but has no optimizer")
            continue
        opt = optimizers[name]
        state = opt.state.pop(old, {})
        for key in list(state):
            if key != "step" and isinstance(state[key], Tensor):
                state[key] = new_state(key, state[key])
        for group in opt.param_groups:
            group["params"] = [new]
        opt.state[new] = state


def check_params(params: Params) -> int:
    """Checks the keys and row counts the MCMC operations rely on; returns N."""
    for key in ("means", "scales", "quats", "opacities"):
        if key not in params:
            raise ValueError(f"params has no {key!r} (needs means, scales, quats, opacities)")
    n = params["means"].shape[0]
    for key, p in params.items():
        if p.dim() == 0 or p.shape[0] != n:
            raise ValueError(f"params[{key!r}] has shape {tuple(p.shape)}, expected {n} rows like means")
    if params["opacities"].numel() != n:
        raise ValueError(f"opacities must be [N] or [N, 1], got {tuple(params['opacities'].shape)}")
    return n


def _new_copies(params: Params, sampled: Tensor, binoms: Tensor, min_opacity: float):
    """Opacity logits and log-scales for the sources ``sampled [M]`` once each is shared by its copies."""
    opac = torch.sigmoid(params["opacities"].detach()).reshape(-1)
    counts = torch.bincount(sampled, minlength=opac.shape[0])[sampled] + 1  # source + its new copies
    new_opac, new_scales = compute_relocation(
        opac[sampled], torch.exp(params["scales"].detach())[sampled], counts, binoms
    )
    eps = torch.finfo(torch.float32).eps
    new_opac = new_opac.clamp(min=min_opacity, max=1.0 - eps)
    return torch.logit(new_opac), torch.log(new_scales)


def _set_copies(name: str, p: Tensor, sampled: Tensor, opac_logit: Tensor, log_scales: Tensor) -> None:
    if name == "opacities":
        p[sampled] = opac_logit.reshape(-1, *p.shape[1:])
    elif name == "scales":
        p[sampled] = log_scales


@torch.no_grad()
def relocate(params: Params, optimizers: Dict[str, torch.optim.Optimizer], dead: Tensor, binoms: Tensor,
             min_opacity: float = 0.005) -> int:
    """Moves the ``dead [N]`` (bool) Gaussians onto live ones drawn by opacity; the sources and their copies
    share the source's opacity and footprint (:func:`compute_relocation`). Returns how many moved."""
    n = check_params(params)
    if dead.shape != (n,) or dead.dtype != torch.bool:
        raise ValueError(f"dead must be a bool mask of shape {(n,)}, got {dead.dtype} {tuple(dead.shape)}")
    dead_idx = dead.nonzero(as_tuple=True)[0]
    alive_idx = (~dead).nonzero(as_tuple=True)[0]
    if len(dead_idx) == 0 or len(alive_idx) == 0:
        return 0
    opac = torch.sigmoid(params["opacities"].detach()).reshape(-1)
    sampled = alive_idx[sample_indices(opac[alive_idx], len(dead_idx))]
    opac_logit, log_scales = _new_copies(params, sampled, binoms, min_opacity)

    def new_param(name, p):
        p = p.detach().clone()
        _set_copies(name, p, sampled, opac_logit, log_scales)
        p[dead_idx] = p[sampled]
        return torch.nn.Parameter(p, requires_grad=params[name].requires_grad)

    def new_state(key, v):
        v = v.clone()
        v[sampled] = 0
        return v

    replace_params(params, optimizers, new_param, new_state)
    return len(dead_idx)


@torch.no_grad()
def sample_add(params: Params, optimizers: Dict[str, torch.optim.Optimizer], n: int, binoms: Tensor,
               min_opacity: float = 0.005) -> int:
    """Appends ``n`` copies of Gaussians drawn by opacity (sources re-weighted as in :func:`relocate`)."""
    check_params(params)
    if n <= 0:
        return 0
    opac = torch.sigmoid(params["opacities"].detach()).reshape(-1)
    sampled = sample_indices(opac, n)
    opac_logit, log_scales = _new_copies(params, sampled, binoms, min_opacity)

    def new_param(name, p):
        p = p.detach().clone()
        _set_copies(name, p, sampled, opac_logit, log_scales)
        return torch.nn.Parameter(torch.cat([p, p[sampled]]), requires_grad=params[name].requires_grad)

    def new_state(key, v):
        return torch.cat([v, v.new_zeros((n, *v.shape[1:]))])

    replace_params(params, optimizers, new_param, new_state)
    return n


def position_noise(params: Params, scaler: float, noise: Tensor = None) -> Tensor:
    """``[N, 3]`` MCMC position noise Σ ε · σ(100 (1 - o - 0.995)) · scaler, Σ = R S² Rᵀ from quats and
    exp(scales), ε ~ N(0, I) (or the given ``noise [N, 3]``): transparent Gaussians explore, opaque ones stay."""
    check_params(params)
    opac = torch.sigmoid(params["opacities"].detach()).reshape(-1)
    covars = covar_triu_to_matrix(
        quat_scale_to_covar(params["quats"].detach(), torch.exp(params["scales"].detach()))
    )  # [N, 3, 3]
    eps = torch.randn_like(params["means"]) if noise is None else noise
    gate = torch.sigmoid(100.0 * ((1.0 - opac) - 0.995))
    return torch.einsum("nij,nj->ni", covars, eps * gate[:, None] * scaler)


@torch.no_grad()
def inject_noise_to_position(params: Params, scaler: float) -> None:
    """Adds :func:`position_noise` to ``params["means"]`` in place."""
    params["means"].add_(position_noise(params, scaler))
