"""The volume-aware pixel router: per-Gaussian gate features splatted with the colours, a per-pixel MLP, softmax.

Every Gaussian of every expert carries router parameters ``(w, w_dir, w_time)`` (``expert.splats["router"]``,
initialised ``(0.9, 0.9, 0)``). At time t the per-Gaussian feature ``[w, w_dir, t·w_time]`` is alpha-blended in
the same single pass as the expert colours (router channels of :func:`moegs.rasterize_experts`, background 1 so
an uncovered pixel gets identical features from every expert). Per pixel u and expert k:

    logit_k(u) = W_k(u) + Φ([Wdir_k(u), Wtime_k(u), ray_origin(u), ray_direction(u)])
    gate_k(u)  = softmax_k(logit_k(u) / temperature)

Φ is one bias-free MLP 8→6→3→1 with ReLU, shared by all experts; the temperature is one number used
identically in training and rendering.
"""

from typing import Tuple

import torch
from torch import Tensor, nn

ROUTER_INIT = (0.9, 0.9, 0.0)
ROUTER_CHANNELS = 3


def router_features(router_params: Tensor, t: float) -> Tensor:
    """Per-Gaussian splatted router features ``[w, w_dir, t·w_time]``.

    Args:
        router_params: ``[N, 3]`` raw router parameters (w, w_dir, w_time).
        t: normalised time in [0, 1].

    Returns:
        ``[N, 3]`` features, differentiable in ``router_params``.
    """
    if not isinstance(router_params, Tensor) or router_params.dim() != 2 or router_params.shape[1] != 3:
        raise ValueError(f"router parameters must be an [N, 3] tensor, got {getattr(router_params, 'shape', None)}")
    scale = torch.tensor([1.0, 1.0, float(t)], dtype=router_params.dtype, device=router_params.device)
    return router_params * scale


def pixel_rays(viewmat: Tensor, K: Tensor, width: int, height: int) -> Tuple[Tensor, Tensor]:
    """World-space ray origin and unit direction through every pixel centre (OpenCV camera axes).

    Args:
        viewmat: ``[4, 4]`` world-to-camera matrix.
        K: ``[3, 3]`` intrinsics in pixels.
        width, height: image size in pixels.

    Returns:
        ``origins [H, W, 3]`` (the camera centre, world units) and ``directions [H, W, 3]`` (unit length).
    """
    if viewmat.shape != (4, 4) or K.shape != (3, 3):
        raise ValueError(f"viewmat must be [4, 4] and K [3, 3], got {tuple(viewmat.shape)} and {tuple(K.shape)}")
    dtype = viewmat.dtype
    R = viewmat[:3, :3]
    origin = -R.T @ viewmat[:3, 3]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype) + 0.5, torch.arange(width, dtype=dtype) + 0.5, indexing="ij"
    )
    d_cam = torch.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], torch.ones_like(xs)], dim=-1)
    d = d_cam @ R  # rows of R are the camera axes in world coordinates: world dir = R^T d_cam
    d = d / d.norm(dim=-1, keepdim=True)
    return origin.expand(height, width, 3), d


class RouterMLP(nn.Module):
    """Φ: the shared, bias-free per-pixel MLP 8 → 6 → 3 → 1 with ReLU between layers (69 weights)."""

    SIZES = (8, 6, 3, 1)

    def __init__(self):
        super().__init__()
        s = self.SIZES
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(s[:-1], s[1:]))

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., 8]`` → ``[..., 1]``."""
        if x.shape[-1] != self.SIZES[0]:
            raise ValueError(f"router MLP input must have {self.SIZES[0]} channels, got {tuple(x.shape)}")
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class PixelRouter(nn.Module):
    """Turns splatted router maps into per-pixel expert logits and gates.

    Args:
        temperature: softmax temperature (> 0), the same in training and rendering.
        seed: initialisation seed of Φ's weights (fixed for reproducibility).
    """

    def __init__(self, temperature: float = 0.1, seed: int = 0):
        super().__init__()
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.mlp = RouterMLP()
        torch.random.set_rng_state(state)

    def logits(self, router_maps: Tensor, viewmat: Tensor, K: Tensor) -> Tensor:
        """Per-expert per-pixel logits.

        Args:
            router_maps: ``[K, H, W, 3]`` splatted ``[w, w_dir, t·w_time]`` maps of the K experts.
            viewmat: ``[4, 4]`` world-to-camera matrix; K: ``[3, 3]`` intrinsics.

        Returns:
            ``[K, H, W]`` logits (before the temperature).
        """
        if router_maps.dim() != 4 or router_maps.shape[-1] != ROUTER_CHANNELS:
            raise ValueError(f"router_maps must be [K, H, W, 3], got {tuple(router_maps.shape)}")
        n_exp, H, W, _ = router_maps.shape
        o, d = pixel_rays(viewmat.to(router_maps.dtype), K.to(router_maps.dtype), W, H)
        rays = torch.cat([o, d], dim=-1).expand(n_exp, H, W, 6)
        x = torch.cat([router_maps[..., 1:3], rays], dim=-1)  # [K, H, W, 8]
        return router_maps[..., 0] + self.mlp(x)[..., 0]

    def gates(self, logits: Tensor) -> Tensor:
        """``[K, H, W]`` logits → ``[K, H, W]`` softmax gates over the expert axis."""
        return torch.softmax(logits / self.temperature, dim=0)

    def forward(self, router_maps: Tensor, viewmat: Tensor, K: Tensor) -> Tuple[Tensor, Tensor]:
        """Returns ``(gates [K, H, W], logits [K, H, W])``."""
        logits = self.logits(router_maps, viewmat, K)
        return self.gates(logits), logits
