"""Pure-PyTorch twins of every moegs op, for tests, debugging and as a readable specification.

Each twin has the name and signature of the public op wrapper it mirrors and is
plain differentiable torch, written independently of the C++ kernels:

* :func:`quat_scale_to_covar` (covariance), :func:`project` (EWA projection),
* :func:`spherical_harmonics`, :func:`isect_tiles`, :func:`isect_offset_encode`,
* :func:`rasterize_to_pixels_experts` (tile-batched) and :func:`rasterize_experts_brute`,
  the float64 brute-force multi-expert compositor used as the test oracle.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


# ============================================================== covariance
def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """``[..., 4]`` (w, x, y, z) unnormalised quats and ``[..., 3]`` scales -> ``[..., 6]`` upper triangle."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*quats.shape[:-1], 3, 3)
    M = R * scales[..., None, :]
    cov = M @ M.transpose(-1, -2)
    i, j = (0, 0, 0, 1, 1, 2), (0, 1, 2, 1, 2, 2)
    return cov[..., i, j]


# ============================================================== projection
# Pure-PyTorch twin of :func:`moegs.ops.projection.project` (tests and debugging).
# 
# Vectorised and differentiable by autograd; same rules as the compiled op, including
# the opacity-aware radius, ``radius_clip``, the off-image cull and zeros for culled
# entries. Gradients of culled entries are exactly zero (no NaN leaks through masks).
_ALPHA_THRESHOLD = 1.0 / 255.0
_MAX_EXTEND = 3.33
_FOV_MARGIN = 0.3
_TRIU = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _sym_from_triu(t: Tensor) -> Tensor:
    """[..., 6] -> [..., 3, 3]"""
    xx, xy, xz, yy, yz, zz = t.unbind(-1)
    return torch.stack(
        [torch.stack([xx, xy, xz], -1), torch.stack([xy, yy, yz], -1), torch.stack([xz, yz, zz], -1)],
        -2,
    )


def _pinhole(pc: Tensor, Ks: Tensor, width: int, height: int) -> Tuple[Tensor, Tensor]:
    """Camera points [..., C, N, 3] -> pixel means [..., C, N, 2] and Jacobians [..., C, N, 2, 3]."""
    x, y, z = pc.unbind(-1)
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]  # [..., C, 1]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    # x/z, y/z clamped to the image plus a margin of 0.3 tan(fov/2) per side.
    mx, my = _FOV_MARGIN * (0.5 * width / fx), _FOV_MARGIN * (0.5 * height / fy)
    u = torch.minimum(torch.maximum(x / z, -(cx / fx + mx)), (width - cx) / fx + mx)
    v = torch.minimum(torch.maximum(y / z, -(cy / fy + my)), (height - cy) / fy + my)
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [
            torch.stack([fx / z, zero, -fx * u / z], -1),
            torch.stack([zero, fy / z, -fy * v / z], -1),
        ],
        -2,
    )
    means2d = torch.stack([fx * (x / z) + cx, fy * (y / z) + cy], -1)
    return means2d, jac


def _ortho(pc: Tensor, Ks: Tensor) -> Tuple[Tensor, Tensor]:
    x, y, _ = pc.unbind(-1)
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    zero = torch.zeros_like(x)
    jac = torch.stack(
        [
            torch.stack([fx.expand_as(x), zero, zero], -1),
            torch.stack([zero, fy.expand_as(x), zero], -1),
        ],
        -2,
    )
    return torch.stack([fx * x + cx, fy * y + cy], -1), jac


_FISHEYE_EPS = 1e-7


def _fisheye(pc: Tensor, Ks: Tensor) -> Tuple[Tensor, Tensor]:
    """Equidistant fisheye: pixel radius f * atan2(|xy|, z); same regularisation as projection.h."""
    x, y, z = pc.unbind(-1)
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    eps = _FISHEYE_EPS
    # |xy| with a zero (not NaN) derivative on the optical axis.
    rho2 = x * x + y * y
    on_axis = rho2 == 0
    rho = torch.where(on_axis, torch.zeros_like(rho2), torch.sqrt(torch.where(on_axis, torch.ones_like(rho2), rho2)))
    r = rho + eps
    g = torch.atan2(r, z + eps) / r
    means2d = torch.stack([fx * x * g + cx, fy * y * g + cy], -1)
    x2, y2, xy = x * x + eps, y * y, x * y
    s = x2 + y2
    q = 1.0 / (s + z * z)
    b = torch.atan2(r, z) / r / s
    a = z * q / s
    jac = torch.stack(
        [
            torch.stack([fx * (x2 * a + y2 * b), fx * xy * (a - b), -fx * x * q], -1),
            torch.stack([fy * xy * (a - b), fy * (y2 * a + x2 * b), -fy * y * q], -1),
        ],
        -2,
    )
    return means2d, jac


def project(
    means: Tensor,
    covars: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
    camera_model: str = "pinhole",
    opacities: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Reference of ``moegs.ops.projection.project``; same arguments and outputs."""
    if covars.shape[-2:] == (3, 3) and covars.dim() == means.dim() + 1:
        covars = torch.stack([covars[..., i, j] for i, j in _TRIU], -1)
    S = _sym_from_triu(covars)[..., None, :, :, :]  # [..., 1, N, 3, 3]
    R = viewmats[..., :3, :3]  # [..., C, 3, 3]
    t = viewmats[..., :3, 3]  # [..., C, 3]
    pc = torch.einsum("...cij,...nj->...cni", R, means) + t[..., :, None, :]  # [..., C, N, 3]
    Rb = R[..., :, None, :, :]
    Sc = Rb @ S @ Rb.transpose(-1, -2)  # [..., C, N, 3, 3]

    z = pc[..., 2]
    in_depth = (z >= near_plane) & (z <= far_plane)
    # Culled points get a harmless z so no inf/NaN reaches the masked gradients.
    pc_safe = torch.where(in_depth[..., None], pc, torch.ones_like(pc))
    if camera_model == "pinhole":
        means2d, J = _pinhole(pc_safe, Ks, width, height)
    elif camera_model == "ortho":
        means2d, J = _ortho(pc_safe, Ks)
    elif camera_model == "fisheye":
        means2d, J = _fisheye(pc_safe, Ks)
    else:
        raise ValueError(f"unsupported camera_model {camera_model!r}")

    cov2d = J @ Sc @ J.transpose(-1, -2)  # [..., C, N, 2, 2]
    a, b, c = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    ratio = det_orig / det_safe
    pos = ratio > 0
    comps = torch.where(pos, torch.sqrt(torch.where(pos, ratio, torch.ones_like(ratio))), 0.0)

    with torch.no_grad():
        extend = torch.full_like(z, _MAX_EXTEND)
        if opacities is not None:
            o = opacities[..., None, :].expand_as(z)
            if calc_compensations:
                o = o * comps
            ok = ok & (o >= _ALPHA_THRESHOLD)
            o_safe = torch.where(ok, o, torch.ones_like(o))
            extend = torch.clamp(torch.sqrt(2.0 * torch.log(o_safe / _ALPHA_THRESHOLD)), max=_MAX_EXTEND)
        rx = torch.ceil(extend * torch.sqrt(torch.where(ok, a, torch.ones_like(a))))
        ry = torch.ceil(extend * torch.sqrt(torch.where(ok, c, torch.ones_like(c))))
        ok = ok & ~((rx <= radius_clip) & (ry <= radius_clip))
        mx, my = means2d[..., 0], means2d[..., 1]
        off = (mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height)
        ok = ok & ~off
        radii = torch.where(ok[..., None], torch.stack([rx, ry], -1), 0.0).to(torch.int32)

    zero = torch.zeros((), dtype=means.dtype, device=means.device)
    means2d = torch.where(ok[..., None], means2d, zero)
    depths = torch.where(ok, z, zero)
    conics = torch.where(ok[..., None], conics, zero)
    comps = torch.where(ok, comps, zero) if calc_compensations else None
    return radii, means2d, depths, conics, comps


# ============================================================== sh_isect
# Pure-PyTorch twins of the spherical-harmonics and tile-intersection ops.
# 
# Same names and signatures as :mod:`moegs.ops.sh` and :mod:`moegs.ops.isect`;
# plain vectorised torch (differentiable where the op is), for tests and as a
# readable statement of what the kernels compute.
def _sh_basis(degree: int, u: Tensor) -> Tensor:
    """``[..., (degree+1)**2]`` real SH basis (3DGS signs) at unit directions ``u [..., 3]``."""
    x, y, z = u.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        c1 = 0.4886025119029199
        out += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (3 * z * z - 1),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (x * x - y * y),
        ]
    if degree >= 3:
        out += [
            -0.5900435899266435 * y * (3 * x * x - y * y),
            2.890611442640554 * x * y * z,
            -0.4570457994644658 * y * (5 * z * z - 1),
            0.3731763325901154 * z * (5 * z * z - 3),
            -0.4570457994644658 * x * (5 * z * z - 1),
            1.445305721320277 * z * (x * x - y * y),
            -0.5900435899266435 * x * (x * x - 3 * y * y),
        ]
    return torch.stack(out, -1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """``[..., 3]`` colours ``max(SH(dirs / |dirs|, coeffs) + 0.5, 0)``; see :func:`moegs.ops.sh.spherical_harmonics`."""
    nb = (degree + 1) ** 2
    u = F.normalize(dirs, dim=-1)
    basis = _sh_basis(degree, u)
    raw = (basis.unsqueeze(-1) * coeffs[..., :nb, :]).sum(-2)
    return torch.relu(raw + 0.5)


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    image_ids: Optional[Tensor] = None,
    n_images: Optional[int] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """See :func:`moegs.ops.isect.isect_tiles`."""
    if image_ids is None:
        out_shape = means2d.shape[:-1]
        n_images = math.prod(means2d.shape[:-2])
        image_ids = torch.arange(n_images, device=means2d.device).repeat_interleave(means2d.shape[-2])
    else:
        out_shape = means2d.shape[:1]
    m2 = means2d.reshape(-1, 2)
    r = radii.reshape(-1, 2)
    d = depths.reshape(-1)
    image_ids = image_ids.reshape(-1).long()
    m = m2.shape[0]

    grid = torch.tensor([tile_width, tile_height], device=m2.device)
    lo = torch.floor(m2 / tile_size - r.to(m2.dtype) / tile_size)
    hi = torch.ceil(m2 / tile_size + r.to(m2.dtype) / tile_size)
    lo = torch.minimum(lo.clamp(min=0).nan_to_num(0), grid).long()
    hi = torch.minimum(hi.clamp(min=0).nan_to_num(0), grid).long()
    visible = (r > 0).all(-1)
    span = (hi - lo) * visible[:, None]
    counts = span[:, 0] * span[:, 1]

    # One row per (entry, covered tile), entries in flat order, tiles row-major.
    entry = torch.repeat_interleave(torch.arange(m, device=m2.device), counts)
    local = torch.arange(entry.numel(), device=m2.device) - (torch.cumsum(counts, 0) - counts)[entry]
    w = span[entry, 0]
    tx = lo[entry, 0] + local % w.clamp(min=1)
    ty = lo[entry, 1] + torch.div(local, w.clamp(min=1), rounding_mode="floor")
    tile_bits = (tile_width * tile_height).bit_length()
    depth_bits = d.float().view(torch.int32).long() & 0xFFFFFFFF
    keys = (
        (image_ids[entry] << (32 + tile_bits)) | ((ty * tile_width + tx) << 32) | depth_bits[entry]
    )
    keys, order = torch.sort(keys, stable=True)
    return counts.int().reshape(out_shape), keys, entry[order].int()


@torch.no_grad()
def isect_offset_encode(isect_ids: Tensor, n_images: int, tile_width: int, tile_height: int) -> Tensor:
    """See :func:`moegs.ops.isect.isect_offset_encode`."""
    n_tiles = tile_width * tile_height
    tile_bits = n_tiles.bit_length()
    high = isect_ids >> 32
    bucket = (high >> tile_bits) * n_tiles + (high & ((1 << tile_bits) - 1))
    starts = torch.searchsorted(bucket, torch.arange(n_images * n_tiles, device=isect_ids.device))
    return starts.int().reshape(n_images, tile_height, tile_width)


# ============================================================== rasterize
# Pure-PyTorch references for single-pass multi-expert rasterization.
# 
# * :func:`rasterize_to_pixels_experts`: differentiable twin of
#   :func:`moegs.ops.rasterize.rasterize_to_pixels_experts` (same signature,
#   same tile lists), vectorised over pixels, one step per tile-run position.
# * :func:`rasterize_experts_brute`: float64 oracle that ignores tile lists: per
#   image it sorts the Gaussians by depth and tests each pixel's tile against
#   each Gaussian's tile rectangle.
# * :func:`build_tile_lists`: tile intersections (``isect_offsets``,
#   ``flatten_ids``) from that same rectangle rule, for tests.
# 
# Rules (both references): pixel (x, y) is sampled at (x + pixel_offset,
# y + pixel_offset); with d = mean - pixel and conic (a, b, c),
# sigma = 1/2 (a dx^2 + c dy^2) + b dx dy and alpha = min(alpha_max, o exp(-sigma)).
# A Gaussian is skipped if sigma < 0 or alpha < 1/255, or if its expert is done.
# If T_e (1 - alpha) <= min_transmittance its expert is done and it is not added;
# otherwise it adds feature * alpha * T_e to its expert and T_e *= 1 - alpha.
# render = acc + T bg, alphas = 1 - T, per expert.
ALPHA_THRESHOLD = 1.0 / 255.0


def _alpha(means, conics, opacities, px, py, alpha_max):
    """Opacity of Gaussians (broadcast against pixels px, py) and whether it is usable."""
    dx = means[..., 0] - px
    dy = means[..., 1] - py
    sigma = 0.5 * (conics[..., 0] * dx * dx + conics[..., 2] * dy * dy) + conics[..., 1] * dx * dy
    # sigma < 0 is skipped anyway; clamping keeps exp finite there (no inf * 0 in backward).
    raw = opacities * torch.exp(-sigma.clamp_min(0.0))
    alpha = torch.where(raw <= alpha_max, raw, torch.full_like(raw, alpha_max))
    return alpha, (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)


def _tile_rects(means2d, radii, width, height, tile_size):
    """[x0, x1) x [y0, y1) tile rectangle of each Gaussian; empty when a radius is <= 0."""
    tiles_x = math.ceil(width / tile_size)
    tiles_y = math.ceil(height / tile_size)
    m = means2d.detach().double()
    r = radii.detach().double()
    x0 = torch.floor((m[:, 0] - r[:, 0]) / tile_size).clamp(0, tiles_x).long()
    x1 = torch.ceil((m[:, 0] + r[:, 0]) / tile_size).clamp(0, tiles_x).long()
    y0 = torch.floor((m[:, 1] - r[:, 1]) / tile_size).clamp(0, tiles_y).long()
    y1 = torch.ceil((m[:, 1] + r[:, 1]) / tile_size).clamp(0, tiles_y).long()
    visible = (r > 0).all(-1)
    x1 = torch.where(visible, x1, x0)
    return x0, x1, y0, y1


def build_tile_lists(means2d, radii, depths, image_ids, num_images, width, height, tile_size):
    """Tile intersections of flat Gaussians, each tile's run sorted by (depth, index).

    Args:
        means2d: ``[M, 2]`` pixels. radii: ``[M, 2]`` pixels (x, y), <= 0 means invisible.
        depths: ``[M]``. image_ids: ``[M]`` image of each Gaussian, in [0, num_images).

    Returns:
        ``isect_offsets [I, TH, TW]`` int32 and ``flatten_ids [n_isects]`` int32.
    """
    tiles_x = math.ceil(width / tile_size)
    tiles_y = math.ceil(height / tile_size)
    x0, x1, y0, y1 = _tile_rects(means2d, radii, width, height, tile_size)
    w = x1 - x0
    counts = w * (y1 - y0)
    entry = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    local = torch.arange(entry.numel()) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    tx = x0[entry] + local % w[entry].clamp_min(1)
    ty = y0[entry] + local // w[entry].clamp_min(1)
    tile = image_ids.long()[entry] * (tiles_x * tiles_y) + ty * tiles_x + tx
    # Entries are in increasing index; two stable sorts give (tile, depth, index) order.
    perm = torch.sort(depths.detach()[entry], stable=True).indices
    perm = perm[torch.sort(tile[perm], stable=True).indices]
    per_tile = torch.bincount(tile, minlength=num_images * tiles_x * tiles_y)
    offsets = (per_tile.cumsum(0) - per_tile).reshape(num_images, tiles_y, tiles_x)
    return offsets.int(), entry[perm].int()


def rasterize_experts_brute(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    features: Tensor,  # [M, F]
    expert_ids: Tensor,  # [M] int
    backgrounds: Tensor,  # [I, K, F]
    radii: Tensor,  # [M, 2]
    depths: Tensor,  # [M]
    image_ids: Tensor,  # [M] int
    width: int,
    height: int,
    tile_size: int,
    num_experts: int,
    alpha_max: float = 0.999,
    min_transmittance: float = 1e-4,
    pixel_offset: float = 0.5,
):
    """float64 oracle: returns ``render [I, K, H, W, F]`` and ``alphas [I, K, H, W, 1]``.

    Per image, Gaussians are visited in (depth, index) order; a pixel considers
    Gaussian g iff the pixel's tile lies in g's tile rectangle
    ``[floor((m - r) / ts), ceil((m + r) / ts))`` (clamped to the image's tiles).
    Differentiable in all float inputs.
    """
    f64 = torch.float64
    means2d, conics, opacities = means2d.to(f64), conics.to(f64), opacities.to(f64)
    features, backgrounds = features.to(f64), backgrounds.to(f64)
    num_images, F = backgrounds.shape[0], features.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    px, py = xs.to(f64) + pixel_offset, ys.to(f64) + pixel_offset
    pix_tx, pix_ty = xs // tile_size, ys // tile_size
    x0, x1, y0, y1 = _tile_rects(means2d, radii, width, height, tile_size)

    renders, alphas = [], []
    for i in range(num_images):
        members = torch.nonzero(image_ids == i)[:, 0]
        members = members[torch.sort(depths.detach()[members], stable=True).indices]
        trans = [torch.ones_like(px) for _ in range(num_experts)]
        done = [torch.zeros_like(px, dtype=torch.bool) for _ in range(num_experts)]
        acc = [px.new_zeros(px.shape[0], F) for _ in range(num_experts)]
        for g in members.tolist():
            inside = (pix_tx >= x0[g]) & (pix_tx < x1[g]) & (pix_ty >= y0[g]) & (pix_ty < y1[g])
            if not bool(inside.any()):
                continue
            e = int(expert_ids[g])
            alpha, usable = _alpha(means2d[g], conics[g], opacities[g], px, py, alpha_max)
            use = inside & usable & ~done[e]
            nxt = trans[e] * (1.0 - alpha)
            stop = use & (nxt <= min_transmittance)
            add = use & ~stop
            added = acc[e] + features[g] * (alpha * trans[e])[:, None]
            acc[e] = torch.where(add[:, None], added, acc[e])
            trans[e] = torch.where(add, nxt, trans[e])
            done[e] = done[e] | stop
        t = torch.stack(trans)  # [K, P]
        out = torch.stack(acc) + t[..., None] * backgrounds[i][:, None, :]
        renders.append(out.reshape(num_experts, height, width, F))
        alphas.append((1.0 - t).reshape(num_experts, height, width, 1))
    return torch.stack(renders), torch.stack(alphas)


def rasterize_to_pixels_experts(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    expert_ids: Tensor,
    backgrounds: Tensor,
    isect_offsets: Tensor,
    flatten_ids: Tensor,
    width: int,
    height: int,
    tile_size: int,
    num_experts: int,
    absgrad: bool = False,
    alpha_max: float = 0.999,
    min_transmittance: float = 1e-4,
    pixel_offset: float = 0.5,
):
    """Twin of :func:`moegs.ops.rasterize.rasterize_to_pixels_experts` in plain torch.

    Same arguments and outputs (``render [I, K, H, W, F]``, ``alphas [I, K, H, W, 1]``),
    computed in the inputs' dtype. ``absgrad`` is accepted and ignored: autograd
    cannot produce per-pixel absolute gradients.
    """
    F = features.shape[-1]
    means2d, conics = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    opacities, features = opacities.reshape(-1), features.reshape(-1, F)
    expert_ids = expert_ids.reshape(-1).long()
    num_images, tiles_y, tiles_x = isect_offsets.shape
    flat_ids = flatten_ids.long()
    n_isects = flat_ids.numel()

    # Every pixel of every image, and the run of its tile.
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    tiles = torch.arange(num_images)[:, None] * (tiles_x * tiles_y) + (
        (ys // tile_size) * tiles_x + xs // tile_size)[None]
    starts_all = isect_offsets.reshape(-1).long()
    ends_all = torch.cat([starts_all[1:], starts_all.new_tensor([n_isects])])
    start, length = starts_all[tiles].reshape(-1), (ends_all - starts_all)[tiles].reshape(-1)
    px = (xs.to(means2d.dtype) + pixel_offset).repeat(num_images)
    py = (ys.to(means2d.dtype) + pixel_offset).repeat(num_images)
    n_pix = px.shape[0]

    trans = px.new_ones(n_pix, num_experts)
    done = torch.zeros(n_pix, num_experts, dtype=torch.bool)
    acc = px.new_zeros(n_pix, num_experts, F)
    longest = int(length.max()) if n_pix and n_isects else 0
    for q in range(longest):
        active = q < length
        g = flat_ids[(start + q).clamp(max=n_isects - 1)]
        onehot = torch.nn.functional.one_hot(expert_ids[g], num_experts).bool()  # [P, K]
        alpha, usable = _alpha(means2d[g], conics[g], opacities[g], px, py, alpha_max)
        t_e = trans.gather(1, expert_ids[g][:, None])[:, 0]
        use = active & usable & ~(done & onehot).any(-1)
        nxt = t_e * (1.0 - alpha)
        stop = use & (nxt <= min_transmittance)
        add = (use & ~stop)[:, None] & onehot
        added = acc + (features[g] * (alpha * t_e)[:, None])[:, None]
        acc = torch.where(add[..., None], added, acc)
        trans = torch.where(add, nxt[:, None], trans)
        done = done | (stop[:, None] & onehot)

    bg = backgrounds.to(px.dtype)[:, :, None, :]  # [I, K, 1, F]
    trans = trans.reshape(num_images, height * width, num_experts).transpose(1, 2)
    acc = acc.reshape(num_images, height * width, num_experts, F).transpose(1, 2)
    render = (acc + trans[..., None] * bg).reshape(num_images, num_experts, height, width, F)
    return render, (1.0 - trans).reshape(num_images, num_experts, height, width, 1)
