"""Video writing (mp4 through imageio-ffmpeg, animated-PNG fallback) and reading (mp4 through
imageio-ffmpeg). imageio-ffmpeg is an optional dependency: ``pip install imageio-ffmpeg``."""

import os
import struct
import zlib

import numpy as np

from moegs.utils.png import _SIGNATURE, _chunk


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ImportError(
            "reading or writing mp4 video needs the optional package imageio-ffmpeg (pip install imageio-ffmpeg)"
        ) from None
    return imageio_ffmpeg


def _to_uint8_frames(frames) -> np.ndarray:
    a = np.asarray(frames.detach().cpu() if hasattr(frames, "detach") else frames)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W, 3], got {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError("frames contain NaN or infinite values")
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise TypeError(f"frames must be float in [0, 1] or uint8, got {a.dtype}")
    return np.ascontiguousarray(a)


def write_apng(path: str, frames, fps: float = 10.0) -> str:
    """Animated PNG of frames ([T, H, W, 3] float in [0, 1] or uint8); returns path."""
    a = _to_uint8_frames(frames)
    T, H, W, _ = a.shape
    delay = max(1, int(round(1000.0 / fps)))
    out = [_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))]
    out.append(_chunk(b"acTL", struct.pack(">II", T, 0)))
    seq = 0
    for i in range(T):
        raw = b"".join(b"\x00" + a[i, y].tobytes() for y in range(H))
        comp = zlib.compress(raw, 6)
        out.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, W, H, 0, 0, delay, 1000, 0, 0)))
        seq += 1
        if i == 0:
            out.append(_chunk(b"IDAT", comp))
        else:
            out.append(_chunk(b"fdAT", struct.pack(">I", seq) + comp))
            seq += 1
    out.append(_chunk(b"IEND", b""))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(b"".join(out))
    os.replace(tmp, path)
    return path


def write_video(frames, path: str, fps: float = 10.0) -> str:
    """Write frames ([T, H, W, 3] float in [0, 1] or uint8) as an H.264 mp4 when imageio-ffmpeg is
    installed, else as an animated PNG next to ``path`` (extension ``.png``). Returns the path written.
    Odd sizes are padded by edge replication to even ones for the mp4 encoder."""
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}")
    a = _to_uint8_frames(frames)
    try:
        ff = _ffmpeg()
    except ImportError:
        return write_apng(os.path.splitext(path)[0] + ".png", a, fps)
    T, H, W, _ = a.shape
    ph, pw = H % 2, W % 2
    if ph or pw:
        a = np.pad(a, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    tmp = f"{os.path.splitext(path)[0]}.tmp{os.getpid()}.mp4"
    w = ff.write_frames(tmp, (a.shape[2], a.shape[1]), fps=fps, codec="libx264", quality=8,
                        macro_block_size=1, output_params=["-pix_fmt", "yuv420p"], ffmpeg_log_level="error")
    w.send(None)
    for fr in a:
        w.send(np.ascontiguousarray(fr))
    w.close()
    os.replace(tmp, path)
    return path


def _box_downscale(img: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return img
    h, w = img.shape[0] // f, img.shape[1] // f
    return img[: h * f, : w * f].reshape(h, f, w, f, -1).mean(axis=(1, 3))


def read_video(path: str, indices=None, downscale: int = 1) -> np.ndarray:
    """Decode a video into [T, H // downscale, W // downscale, 3] float32 in [0, 1].

    indices: frame numbers to keep (others are decoded and dropped); downscale: integer box filter
    applied to each frame as it is decoded, so long full-resolution videos never sit in memory."""
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be a positive integer, got {downscale!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    ff = _ffmpeg()
    try:
        gen = ff.read_frames(path, pix_fmt="rgb24")
        meta = gen.__next__()
        W, H = meta["size"]
        keep = None if indices is None else set(int(i) for i in indices)
        frames = []
        for i, buf in enumerate(gen):
            if keep is None or i in keep:
                fr = np.frombuffer(buf, dtype=np.uint8).reshape(H, W, 3).astype(np.float32) / 255.0
                frames.append(_box_downscale(fr, downscale).astype(np.float32))
    except (RuntimeError, OSError, StopIteration) as e:
        raise ValueError(f"{path}: cannot decode video ({e})") from None
    if not frames:
        raise ValueError(f"{path}: video has no frames")
    return np.stack(frames)


def count_video_frames(path: str) -> int:
    """Number of frames in a video (decodes it)."""
    ff = _ffmpeg()
    n, _ = ff.count_frames_and_secs(path)
    return int(n)


def video_size(path: str):
    """(height, width) of a video, from its header (decodes nothing)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    gen = _ffmpeg().read_frames(path)
    try:
        W, H = next(gen)["size"]
    except (RuntimeError, OSError, StopIteration) as e:
        raise ValueError(f"{path}: cannot read video header ({e})") from None
    finally:
        gen.close()
    return int(H), int(W)
