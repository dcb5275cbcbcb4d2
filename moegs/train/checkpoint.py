"""Atomic checkpoint files: written to a temporary file in the same folder, then renamed over the target."""

import os
from typing import Any

import torch

from moegs.utils.atomic import write_atomic


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` so a reader never sees a partial file (temp file + ``os.replace``)."""
    write_atomic(path, lambda f: torch.save(obj, f), suffix=".pt", make_dirs=True)


def load_checkpoint(path: str) -> Any:
    """Load a checkpoint written by :func:`save_atomic`; clear errors for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt / truncated file
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
