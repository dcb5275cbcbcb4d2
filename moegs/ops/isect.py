"""Tile intersection and per-tile offsets (ops ``moegs::isect_tiles``, ``moegs::isect_offset_encode``).

Both produce integer bookkeeping for the rasterizer and have no gradient. Keys
and offsets equal gsplat 1.5.3's ``isect_tiles`` / ``isect_offset_encode``
bit for bit; ties (same image, tile and depth) are ordered by flatten id.
"""

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from moegs import _extension  # noqa: F401  (registers torch.ops.moegs)

_ops = torch.ops.moegs

# Image and tile ids share the 31 bits above the depth in the int64 key.
KEY_ID_BITS = 31


@torch.library.register_fake("moegs::isect_tiles")
def _isect_tiles_fake(means2d, radii, depths, image_ids, n_images, tile_size, tile_width, tile_height):
    n = torch.library.get_ctx().new_dynamic_size()
    return (
        means2d.new_empty(means2d.shape[0], dtype=torch.int32),
        means2d.new_empty(n, dtype=torch.int64),
        means2d.new_empty(n, dtype=torch.int32),
    )


@torch.library.register_fake("moegs::isect_offset_encode")
def _isect_offset_encode_fake(isect_ids, n_images, tile_width, tile_height):
    return isect_ids.new_empty(n_images, tile_height, tile_width, dtype=torch.int32)


def _check_grid(fn: str, n_images: int, tile_width: int, tile_height: int) -> None:
    for name, v, lo in (("n_images", n_images, 0), ("tile_width", tile_width, 1), ("tile_height", tile_height, 1)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__}")
        if v < lo:
            raise ValueError(f"{fn}: {name} must be >= {lo}, got {v}")
    bits = n_images.bit_length() + (tile_width * tile_height).bit_length()
    if bits > KEY_ID_BITS:
        raise ValueError(
            f"{fn}: {n_images} images of {tile_width} x {tile_height} tiles need {bits} key bits, "
            f"at most {KEY_ID_BITS} fit in the 64-bit intersection key"
        )


def _check_tensor(fn: str, name: str, x, last: Tuple[int, ...] = ()) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if last and (x.dim() < len(last) or tuple(x.shape[x.dim() - len(last):]) != last):
        raise ValueError(f"{fn}: {name} must be [..., {', '.join(map(str, last))}], got {tuple(x.shape)}")
    return x


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    image_ids: Optional[Tensor] = None,
    n_images: Optional[int] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Tiles touched by each projected Gaussian, as sorted (image, tile, depth) keys.

    An entry with both radii > 0 covers tiles ``[floor((m - r) / ts), ceil((m + r) / ts))``
    per axis, clamped to the tile grid. Key bits, high to low: image id, tile id
    (``ty * tile_width + tx``), float32 depth bits.

    Dense mode (``image_ids`` is None):
        means2d ``[..., N, 2]`` pixels, radii ``[..., N, 2]`` int32 pixels (0 = culled),
        depths ``[..., N]`` camera-space z; the leading dims are the I images.
        ``n_images`` may be given and must then equal I.
    Packed mode:
        means2d ``[nnz, 2]``, radii ``[nnz, 2]``, depths ``[nnz]``, image_ids ``[nnz]``
        (int32 or int64, in ``[0, n_images)``); ``n_images`` is required.

    Args:
        tile_size: tile side in pixels.
        tile_width, tile_height: tile grid size (``ceil(W / tile_size)``, ``ceil(H / tile_size)``).

    Returns:
        tiles_per_gauss: ``[..., N]`` (dense) or ``[nnz]`` int32 tile count of each entry.
        isect_ids: ``[n]`` int64 keys, sorted.
        flatten_ids: ``[n]`` int32 index of each intersection's entry in the flattened
            ``[I * N]`` (dense) or ``[nnz]`` (packed) inputs; ties sorted by it.
    """
    fn = "isect_tiles"
    means2d = _check_tensor(fn, "means2d", means2d, (2,))
    radii = _check_tensor(fn, "radii", radii, (2,))
    depths = _check_tensor(fn, "depths", depths)
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"{fn}: tile_size must be a positive int, got {tile_size!r}")
    if means2d.dtype not in (torch.float32, torch.float64) or depths.dtype != means2d.dtype:
        raise TypeError(
            f"{fn}: means2d and depths must share a float32/float64 dtype, got {means2d.dtype} and {depths.dtype}"
        )
    if radii.dtype != torch.int32:
        raise TypeError(f"{fn}: radii must be int32, got {radii.dtype}")
    if radii.shape != means2d.shape or depths.shape != means2d.shape[:-1]:
        raise ValueError(
            f"{fn}: expected radii like means2d {tuple(means2d.shape)} and depths "
            f"{tuple(means2d.shape[:-1])}, got {tuple(radii.shape)} and {tuple(depths.shape)}"
        )

    if image_ids is None:
        if means2d.dim() < 2:
            raise ValueError(f"{fn}: dense means2d must be [..., N, 2], got {tuple(means2d.shape)}")
        out_shape = means2d.shape[:-1]
        n_per_image = means2d.shape[-2]
        i_dense = math.prod(means2d.shape[:-2])
        if n_images is not None and n_images != i_dense:
            raise ValueError(f"{fn}: n_images={n_images} but dense inputs hold {i_dense} images")
        n_images = i_dense
        ids = torch.arange(n_images, dtype=torch.int32, device=means2d.device)
        ids = ids.repeat_interleave(n_per_image)
        _check_grid(fn, n_images, tile_width, tile_height)
    else:
        image_ids = _check_tensor(fn, "image_ids", image_ids)
        if n_images is None:
            raise ValueError(f"{fn}: packed mode (image_ids given) needs n_images")
        _check_grid(fn, n_images, tile_width, tile_height)
        if means2d.dim() != 2 or image_ids.shape != means2d.shape[:1]:
            raise ValueError(
                f"{fn}: packed inputs must be means2d [nnz, 2] and image_ids [nnz], got "
                f"{tuple(means2d.shape)} and {tuple(image_ids.shape)}"
            )
        if image_ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{fn}: image_ids must be int32 or int64, got {image_ids.dtype}")
        out_shape = means2d.shape[:1]
        ids = image_ids
        if ids.dtype == torch.int64 and ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= n_images:
                raise ValueError(f"{fn}: image_ids must lie in [0, {n_images}), got [{lo}, {hi}]")
            ids = ids.int()

    tiles_per_gauss, isect_ids, flatten_ids = _ops.isect_tiles(
        means2d.detach().reshape(-1, 2),
        radii.reshape(-1, 2),
        depths.detach().reshape(-1),
        ids,
        n_images,
        tile_size,
        tile_width,
        tile_height,
    )
    return tiles_per_gauss.reshape(out_shape), isect_ids, flatten_ids


@torch.no_grad()
def isect_offset_encode(isect_ids: Tensor, n_images: int, tile_width: int, tile_height: int) -> Tensor:
    """Start of each tile's run in the sorted intersection list.

    Args:
        isect_ids: ``[n]`` int64 sorted keys from :func:`isect_tiles`.
        n_images, tile_width, tile_height: the grid the keys were made for.

    Returns:
        ``[n_images, tile_height, tile_width]`` int32 offsets; tile t's intersections
        are ``[offsets[t], offsets[t + 1])`` in flat order, the last ending at n. An
        empty tile gets the start of the next non-empty one (or n).
    """
    fn = "isect_offset_encode"
    isect_ids = _check_tensor(fn, "isect_ids", isect_ids)
    if isect_ids.dtype != torch.int64 or isect_ids.dim() != 1:
        raise ValueError(f"{fn}: isect_ids must be a 1-D int64 tensor, got {isect_ids.dtype} {tuple(isect_ids.shape)}")
    _check_grid(fn, n_images, tile_width, tile_height)
    return _ops.isect_offset_encode(isect_ids, n_images, tile_width, tile_height)
