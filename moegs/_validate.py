"""Input checks for the public rendering functions.

Every check raises a ``ValueError`` / ``TypeError`` naming the argument, so a
bad call fails in Python with a clear message before any kernel runs.

Checks of tensor *values* (NaN / inf, id ranges, zero quaternions) read data
back to Python; under ``torch.compile`` they are skipped (see
:func:`checking_values`) so that the traced graph has no data-dependent
branches. Shape, dtype and device checks always run.
"""

from typing import Optional, Sequence

import torch
from torch import Tensor

from moegs._extension import has_cuda_kernels

MAX_EXPERTS = 16
MAX_IMAGE_SIDE = 1 << 15  # tile ids stay small; isect_tiles checks that (image, tile) bits fit in 31
MAX_OUTPUT_ELEMENTS = (1 << 31) - 1  # int32 pixel indexing in the kernels


def check_tensor(name: str, x, dims: Optional[int] = None, last: Sequence[int] = ()) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dims is not None and x.dim() < dims:
        raise ValueError(f"{name} must have at least {dims} dims, got shape {tuple(x.shape)}")
    if last and tuple(x.shape[len(x.shape) - len(last):]) != tuple(last):
        want = ", ".join(["..."] + [str(s) for s in last])
        raise ValueError(f"{name} must have shape [{want}], got {tuple(x.shape)}")
    return x


def check_float(name: str, x: Tensor, dtype: torch.dtype, device: torch.device) -> None:
    if x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {dtype} (like means)")
    if x.device != device:
        raise ValueError(f"{name} is on {x.device}, expected {device} (like means)")


def checking_values() -> bool:
    """False while torch.compile traces: value checks would break the graph at every data read."""
    return not torch.compiler.is_compiling()


def check_finite(name: str, x: Tensor) -> None:
    if not checking_values():
        return
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def check_device_supported(device: torch.device) -> None:
    if device.type == "cpu":
        return
    if device.type == "cuda":
        if not has_cuda_kernels():
            raise RuntimeError(
                "moegs was built without CUDA kernels; move the inputs to the CPU or rebuild with "
                "MOEGS_FORCE_CUDA=1 against a CUDA build of torch"
            )
        return
    raise ValueError(f"moegs runs on CPU or CUDA tensors, got device {device}")


def check_image_size(width, height, n_images: int, n_experts: int, channels: int, tile_size: int) -> None:
    for name, v in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if v <= 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ValueError(f"image {width}x{height} is too large: each side must be at most {MAX_IMAGE_SIDE}")
    total = n_images * n_experts * height * width * max(channels, 1)
    if total > MAX_OUTPUT_ELEMENTS:
        raise ValueError(
            f"output of {n_images} image(s) x {n_experts} expert(s) x {height}x{width} x {channels} channels "
            f"has {total} elements, more than {MAX_OUTPUT_ELEMENTS}; render fewer cameras or smaller images"
        )


def check_expert_ids(expert_ids, num_experts, batch_shape, n: int, device) -> Tensor:
    if isinstance(num_experts, bool) or not isinstance(num_experts, int):
        raise TypeError(f"num_experts must be an int, got {type(num_experts).__name__}")
    if not 1 <= num_experts <= MAX_EXPERTS:
        raise ValueError(f"num_experts must be in [1, {MAX_EXPERTS}], got {num_experts}")
    check_tensor("expert_ids", expert_ids)
    if expert_ids.dtype not in (torch.int32, torch.int64, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"expert_ids must be an integer tensor, got {expert_ids.dtype}")
    if tuple(expert_ids.shape) != (*batch_shape, n):
        raise ValueError(f"expert_ids must have shape {(*batch_shape, n)}, got {tuple(expert_ids.shape)}")
    if expert_ids.device != device:
        raise ValueError(f"expert_ids is on {expert_ids.device}, expected {device} (like means)")
    if expert_ids.numel() and checking_values():
        lo, hi = int(expert_ids.min()), int(expert_ids.max())
        if lo < 0 or hi >= num_experts:
            raise ValueError(f"expert_ids must lie in [0, {num_experts}), found values in [{lo}, {hi}]")
    return expert_ids.to(torch.int32)
