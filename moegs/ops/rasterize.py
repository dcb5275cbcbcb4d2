"""Single-pass multi-expert rasterization (ops ``moegs::rasterize_experts_{fwd,bwd}``).

Every Gaussian carries an expert id. One front-to-back walk per pixel keeps a
separate transmittance per expert, and a Gaussian composites only into its own
expert's buffers; the walk ends once every expert is saturated. With one expert
this is gsplat 1.5.3's ``rasterize_to_pixels`` (3DGS).
"""

import torch
from torch import Tensor

from moegs import _extension  # noqa: F401  (registers torch.ops.moegs)

_ops = torch.ops.moegs

MAX_EXPERTS = 16

@torch.library.register_fake("moegs::rasterize_experts_fwd")
def _rasterize_fwd_fake(means2d, conics, opacities, features, expert_ids, backgrounds,
                        isect_offsets, flatten_ids, width, height, tile_size, num_experts,
                        alpha_max, min_transmittance, pixel_offset, absgrad):
    shape = (isect_offsets.shape[0], num_experts, height, width)  # [I, K, H, W]
    return (
        features.new_empty(*shape, features.shape[-1]),
        features.new_empty(*shape, 1),
        features.new_empty(shape, dtype=torch.int32),
    )


@torch.library.register_fake("moegs::rasterize_experts_bwd")
def _rasterize_bwd_fake(means2d, conics, opacities, features, expert_ids, backgrounds,
                        isect_offsets, flatten_ids, width, height, tile_size, num_experts,
                        alpha_max, min_transmittance, pixel_offset, alphas, last_ids, v_render,
                        v_alphas, absgrad):
    return (
        torch.empty_like(means2d),
        torch.empty_like(conics),
        torch.empty_like(opacities),
        torch.empty_like(features),
        torch.empty_like(backgrounds),
        torch.empty_like(means2d) if absgrad else means2d.new_empty(0),
    )


def _rasterize_setup_context(ctx, inputs, output):
    _, alphas, last_ids = output
    ctx.save_for_backward(*inputs[:8], alphas, last_ids)
    ctx.scalars = inputs[8:15]
    ctx.absgrad = bool(inputs[15])
    # gsplat's densification strategies read meta["means2d"].absgrad after
    # backward: keep the caller's tensor object to set the attribute on.
    ctx.means2d = inputs[0] if ctx.absgrad else None


def _rasterize_backward(ctx, v_render, v_alphas, _v_last_ids):
    saved = ctx.saved_tensors
    inputs, alphas, last_ids = saved[:8], saved[8], saved[9]
    if v_render is None:
        v_render = alphas.new_zeros(last_ids.shape + inputs[3].shape[-1:])
    if v_alphas is None:
        v_alphas = torch.zeros_like(alphas)
    v_means2d, v_conics, v_opacities, v_features, v_backgrounds, v_means2d_abs = (
        _ops.rasterize_experts_bwd(*inputs, *ctx.scalars, alphas, last_ids,
                                   v_render.contiguous(), v_alphas.contiguous(), ctx.absgrad)
    )
    if ctx.absgrad:
        ctx.means2d.absgrad = v_means2d_abs
    need = ctx.needs_input_grad
    grads = [v_means2d, v_conics, v_opacities, v_features, None, v_backgrounds]
    grads = [g if g is not None and need[i] else None for i, g in enumerate(grads)]
    return (*grads, *([None] * 10))


torch.library.register_autograd(
    "moegs::rasterize_experts_fwd", _rasterize_backward, setup_context=_rasterize_setup_context
)


def _check_args(means2d, conics, opacities, features, expert_ids, backgrounds, isect_offsets,
                flatten_ids, width, height, tile_size, num_experts):
    tensors = dict(means2d=means2d, conics=conics, opacities=opacities, features=features,
                   expert_ids=expert_ids, backgrounds=backgrounds, isect_offsets=isect_offsets,
                   flatten_ids=flatten_ids)
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"rasterize_to_pixels_experts: {name} must be a Tensor, got {type(t)}")
    if means2d.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"rasterize_to_pixels_experts: means2d must be float32 or float64, "
                        f"got {means2d.dtype}")
    for name in ("conics", "opacities", "features", "backgrounds"):
        if tensors[name].dtype != means2d.dtype:
            raise TypeError(f"rasterize_to_pixels_experts: {name} must be {means2d.dtype} like "
                            f"means2d, got {tensors[name].dtype}")
    for name in ("expert_ids", "isect_offsets", "flatten_ids"):
        if tensors[name].dtype != torch.int32:
            raise TypeError(f"rasterize_to_pixels_experts: {name} must be int32, "
                            f"got {tensors[name].dtype}")
    for name, value in dict(width=width, height=height, tile_size=tile_size,
                            num_experts=num_experts).items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"rasterize_to_pixels_experts: {name} must be a positive int, "
                             f"got {value!r}")
    if num_experts > MAX_EXPERTS:
        raise ValueError(f"rasterize_to_pixels_experts: num_experts must be in [1, {MAX_EXPERTS}],"
                         f" got {num_experts}")

    if means2d.dim() < 1 or means2d.shape[-1] != 2:
        raise ValueError(f"rasterize_to_pixels_experts: means2d must be [..., 2], "
                         f"got {tuple(means2d.shape)}")
    lead = tuple(means2d.shape[:-1])
    expected = dict(conics=lead + (3,), opacities=lead, expert_ids=lead)
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"rasterize_to_pixels_experts: {name} must be {list(shape)} to match "
                             f"means2d {tuple(means2d.shape)}, got {tuple(tensors[name].shape)}")
    if (features.dim() != means2d.dim() or tuple(features.shape[:-1]) != lead
            or features.shape[-1] < 1):
        raise ValueError(f"rasterize_to_pixels_experts: features must be [*{list(lead)}, F] with "
                         f"F >= 1, got {tuple(features.shape)}")
    tiles = ((height + tile_size - 1) // tile_size, (width + tile_size - 1) // tile_size)
    if isect_offsets.dim() != 3 or tuple(isect_offsets.shape[1:]) != tiles:
        raise ValueError(f"rasterize_to_pixels_experts: isect_offsets must be [I, {tiles[0]}, "
                         f"{tiles[1]}] for a {width} x {height} image with tile_size {tile_size}, "
                         f"got {tuple(isect_offsets.shape)}")
    bg_shape = (isect_offsets.shape[0], num_experts, features.shape[-1])
    if tuple(backgrounds.shape) != bg_shape:
        raise ValueError(f"rasterize_to_pixels_experts: backgrounds must be [I, K, F] = "
                         f"{list(bg_shape)}, got {tuple(backgrounds.shape)}")
    if flatten_ids.dim() != 1:
        raise ValueError(f"rasterize_to_pixels_experts: flatten_ids must be [n_isects], "
                         f"got {tuple(flatten_ids.shape)}")


def rasterize_to_pixels_experts(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    expert_ids: Tensor,
    backgrounds: Tensor,
    isect_offsets: Tensor,
    flatten_ids: Tensor,
    width: int,
    height: int,
    tile_size: int,
    num_experts: int,
    absgrad: bool = False,
    alpha_max: float = 0.999,
    min_transmittance: float = 1e-4,
    pixel_offset: float = 0.5,
):
    """Renders K experts in one front-to-back pass, one transmittance per expert.

    The per-Gaussian inputs share one leading shape ``[...]`` (for instance the
    dense ``[I, N]`` projection outputs), flattened inside to M entries that
    ``flatten_ids`` indexes. Float inputs are all float32 or all float64.

    Args:
        means2d: ``[..., 2]`` projected centres, pixels.
        conics: ``[..., 3]`` (a, b, c), upper triangle of the inverse 2D covariance, 1/pixels^2.
        opacities: ``[...]`` in [0, 1].
        features: ``[..., F]`` channels blended per expert (colour, depth, router...), F >= 1.
        expert_ids: ``[...]`` int32 expert of each Gaussian, in [0, num_experts).
        backgrounds: ``[I, K, F]`` composited behind each expert's Gaussians.
        isect_offsets: ``[I, TH, TW]`` int32 start of each tile's run in ``flatten_ids``
            (TH = ceil(height / tile_size), TW = ceil(width / tile_size)).
        flatten_ids: ``[n_isects]`` int32 indices into the M entries, sorted front to back
            within each tile's run.
        width, height: image size, pixels. tile_size: tile side, pixels.
        num_experts: K, 1 to 16.
        absgrad: also compute, per Gaussian, the sum over pixels of the absolute per-pixel
            gradient of ``means2d`` ([..., 2]) and store it as ``means2d.absgrad`` on backward.
        alpha_max: opacity clamp. min_transmittance: an expert stops before its transmittance
            would fall to or below this. pixel_offset: pixel (x, y) is sampled at
            (x + pixel_offset, y + pixel_offset).

    Returns:
        ``render [I, K, H, W, F]`` (features blended over the background) and
        ``alphas [I, K, H, W, 1]`` (1 - final transmittance), per expert.
    """
    _check_args(means2d, conics, opacities, features, expert_ids, backgrounds, isect_offsets,
                flatten_ids, width, height, tile_size, num_experts)
    render, alphas, _ = _ops.rasterize_experts_fwd(
        means2d, conics, opacities, features, expert_ids, backgrounds, isect_offsets,
        flatten_ids, width, height, tile_size, num_experts, float(alpha_max),
        float(min_transmittance), float(pixel_offset), bool(absgrad))
    return render, alphas
