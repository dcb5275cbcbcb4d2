"""Per-pixel softmax blending of expert renders."""

from typing import Tuple, Union

import torch
from torch import Tensor


def blend_experts(
    expert_colors: Tensor,  # [..., K, H, W, D]
    gate_logits: Tensor,  # [..., K, H, W, 1] or [..., K, H, W]
    temperature: float = 1.0,
    return_weights: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Blend K expert images with a per-pixel softmax gate.

    ``weights = softmax(gate_logits / temperature)`` over the expert axis (dim -4 of ``expert_colors``),
    ``blended = Σ_k weights_k · expert_colors_k``. Differentiable in both inputs.

    Args:
        expert_colors: ``[..., K, H, W, D]`` per-expert images (e.g. ``ExpertRender.colors``).
        gate_logits: ``[..., K, H, W, 1]`` or ``[..., K, H, W]`` gate logits per expert and pixel.
        temperature: softmax temperature (> 0); the same value must be used in training and rendering.
        return_weights: also return the gate weights ``[..., K, H, W, 1]``.

    Returns:
        ``blended [..., H, W, D]`` (and ``weights`` when ``return_weights``).
    """
    if not isinstance(expert_colors, Tensor) or not isinstance(gate_logits, Tensor):
        raise TypeError("expert_colors and gate_logits must be tensors")
    if expert_colors.dim() < 4:
        raise ValueError(f"expert_colors must be [..., K, H, W, D], got {tuple(expert_colors.shape)}")
    if gate_logits.shape == expert_colors.shape[:-1]:
        gate_logits = gate_logits[..., None]
    if gate_logits.shape != expert_colors.shape[:-1] + (1,):
        raise ValueError(
            f"gate_logits must be [..., K, H, W, 1] or [..., K, H, W] matching expert_colors "
            f"{tuple(expert_colors.shape)}, got {tuple(gate_logits.shape)}"
        )
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    weights = torch.softmax(gate_logits / temperature, dim=-4)
    blended = (weights * expert_colors).sum(dim=-4)
    return (blended, weights) if return_weights else blended
