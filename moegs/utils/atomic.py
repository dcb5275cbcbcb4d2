"""Atomic file writes: a reader sees the old file or the complete new one, never a partial file."""

import os
import tempfile
from typing import BinaryIO, Callable


def write_atomic(path: str, write: Callable[[BinaryIO], None], *, suffix: str = "", make_dirs: bool = False) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, then ``os.replace`` it onto ``path``.

    The temporary file is removed if ``write`` raises. ``make_dirs`` creates the parent folder; otherwise a
    missing folder raises FileNotFoundError.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(folder, exist_ok=True)
    elif not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} for {path!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
