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


def _unfilter_rows(buf: np.ndarray, ftypes: np.ndarray, bpp: int) -> np.ndarray:
    """Undo filters 0 (none), 1 (sub) and 2 (up) row by row, vectorised within each row."""
    h, stride = buf.shape
    out = np.empty((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        cur = buf[y].astype(np.int64)
        if ftypes[y] == 1:
            cur = np.cumsum(cur.reshape(-1, bpp), axis=0).reshape(-1)
        elif ftypes[y] == 2:
            cur = cur + prev
        prev = cur & 0xFF
        out[y] = prev
    return out


def _unfilter_wavefront(buf: np.ndarray, ftypes: np.ndarray, bpp: int) -> np.ndarray:
    """Undo any mix of the five filters. Every predictor reads only the left, upper and upper-left
    pixels, so all pixels on one anti-diagonal (x + y = const) are decoded together."""
    h, stride = buf.shape
    w = stride // bpp
    filt = buf.reshape(h, w, bpp).astype(np.int32)
    out = np.zeros((h + 1, w + 1, bpp), dtype=np.int32)  # row 0 and column 0 are the zero border
    ft = ftypes.astype(np.int32)
    for d in range(h + w - 1):
        ys = np.arange(max(0, d - w + 1), min(h, d + 1))
        xs = d - ys
        a = out[ys + 1, xs]
        b = out[ys, xs + 1]
        c = out[ys, xs]
        t = ft[ys][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([t == 0, t == 1, t == 2, t == 3], [0, a, b, (a + b) >> 1], paeth)
        out[ys + 1, xs + 1] = (filt[ys, xs] + pred) & 0xFF
    return out[1:, 1:].reshape(h, stride).astype(np.uint8)


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
    ftypes = buf[:, 0]
    if ftypes.max() > 4:
        bad = int(np.argmax(ftypes > 4))
        raise ValueError(f"{path}: invalid PNG filter type {int(ftypes[bad])} in row {bad}")
    rows = buf[:, 1:]
    if ftypes.max() <= 2:
        out = _unfilter_rows(rows, ftypes, bpp)
    else:
        out = _unfilter_wavefront(rows, ftypes, bpp)
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
