"""Reading and writing Gaussian scenes in the standard 3DGS PLY layout.

One ``vertex`` element, one row per Gaussian, properties in this order::

    x y z                 centre, world units
    nx ny nz              unused normals (written as zeros)
    f_dc_0..2             SH degree-0 coefficient per colour channel
    f_rest_0..3(M-1)-1    higher SH coefficients, channel-major: f_rest_{c (M-1) + k}
                          is coefficient k+1 of channel c; M = (degree + 1)^2
    opacity               logit of the opacity
    scale_0..2            log of the per-axis standard deviations
    rot_0..3              rotation quaternion (w, x, y, z), not necessarily normalised

moegs adds ``expert_id`` (int32) and ``router_0..R-1`` (float32) for mixture-of-experts
scenes; any other vertex property is kept as it is and written back after them.
Files are written binary little-endian (ASCII on request) and atomically: a temporary
file in the same folder replaces the target only once it is complete.
"""

import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from moegs.utils.atomic import write_atomic

PathLike = Union[str, os.PathLike]

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
MAX_HEADER_BYTES = 1 << 20
SH_DEGREE_OF_REST = {3 * ((d + 1) ** 2 - 1): d for d in range(5)}  # f_rest count -> degree
TAIL_PROPERTIES = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", *TAIL_PROPERTIES]
EXPERT_ID = "expert_id"
ROUTER_PREFIX = "router_"
SH_C0 = 0.28209479177387814


class PlyFormatError(ValueError):
    """A PLY file that is not a valid 3DGS Gaussian file; the message says what is wrong."""


@dataclass
class GaussianPly:
    """A Gaussian scene as stored in a 3DGS PLY (raw, pre-activation parameters).

    Attributes:
        means: ``[N, 3]`` centres, world units.
        sh_dc: ``[N, 3]`` degree-0 SH coefficient per colour channel.
        sh_rest: ``[N, M - 1, 3]`` higher SH coefficients (M = (sh_degree + 1)^2; may be ``[N, 0, 3]``).
        opacity_logits: ``[N]`` logits of the opacities.
        log_scales: ``[N, 3]`` logs of the per-axis standard deviations.
        quats: ``[N, 4]`` rotations (w, x, y, z).
        expert_ids: ``[N]`` int32 expert of each Gaussian, or None.
        router: ``[N, R]`` per-Gaussian router parameters, or None.
        normals: ``[N, 3]`` as stored (zeros when written by 3DGS trainers), or None if absent.
        extra: other vertex properties, name -> ``[N]`` tensor, in file order.
    """

    means: Tensor
    sh_dc: Tensor
    sh_rest: Tensor
    opacity_logits: Tensor
    log_scales: Tensor
    quats: Tensor
    expert_ids: Optional[Tensor] = None
    router: Optional[Tensor] = None
    normals: Optional[Tensor] = None
    extra: Dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.sh_rest.shape[1] + 1))) - 1

    @property
    def sh_coeffs(self) -> Tensor:
        """``[N, M, 3]`` all SH coefficients (dc first), the layout of ``colors`` with ``sh_degree``."""
        return torch.cat([self.sh_dc[:, None, :], self.sh_rest], dim=1)

    def render_inputs(self) -> Dict[str, Tensor]:
        """Activated parameters for :func:`moegs.rasterization`: means ``[N, 3]``, quats ``[N, 4]``
        (normalised), scales ``[N, 3]`` (exp), opacities ``[N]`` (sigmoid), colors ``[N, M, 3]`` (SH)."""
        return {
            "means": self.means,
            "quats": torch.nn.functional.normalize(self.quats, dim=-1),
            "scales": torch.exp(self.log_scales),
            "opacities": torch.sigmoid(self.opacity_logits),
            "colors": self.sh_coeffs,
        }

    @classmethod
    def from_render_inputs(cls, means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                           colors: Tensor, expert_ids: Optional[Tensor] = None,
                           router: Optional[Tensor] = None) -> "GaussianPly":
        """Inverse of :meth:`render_inputs`: scales (linear, > 0) and opacities (in (0, 1)) are stored
        as logs and logits; ``colors`` are SH coefficients ``[N, M, 3]`` (or RGB ``[N, 3]``, stored as
        degree 0)."""
        if colors.dim() == 2:
            colors = ((colors - 0.5) / SH_C0)[:, None, :]
        eps = torch.finfo(opacities.dtype).eps
        return cls(
            means=means.detach(), sh_dc=colors[:, 0].detach(), sh_rest=colors[:, 1:].detach(),
            opacity_logits=torch.logit(opacities.detach(), eps=eps), log_scales=torch.log(scales.detach()),
            quats=quats.detach(),
            expert_ids=None if expert_ids is None else expert_ids.detach().to(torch.int32),
            router=None if router is None else router.detach(),
        )

    def columns(self) -> List[Tuple[str, str, np.ndarray]]:
        """(name, numpy type code, ``[N]`` values) of every property, in file order; checks shapes."""
        n = self.num_gaussians
        _check_2d("means", self.means, n, 3)
        _check_2d("sh_dc", self.sh_dc, n, 3)
        if self.sh_rest.dim() != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
            raise ValueError(f"sh_rest must be [N, M-1, 3] with N={n}, got {tuple(self.sh_rest.shape)}")
        if 3 * self.sh_rest.shape[1] not in SH_DEGREE_OF_REST:
            raise ValueError(f"sh_rest has {self.sh_rest.shape[1]} coefficients; M-1 must be 0, 3, 8, 15 or 24")
        if tuple(self.opacity_logits.shape) != (n,):
            raise ValueError(f"opacity_logits must be [{n}], got {tuple(self.opacity_logits.shape)}")
        _check_2d("log_scales", self.log_scales, n, 3)
        _check_2d("quats", self.quats, n, 4)
        normals = torch.zeros(n, 3) if self.normals is None else self.normals
        _check_2d("normals", normals, n, 3)

        def f32(t: Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float32).numpy()

        cols = [(name, "f4", f32(self.means[:, i])) for i, name in enumerate("xyz")]
        cols += [(name, "f4", f32(normals[:, i])) for i, name in enumerate(("nx", "ny", "nz"))]
        cols += [(f"f_dc_{i}", "f4", f32(self.sh_dc[:, i])) for i in range(3)]
        rest = self.sh_rest.transpose(1, 2).reshape(n, -1)  # channel-major
        cols += [(f"f_rest_{i}", "f4", f32(rest[:, i])) for i in range(rest.shape[1])]
        cols.append(("opacity", "f4", f32(self.opacity_logits)))
        cols += [(f"scale_{i}", "f4", f32(self.log_scales[:, i])) for i in range(3)]
        cols += [(f"rot_{i}", "f4", f32(self.quats[:, i])) for i in range(4)]
        if self.expert_ids is not None:
            if tuple(self.expert_ids.shape) != (n,) or self.expert_ids.dtype.is_floating_point:
                raise ValueError(f"expert_ids must be an integer [{n}] tensor, got {self.expert_ids.dtype} "
                                 f"{tuple(self.expert_ids.shape)}")
            if n and int(self.expert_ids.min()) < 0:
                raise ValueError("expert_ids must be >= 0")
            cols.append((EXPERT_ID, "i4", self.expert_ids.detach().cpu().to(torch.int32).numpy()))
        if self.router is not None:
            if self.router.dim() != 2 or self.router.shape[0] != n:
                raise ValueError(f"router must be [N, R] with N={n}, got {tuple(self.router.shape)}")
            cols += [(f"{ROUTER_PREFIX}{i}", "f4", f32(self.router[:, i])) for i in range(self.router.shape[1])]
        taken = {c[0] for c in cols}
        for name, t in self.extra.items():
            if name in taken or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"extra property name {name!r} is reserved or not a valid PLY name")
            if tuple(t.shape) != (n,):
                raise ValueError(f"extra property {name!r} must be [{n}], got {tuple(t.shape)}")
            arr = t.detach().cpu().numpy()
            code = arr.dtype.str[1:]
            if code not in set(PLY_TYPES.values()):
                raise ValueError(f"extra property {name!r} has dtype {arr.dtype}, which PLY cannot store")
            cols.append((name, code, arr))
        for name, code, arr in cols:
            if code.startswith("f") and not np.isfinite(arr).all():
                raise ValueError(f"property {name!r} contains {int((~np.isfinite(arr)).sum())} NaN or infinite "
                                 "value(s)")
        return cols


def _check_2d(name: str, t: Tensor, n: int, k: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != (n, k):
        raise ValueError(f"{name} must be [{n}, {k}], got {tuple(t.shape)}")


_PLY_NAME_OF = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
                "f4": "float", "f8": "double"}


def ply_header(n: int, properties: List[Tuple[str, str]], fmt: str = "binary_little_endian") -> bytes:
    """Header bytes for ``n`` vertices with (name, numpy type code) properties."""
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {n}"]
    lines += [f"property {_PLY_NAME_OF[code]} {name}" for name, code in properties]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(path: PathLike, gaussians: GaussianPly, ascii: bool = False) -> None:
    """Writes ``gaussians`` to ``path`` (binary little-endian, or ASCII), atomically.

    Raises ValueError on inconsistent shapes or non-finite values; nothing is written then.
    """
    if not isinstance(gaussians, GaussianPly):
        raise TypeError(f"gaussians must be a GaussianPly, got {type(gaussians).__name__}")
    cols = gaussians.columns()
    n = gaussians.num_gaussians
    header = ply_header(n, [(name, code) for name, code, _ in cols], "ascii" if ascii else "binary_little_endian")
    if ascii:
        lines = []
        for i in range(n):
            lines.append(" ".join(repr(float(a[i])) if code.startswith("f") else str(int(a[i]))
                                  for _, code, a in cols))
        body = ("\n".join(lines) + ("\n" if lines else "")).encode("ascii")
    else:
        rec = np.empty(n, dtype=np.dtype([(name, "<" + code) for name, code, _ in cols]))
        for name, _, arr in cols:
            rec[name] = arr
        body = rec.tobytes()
    path = os.fspath(path)

    def _write(f):
        f.write(header)
        f.write(body)

    write_atomic(path, _write, suffix=".ply")


def _parse_header(data: bytes, path: str) -> Tuple[str, int, List[Tuple[str, str]], int]:
    """(format, vertex count, [(name, numpy code)], offset of the body)."""
    if not data.startswith(b"ply\n") and not data.startswith(b"ply\r\n"):
        raise PlyFormatError(f"{path}: not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise PlyFormatError(f"{path}: no 'end_header' line in the first {MAX_HEADER_BYTES} bytes")
    nl = data.find(b"\n", end)
    if nl < 0:
        raise PlyFormatError(f"{path}: header line 'end_header' is not terminated by a newline")
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise PlyFormatError(f"{path}: header is not ASCII text") from None
    fmt, n, props, element = None, None, [], None
    for lineno, raw in enumerate(text.splitlines()[1:], start=2):
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) != 3 or tok[1] not in FORMATS or tok[2] != "1.0":
                raise PlyFormatError(f"{path}: line {lineno}: unsupported format line {raw!r}")
            fmt = tok[1]
        elif tok[0] == "element":
            if element is not None:
                raise PlyFormatError(f"{path}: line {lineno}: only one element ('vertex') is supported, "
                                     f"found another: {raw!r}")
            if len(tok) != 3 or tok[1] != "vertex" or not tok[2].isdigit():
                raise PlyFormatError(f"{path}: line {lineno}: expected 'element vertex <count>', got {raw!r}")
            element, n = tok[1], int(tok[2])
        elif tok[0] == "property":
            if element is None:
                raise PlyFormatError(f"{path}: line {lineno}: property before any element")
            if len(tok) != 3 or tok[1] == "list":
                raise PlyFormatError(f"{path}: line {lineno}: only scalar properties are supported, got {raw!r}")
            if tok[1] not in PLY_TYPES:
                raise PlyFormatError(f"{path}: line {lineno}: unknown property type {tok[1]!r}")
            if any(tok[2] == p for p, _ in props):
                raise PlyFormatError(f"{path}: line {lineno}: property {tok[2]!r} appears twice")
            props.append((tok[2], PLY_TYPES[tok[1]]))
        else:
            raise PlyFormatError(f"{path}: line {lineno}: unexpected header line {raw!r}")
    if fmt is None:
        raise PlyFormatError(f"{path}: header has no 'format' line")
    if n is None:
        raise PlyFormatError(f"{path}: header has no 'element vertex' line")
    return fmt, n, props, nl + 1


def _read_body(data: bytes, offset: int, fmt: str, n: int, props, path: str) -> np.ndarray:
    if FORMATS[fmt] is not None:
        dtype = np.dtype([(name, FORMATS[fmt] + code) for name, code in props])
        need, have = n * dtype.itemsize, len(data) - offset
        if have < need:
            raise PlyFormatError(f"{path}: truncated: {n} vertices of {dtype.itemsize} bytes need {need} bytes "
                                 f"of data, the file has {have}")
        if have > need:
            raise PlyFormatError(f"{path}: {have - need} unexpected bytes after the {n} vertices")
        return np.frombuffer(data, dtype=dtype, count=n, offset=offset)
    rows = data[offset:].decode("ascii", errors="replace").split("\n")
    rows = [r.split() for r in rows if r.strip()]
    if len(rows) != n:
        raise PlyFormatError(f"{path}: ASCII body has {len(rows)} rows, the header says {n} vertices")
    dtype = np.dtype([(name, code) for name, code in props])
    out = np.empty(n, dtype=dtype)
    for i, row in enumerate(rows):
        if len(row) != len(props):
            raise PlyFormatError(f"{path}: ASCII row {i} has {len(row)} values, expected {len(props)}")
        try:
            out[i] = tuple(float(v) if code.startswith("f") else int(v) for v, (_, code) in zip(row, props))
        except (ValueError, OverflowError):
            raise PlyFormatError(f"{path}: ASCII row {i} has a value that is not a number: {row}") from None
    return out


def read_ply(path: PathLike, dtype: torch.dtype = torch.float32) -> GaussianPly:
    """Reads a 3DGS PLY (binary little/big-endian or ASCII) into a :class:`GaussianPly`.

    The SH degree follows from the number of ``f_rest_*`` properties (0, 9, 24, 45 or 72
    for degrees 0 to 4). Float values come back as ``dtype``.

    Raises:
        FileNotFoundError: no such file.
        PlyFormatError (a ValueError): wrong magic or header, a missing or duplicated
            property, a bad ``f_rest`` count or numbering, a truncated or over-long body,
            NaN/infinite values, or negative / non-integer expert ids.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no PLY file at {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    fmt, n, props, offset = _parse_header(data, path)
    names = [p for p, _ in props]
    missing = [p for p in REQUIRED if p not in names]
    if missing:
        raise PlyFormatError(f"{path}: missing vertex properties {missing}")
    rest_names = [p for p in names if p.startswith("f_rest_")]
    if len(rest_names) not in SH_DEGREE_OF_REST:
        raise PlyFormatError(f"{path}: {len(rest_names)} f_rest properties; a degree-d SH needs 3((d+1)^2 - 1), "
                             f"i.e. one of {sorted(SH_DEGREE_OF_REST)}")
    if set(rest_names) != {f"f_rest_{i}" for i in range(len(rest_names))}:
        raise PlyFormatError(f"{path}: f_rest properties must be numbered f_rest_0..f_rest_{len(rest_names) - 1}")
    body = _read_body(data, offset, fmt, n, props, path)
    for name, code in props:
        if code.startswith("f"):
            bad = ~np.isfinite(body[name])
            if bad.any():
                raise PlyFormatError(f"{path}: property {name!r} has {int(bad.sum())} NaN or infinite value(s)")

    def col(name: str) -> Tensor:
        return torch.from_numpy(body[name].astype(np.float64)).to(dtype)

    def stack(names_: List[str]) -> Tensor:
        return torch.stack([col(p) for p in names_], -1) if names_ else torch.zeros(n, 0, dtype=dtype)

    n_rest = len(rest_names) // 3
    rest = stack([f"f_rest_{i}" for i in range(len(rest_names))]).reshape(n, 3, n_rest).transpose(1, 2)
    expert_ids = None
    if EXPERT_ID in names:
        raw = body[EXPERT_ID].astype(np.float64)
        if (raw < 0).any() or (raw != np.round(raw)).any() or (raw > np.iinfo(np.int32).max).any():
            raise PlyFormatError(f"{path}: {EXPERT_ID} must hold non-negative integers")
        expert_ids = torch.from_numpy(raw.astype(np.int32))
    router_names = [p for p in names if p.startswith(ROUTER_PREFIX)]
    if router_names and set(router_names) != {f"{ROUTER_PREFIX}{i}" for i in range(len(router_names))}:
        raise PlyFormatError(f"{path}: router properties must be numbered {ROUTER_PREFIX}0.."
                             f"{ROUTER_PREFIX}{len(router_names) - 1}")
    known = set(REQUIRED) | set(rest_names) | set(router_names) | {EXPERT_ID, "nx", "ny", "nz"}
    extra = {p: torch.from_numpy(body[p].copy()) for p in names if p not in known}
    has_normals = all(p in names for p in ("nx", "ny", "nz"))
    return GaussianPly(
        means=stack(["x", "y", "z"]),
        sh_dc=stack(["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=rest,
        opacity_logits=col("opacity"),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        expert_ids=expert_ids,
        router=stack([f"{ROUTER_PREFIX}{i}" for i in range(len(router_names))]) if router_names else None,
        normals=stack(["nx", "ny", "nz"]) if has_normals else None,
        extra=extra,
    )
