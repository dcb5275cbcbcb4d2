"""Loads the compiled module ``moegs._C``, which registers ``torch.ops.moegs``."""

import json
import os

import torch


def _build_config():
    path = os.path.join(os.path.dirname(__file__), "_build_config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


BUILD_CONFIG = _build_config()

try:
    from moegs import _C  # noqa: F401  (registers the ops)
except ImportError as err:  # pragma: no cover - exercised only on broken installs
    built = BUILD_CONFIG.get("torch")
    hint = (
        f"it was built against torch {built}, this is torch {torch.__version__}: rebuild with "
        "`pip install --no-build-isolation -e .`"
        if built and built != torch.__version__
        else "build it with `pip install --no-build-isolation -e .`"
    )
    raise ImportError(f"moegs: the compiled module moegs._C could not be loaded ({err}); {hint}") from err


def has_cuda_kernels() -> bool:
    """True when this build of moegs contains CUDA kernels."""
    return bool(BUILD_CONFIG.get("with_cuda"))
