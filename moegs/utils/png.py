"""Minimal PNG writer and reader, so moegs needs no imaging package.

The writer emits 8- or 16-bit grey, grey+alpha, RGB or RGBA (filter 0, no interlace).
The reader accepts any non-interlaced, non-palette PNG with 8 or 16 bits per sample
(grey, grey+alpha, RGB, RGBA) and all five row filters.
"""

import os
import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_COLOR_TYPE = {1: 0, 3: 2, 2: 4, 4: 6}  # samples per pixel -> colour type


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path: str, image, bit_depth: int = 8) -> None:
    """Write ``image`` to ``path`` atomically.

    image: [H, W], [H, W, 1], [H, W, 2] (grey+alpha), [H, W, 3] or [H, W, 4] (RGBA); floats in
    [0, 1] (scaled to the bit depth) or integers (uint8 for 8-bit, uint16 for 16-bit).
    bit_depth: 8 or 16.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    img = np.asarray(image)
    maxv = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.dtype(">u2")
    if img.dtype.kind == "f":
        if not np.all(np.isfinite(img)):
            raise ValueError("write_png: image contains NaN or infinite values")
        img = (np.clip(img, 0.0, 1.0) * maxv + 0.5).astype(dtype)
    elif img.dtype.kind in "ui":
        if img.size and (img.min() < 0 or img.max() > maxv):
            raise ValueError(f"write_png: integer values outside [0, {maxv}] for bit depth {bit_depth}")
        img = img.astype(dtype)
    else:
        raise TypeError(f"write_png: unsupported dtype {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in _COLOR_TYPE or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"write_png expects [H, W] or [H, W, 1|2|3|4], got {np.asarray(image).shape}")
    h, w, c = img.shape
    rows = img.reshape(h, w * c)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))
    data = (
        _SIGNATURE
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, _COLOR_TYPE[c], 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _paeth_row(cur: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    out = cur.astype(np.int32)
    p = prev.astype(np.int32)
    n = out.shape[0]
    # the first pixel has no left neighbour: predictor = up
    out[:bpp] = (out[:bpp] + p[:bpp]) & 0xFF
    for x in range(bpp, n, bpp):
        a = out[x - bpp : x]
        b = p[x : x + bpp]
        c = p[x - bpp : x]
        pa = np.abs(b - c)
        pb = np.abs(a - c)
        pc = np.abs(a + b - 2 * c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        out[x : x + bpp] = (out[x : x + bpp] + pred) & 0xFF
    return out.astype(np.uint8)


def _average_row(cur: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    out = cur.astype(np.int32)
    p = prev.astype(np.int32)
    out[:bpp] = (out[:bpp] + (p[:bpp] >> 1)) & 0xFF
    for x in range(bpp, out.shape[0], bpp):
        out[x : x + bpp] = (out[x : x + bpp] + ((out[x - bpp : x] + p[x : x + bpp]) >> 1)) & 0xFF
    return out.astype(np.uint8)


def _sub_row(cur: np.ndarray, bpp: int) -> np.ndarray:
    n = cur.shape[0]
    v = cur.reshape(n // bpp, bpp).astype(np.int64)
    return (np.cumsum(v, axis=0) & 0xFF).astype(np.uint8).reshape(n)


def read_png(path: str) -> np.ndarray:
    """Read a PNG into [H, W, C] uint8 (8-bit) or uint16 (16-bit), C = 1, 2, 3 or 4.

    Raises FileNotFoundError if missing and ValueError if the file is not a PNG this reader
    supports (palette, interlaced, bit depth below 8) or is corrupt (bad CRC, truncated data).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PNG file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file (bad signature)")
    pos = len(_SIGNATURE)
    header = None
    idat = []
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc_bytes = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc_bytes) != 4:
            raise ValueError(f"{path}: truncated PNG chunk {tag!r}")
        if struct.unpack(">I", crc_bytes)[0] != (zlib.crc32(tag + body) & 0xFFFFFFFF):
            raise ValueError(f"{path}: CRC mismatch in PNG chunk {tag!r} (corrupt file)")
        pos += 12 + length
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: PNG has no IHDR chunk")
    w, h, depth, ctype, _comp, _filt, interlace = header
    if ctype not in _CHANNELS:
        raise ValueError(f"{path}: unsupported PNG colour type {ctype} (palette images are not supported)")
    if depth not in (8, 16):
        raise ValueError(f"{path}: unsupported PNG bit depth {depth} (only 8 and 16)")
    if interlace != 0:
        raise ValueError(f"{path}: interlaced PNGs are not supported")
    if not idat:
        raise ValueError(f"{path}: PNG has no image data")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt PNG image data ({e})") from None
    c = _CHANNELS[ctype]
    bpp = c * depth // 8
    stride = w * bpp
    if len(raw) < h * (stride + 1):
        raise ValueError(f"{path}: PNG image data is truncated")
    buf = np.frombuffer(raw, dtype=np.uint8)[: h * (stride + 1)].reshape(h, stride + 1)
    out = np.empty((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        ftype = int(buf[y, 0])
        cur = buf[y, 1:]
        if ftype == 0:
            row = cur.copy()
        elif ftype == 1:
            row = _sub_row(cur, bpp)
        elif ftype == 2:
            row = ((cur.astype(np.int32) + prev) & 0xFF).astype(np.uint8)
        elif ftype == 3:
            row = _average_row(cur, prev, bpp)
        elif ftype == 4:
            row = _paeth_row(cur, prev, bpp)
        else:
            raise ValueError(f"{path}: invalid PNG filter type {ftype} in row {y}")
        out[y] = row
        prev = row
    if depth == 16:
        img = out.view(">u2").astype(np.uint16)
    else:
        img = out
    return img.reshape(h, w, c)


def read_png_float(path: str) -> np.ndarray:
    """Read a PNG into [H, W, C] float32 in [0, 1]."""
    img = read_png(path)
    scale = 255.0 if img.dtype == np.uint8 else 65535.0
    return img.astype(np.float32) / scale
