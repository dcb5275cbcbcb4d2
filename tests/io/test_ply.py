"""moegs.io PLY reading and writing: round trips, exact bytes, malformed files."""

import os
import struct

import numpy as np
import pytest
import torch

import moegs
from moegs.io import GaussianPly, PlyFormatError, read_ply, write_ply


def make_gaussians(n=7, degree=3, experts=False, router=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = (degree + 1) ** 2
    return GaussianPly(
        means=torch.randn(n, 3, generator=g),
        sh_dc=torch.randn(n, 3, generator=g),
        sh_rest=torch.randn(n, m - 1, 3, generator=g),
        opacity_logits=torch.randn(n, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 2,
        quats=torch.randn(n, 4, generator=g),
        expert_ids=torch.randint(0, 4, (n,), generator=g, dtype=torch.int32) if experts else None,
        router=torch.randn(n, router, generator=g) if router else None,
    )


def assert_same(a: GaussianPly, b: GaussianPly):
    for name in ("means", "sh_dc", "sh_rest", "opacity_logits", "log_scales", "quats"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, msg=name)
    for name in ("expert_ids", "router"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("ascii", [False, True])
def test_round_trip(tmp_path, degree, ascii):
    g = make_gaussians(degree=degree, experts=True, router=5)
    g.extra = {"semantic": torch.arange(7, dtype=torch.int16), "age": torch.linspace(0, 1, 7, dtype=torch.float64)}
    path = tmp_path / "scene.ply"
    write_ply(path, g, ascii=ascii)
    back = read_ply(path)
    assert back.sh_degree == degree and back.num_gaussians == 7
    assert_same(g, back)
    assert list(back.extra) == ["semantic", "age"]
    assert back.extra["semantic"].dtype == torch.int16 and torch.equal(back.extra["semantic"], g.extra["semantic"])
    assert torch.equal(back.extra["age"], g.extra["age"])
    assert back.normals is not None and torch.all(back.normals == 0)
    # a second write of what was read gives the same file
    path2 = tmp_path / "again.ply"
    write_ply(path2, back, ascii=ascii)
    assert path.read_bytes() == path2.read_bytes()


def test_plain_3dgs_file_has_no_moe_fields(tmp_path):
    g = make_gaussians()
    write_ply(tmp_path / "a.ply", g)
    back = read_ply(tmp_path / "a.ply")
    assert back.expert_ids is None and back.router is None and back.extra == {}


def hand_built_file(values, n_rest=0, fmt="<"):
    """A PLY written with struct, independently of moegs.io: properties in the 3DGS order."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = "ply\nformat binary_{} 1.0\nelement vertex {}\n".format(
        "little_endian" if fmt == "<" else "big_endian", len(values))
    header += "".join(f"property float {p}\n" for p in names) + "end_header\n"
    body = b"".join(struct.pack(fmt + "f" * len(names), *row) for row in values)
    return header.encode("ascii"), body, names


def test_bytes_match_hand_built_file(tmp_path):
    n, n_rest = 3, 9
    rows = np.random.default_rng(0).standard_normal((n, 17 + n_rest)).astype(np.float32)
    rows[:, 3:6] = 0  # normals
    header, body, names = hand_built_file(rows.tolist(), n_rest)
    col = {p: torch.from_numpy(rows[:, i]) for i, p in enumerate(names)}
    g = GaussianPly(
        means=torch.stack([col["x"], col["y"], col["z"]], -1),
        sh_dc=torch.stack([col[f"f_dc_{i}"] for i in range(3)], -1),
        # file order is channel-major: f_rest_{c * 3 + k} is coefficient k + 1 of channel c
        sh_rest=torch.stack([col[f"f_rest_{i}"] for i in range(9)], -1).reshape(n, 3, 3).transpose(1, 2),
        opacity_logits=col["opacity"],
        log_scales=torch.stack([col[f"scale_{i}"] for i in range(3)], -1),
        quats=torch.stack([col[f"rot_{i}"] for i in range(4)], -1),
    )
    write_ply(tmp_path / "g.ply", g)
    data = (tmp_path / "g.ply").read_bytes()
    assert data[: len(header)] == header
    assert data == header + body
    # and the reader gives the same fields back, also from the big-endian variant
    (tmp_path / "be.ply").write_bytes(b"".join(hand_built_file(rows.tolist(), n_rest, ">")[:2]))
    for p in ("g.ply", "be.ply"):
        assert_same(read_ply(tmp_path / p), g)
    assert read_ply(tmp_path / "g.ply").sh_rest[1, 2, 0] == col["f_rest_2"][1]


def test_render_inputs_round_trip_and_render(tmp_path):
    n = 20
    means = torch.randn(n, 3) * 0.5 + torch.tensor([0, 0, 4.0])
    quats = torch.nn.functional.normalize(torch.randn(n, 4), dim=-1)
    scales = torch.rand(n, 3) * 0.2 + 0.05
    opac = torch.rand(n) * 0.9 + 0.05
    sh = torch.randn(n, 16, 3) * 0.3
    ids = torch.randint(0, 3, (n,), dtype=torch.int32)
    g = GaussianPly.from_render_inputs(means, quats, scales, opac, sh, expert_ids=ids, router=torch.randn(n, 2))
    write_ply(tmp_path / "s.ply", g)
    r = read_ply(tmp_path / "s.ply").render_inputs()
    torch.testing.assert_close(r["scales"], scales, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(r["opacities"], opac, rtol=1e-5, atol=1e-6)
    K = torch.tensor([[[40.0, 0, 24], [0, 40.0, 16], [0, 0, 1]]])
    img_a, _, _ = moegs.rasterization(means, quats, scales, opac, sh, torch.eye(4)[None], K, 48, 32, sh_degree=3)
    img_b, _, _ = moegs.rasterization(**r, viewmats=torch.eye(4)[None], Ks=K, width=48, height=32, sh_degree=3)
    torch.testing.assert_close(img_a, img_b, rtol=1e-4, atol=1e-5)


def test_float64_read(tmp_path):
    write_ply(tmp_path / "a.ply", make_gaussians())
    assert read_ply(tmp_path / "a.ply", dtype=torch.float64).means.dtype == torch.float64


def test_write_is_atomic_on_error(tmp_path):
    path = tmp_path / "keep.ply"
    write_ply(path, make_gaussians())
    before = path.read_bytes()
    bad = make_gaussians()
    bad.means[2, 1] = float("nan")
    with pytest.raises(ValueError, match="means|'y'|NaN"):
        write_ply(path, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.ply"]


def test_write_rejects_bad_shapes(tmp_path):
    g = make_gaussians()
    g.quats = torch.randn(7, 3)
    with pytest.raises(ValueError, match="quats"):
        write_ply(tmp_path / "x.ply", g)
    g = make_gaussians()
    g.sh_rest = torch.randn(7, 5, 3)
    with pytest.raises(ValueError, match="sh_rest"):
        write_ply(tmp_path / "x.ply", g)
    g = make_gaussians(experts=True)
    g.expert_ids = g.expert_ids.float()
    with pytest.raises(ValueError, match="expert_ids"):
        write_ply(tmp_path / "x.ply", g)
    with pytest.raises(FileNotFoundError):
        write_ply(tmp_path / "no" / "x.ply", make_gaussians())
    with pytest.raises(TypeError):
        write_ply(tmp_path / "x.ply", {"means": torch.zeros(1, 3)})
    assert not list(tmp_path.iterdir())


def _good_bytes(tmp_path, **kw):
    write_ply(tmp_path / "good.ply", make_gaussians(**kw))
    return (tmp_path / "good.ply").read_bytes()


def _expect_error(tmp_path, data: bytes, match: str):
    p = tmp_path / "bad.ply"
    p.write_bytes(data)
    with pytest.raises(PlyFormatError, match=match):
        read_ply(p)
    assert issubclass(PlyFormatError, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no PLY file"):
        read_ply(tmp_path / "absent.ply")


def test_malformed_headers(tmp_path):
    good = _good_bytes(tmp_path)
    _expect_error(tmp_path, b"", "not a PLY file")
    _expect_error(tmp_path, b"PLY\n" + good[4:], "not a PLY file")
    _expect_error(tmp_path, good.replace(b"end_header", b"end_heder"), "end_header")
    _expect_error(tmp_path, good.replace(b"format binary_little_endian 1.0", b"format binary_middle 1.0"),
                  "format")
    _expect_error(tmp_path, good.replace(b"format binary_little_endian 1.0\n", b""), "no 'format'")
    _expect_error(tmp_path, good.replace(b"element vertex 7", b"element vertex seven"), "element vertex")
    _expect_error(tmp_path, good.replace(b"end_header", b"element face 1\nend_header"), "only one element")
    _expect_error(tmp_path, good.replace(b"property float x\n", b"property list uchar int x\n"), "scalar")
    _expect_error(tmp_path, good.replace(b"property float x\n", b"property quad x\n"), "unknown property type")
    _expect_error(tmp_path, good.replace(b"property float y\n", b"property float x\n"), "appears twice")
    _expect_error(tmp_path, good.replace(b"element vertex 7\n", b"bogus line\nelement vertex 7\n"),
                  "unexpected header line")


def test_missing_properties(tmp_path):
    good = _good_bytes(tmp_path)
    # renaming keeps the byte layout, so only the names are wrong
    _expect_error(tmp_path, good.replace(b"property float opacity\n", b"property float opacitx\n"),
                  r"missing vertex properties \['opacity'\]")
    _expect_error(tmp_path, good.replace(b"property float rot_3\n", b"property float rot_9\n"), "rot_3")


def test_bad_f_rest(tmp_path):
    good = _good_bytes(tmp_path)
    _expect_error(tmp_path, good.replace(b"property float f_rest_44\n", b"property float g_rest_44\n"),
                  "44 f_rest properties")
    _expect_error(tmp_path, good.replace(b"property float f_rest_44\n", b"property float f_rest_45\n"),
                  "numbered")


def test_truncated_and_overlong(tmp_path):
    good = _good_bytes(tmp_path)
    _expect_error(tmp_path, good[:-5], "truncated")
    header_end = good.index(b"end_header\n") + len(b"end_header\n")
    _expect_error(tmp_path, good[:header_end], "truncated")
    _expect_error(tmp_path, good + b"\x00" * 4, "unexpected bytes")


def test_nan_in_file(tmp_path):
    header, body, names = hand_built_file([[0.0] * 17, [1.0] * 17])
    body = bytearray(body)
    i = names.index("scale_1")
    body[68 + 4 * i: 68 + 4 * i + 4] = struct.pack("<f", float("nan"))
    _expect_error(tmp_path, header + bytes(body), "'scale_1' has 1 NaN")


def test_bad_expert_ids_and_router_numbering(tmp_path):
    good = _good_bytes(tmp_path, experts=True, router=2)
    # expert_id read as float with a fractional value
    hdr_end = good.index(b"end_header\n") + len(b"end_header\n")
    header, body = good[:hdr_end], good[hdr_end:]
    rec_dtype = read_dtype(header)
    rec = np.frombuffer(body, dtype=rec_dtype).copy()
    rec["expert_id"][0] = -1
    _expect_error(tmp_path, header + rec.tobytes(), "non-negative integers")
    _expect_error(tmp_path, good.replace(b"property float router_1\n", b"property float router_7\n"), "router")


def read_dtype(header: bytes):
    codes = {"float": "<f4", "int": "<i4"}
    fields = []
    for line in header.decode().splitlines():
        t = line.split()
        if t and t[0] == "property":
            fields.append((t[2], codes[t[1]]))
    return np.dtype(fields)


def test_ascii_errors(tmp_path):
    write_ply(tmp_path / "a.ply", make_gaussians(n=3, degree=0), ascii=True)
    good = (tmp_path / "a.ply").read_bytes()
    lines = good.split(b"\n")
    _expect_error(tmp_path, b"\n".join(lines[:-2]) + b"\n", "2 rows, the header says 3")
    bad = good.replace(lines[-2], lines[-2] + b" 1.0")
    _expect_error(tmp_path, bad, "has 18 values, expected 17")
    first = lines[-2].split(b" ")
    first[0] = b"abc"
    _expect_error(tmp_path, good.replace(lines[-2], b" ".join(first)), "not a number")
