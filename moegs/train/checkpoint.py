"""Atomic checkpoint files: written to a temporary file in the same folder, then renamed over the target."""

import os
import tempfile
from typing import Any

import torch


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` so a reader never sees a partial file (temp file + ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str) -> Any:
    """Load a checkpoint written by :func:`save_atomic`; clear errors for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt / truncated file
        raise ValueError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
