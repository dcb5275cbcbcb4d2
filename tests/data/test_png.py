import struct
import zlib

import numpy as np
import pytest

from moegs.utils.png import read_png, read_png_float, write_png


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [8, 16])
def test_roundtrip(tmp_path, channels, depth):
    rng = np.random.default_rng(0)
    maxv = 255 if depth == 8 else 65535
    img = rng.integers(0, maxv + 1, size=(7, 5, channels)).astype(np.uint8 if depth == 8 else np.uint16)
    p = str(tmp_path / "a.png")
    write_png(p, img, bit_depth=depth)
    out = read_png(p)
    assert out.dtype == img.dtype and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _encode_filtered(img: np.ndarray, ftypes) -> bytes:
    """Independent scalar PNG filter encoder (RGBA 8-bit) using the given filter type per row."""
    h, w, c = img.shape
    rows = img.reshape(h, w * c).astype(int)
    out = b""
    for y in range(h):
        ft = ftypes[y % len(ftypes)]
        cur = rows[y]
        prev = rows[y - 1] if y > 0 else np.zeros_like(cur)
        enc = []
        for x in range(w * c):
            a = cur[x - c] if x >= c else 0
            b = prev[x]
            cc = prev[x - c] if x >= c else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, cc)][ft]
            enc.append((cur[x] - pred) % 256)
        out += bytes([ft]) + bytes(enc)
    return out


def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _write_raw(p, raw, w, h):
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
                  + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


@pytest.mark.parametrize("ftypes", [[1, 2, 0], [2, 1], [4], [3], [0, 1, 2, 3, 4]])
def test_filters(tmp_path, ftypes):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(9, 7, 4)).astype(np.uint8)
    _write_raw(tmp_path / "f.png", _encode_filtered(img, ftypes), 7, 9)
    np.testing.assert_array_equal(read_png(str(tmp_path / "f.png")), img)


def test_invalid_filter_type(tmp_path):
    img = np.zeros((3, 2, 4), np.uint8)
    raw = bytearray(_encode_filtered(img, [0]))
    raw[1 + 2 * 4] = 7  # filter byte of row 1
    _write_raw(tmp_path / "f.png", bytes(raw), 2, 3)
    with pytest.raises(ValueError, match="filter type 7"):
        read_png(str(tmp_path / "f.png"))


def test_all_filters(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(10, 6, 4)).astype(np.uint8)
    raw = _encode_filtered(img, [0, 1, 2, 3, 4])
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 6, 10, 8, 6, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    p = tmp_path / "f.png"
    p.write_bytes(data)
    np.testing.assert_array_equal(read_png(str(p)), img)


def test_float_scaling(tmp_path):
    p = str(tmp_path / "g.png")
    write_png(p, np.array([[0.0, 1.0]]), bit_depth=16)
    np.testing.assert_allclose(read_png_float(p)[..., 0], [[0.0, 1.0]])


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_png(str(tmp_path / "missing.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="signature"):
        read_png(str(bad))
    p = str(tmp_path / "c.png")
    write_png(p, np.zeros((4, 4, 3)))
    data = bytearray(open(p, "rb").read())
    data[40] ^= 0xFF  # inside the IDAT payload
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC|corrupt"):
        read_png(p)
    with pytest.raises(ValueError, match="NaN"):
        write_png(p, np.full((2, 2), np.nan))
