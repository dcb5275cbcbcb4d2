"""Pure-PyTorch forward + backward Gaussian renderer following gsplat 1.5.3's rules (the baseline).

Stages: gsplat's pure-torch covariance and EWA projection (``gsplat.cuda._torch_impl``), the
opacity-aware pixel radius of gsplat's CUDA projection, a vectorised tile intersection and a
vectorised, tile-batched compositor differentiated by autograd. Everything runs on the CPU in
the current process, so its timings can be compared with moegs at the same thread count.

Compositing rules (gsplat ``rasterize_to_pixels``): pixel centres at ``(x + 0.5, y + 0.5)``,
``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy`` with conic ``(a, b, c)``,
``alpha = min(0.999, o exp(-sigma))``; a Gaussian is skipped if ``sigma < 0`` or
``alpha < 1/255``; the pixel stops at the first Gaussian whose ``T (1 - alpha) <= 1e-4`` and that
Gaussian is not added. Output colour ``sum_i c_i alpha_i T_i + T bg`` and alpha ``1 - T``.

``python benchmarks/torch_baseline.py --check`` compares the renderer with a per-pixel float64
loop on a small scene.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

from gsplat.cuda._torch_impl import (
    _fully_fused_projection,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
)

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
RADIUS_SIGMAS = 3.33


# --------------------------------------------------------------------------------- projection
def project(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA projection; returns radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3].

    The pixel radius is gsplat 1.5.3's opacity-aware bound ``ceil(e sqrt(Sigma_ii))`` with
    ``e = min(3.33, sqrt(2 ln(255 o)))``; Gaussians with ``o < 1/255`` are culled.
    """
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)  # [N, 3, 3]
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane,
        far_plane=far_plane,
    )
    with torch.no_grad():
        a, b, c = conics.unbind(-1)  # inverse of the blurred 2D covariance
        det = a * c - b * b
        sigma_diag = torch.stack([c / det, a / det], dim=-1)  # [C, N, 2]
        opac = opacities.detach().expand_as(depths)
        extend = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_MIN) / ALPHA_MIN))
        extend = extend.clamp_max(RADIUS_SIGMAS)[..., None]
        tight = torch.ceil(extend * torch.sqrt(sigma_diag))
        keep = (radii > 0).all(-1) & (opac >= ALPHA_MIN)
        m = means2d.detach()
        keep &= (m[..., 0] + tight[..., 0] > 0) & (m[..., 0] - tight[..., 0] < width)
        keep &= (m[..., 1] + tight[..., 1] > 0) & (m[..., 1] - tight[..., 1] < height)
        radii = torch.where(keep[..., None], tight, torch.zeros_like(tight)).to(torch.int32)
    return radii, means2d, depths, conics


def sh_colors(
    sh_degree: int,
    means: Tensor,  # [N, 3]
    coeffs: Tensor,  # [N, Kc, 3]
    viewmats: Tensor,  # [C, 4, 4]
) -> Tensor:
    """View-dependent colours [C, N, 3] = max(SH(dir) + 0.5, 0), dir from camera centre to mean."""
    campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3]
    dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
    C = viewmats.shape[0]
    rgb = _spherical_harmonics(sh_degree, dirs, coeffs[None].expand(C, *coeffs.shape))
    return torch.clamp_min(rgb + 0.5, 0.0)


# --------------------------------------------------------------------------- tile intersection
@torch.no_grad()
def isect_tiles(
    means2d: Tensor,  # [I, N, 2]
    radii: Tensor,  # [I, N, 2] int32, 0 = culled
    depths: Tensor,  # [I, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> Tuple[Tensor, Tensor]:
    """Gaussian/tile pairs sorted by (image, tile, depth).

    Returns:
        flatten_ids: ``[M]`` int64 indices into the flattened ``[I * N]`` Gaussians.
        offsets: ``[I * tile_height * tile_width + 1]`` int64; tile ``t``'s list is
            ``flatten_ids[offsets[t]:offsets[t + 1]]``.
    """
    I, N = depths.shape
    n_tiles = tile_width * tile_height
    m = means2d.reshape(I * N, 2) / tile_size
    r = radii.reshape(I * N, 2).to(m.dtype) / tile_size
    lo = torch.floor(m - r).to(torch.int64)
    hi = torch.ceil(m + r).to(torch.int64)
    lo[:, 0].clamp_(0, tile_width)
    hi[:, 0].clamp_(0, tile_width)
    lo[:, 1].clamp_(0, tile_height)
    hi[:, 1].clamp_(0, tile_height)
    span = hi - lo  # [I * N, 2]
    count = span[:, 0] * span[:, 1] * (radii.reshape(I * N, 2) > 0).all(-1)
    gauss = torch.nonzero(count, as_tuple=True)[0]
    count = count[gauss]
    total = int(count.sum())
    owner = torch.repeat_interleave(gauss, count)  # [M]
    start = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    k = torch.arange(total, dtype=torch.int64) - start  # index inside each rectangle
    wx = span[owner, 0]
    tx = lo[owner, 0] + k % wx
    ty = lo[owner, 1] + k // wx
    tile = (owner // N) * n_tiles + ty * tile_width + tx
    # Sort by depth, then stably by tile: (tile, depth) order in the dtype of depths.
    order = torch.argsort(depths.reshape(-1).detach()[owner], stable=True)
    order = order[torch.argsort(tile[order], stable=True)]
    flatten_ids = owner[order]
    offsets = torch.zeros(I * n_tiles + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.bincount(tile, minlength=I * n_tiles), 0)
    return flatten_ids, offsets


# ------------------------------------------------------------------------------- compositing
def _composite_chunk(
    tiles: Tensor,  # [Tc] int64 global tile ids (image * n_tiles + tile)
    counts: Tensor,  # [Tc] int64 list lengths
    starts: Tensor,  # [Tc] int64 list starts in flatten_ids
    flatten_ids: Tensor,  # [M] int64
    means2d: Tensor,  # [I * N, 2]
    conics: Tensor,  # [I * N, 3]
    opacities: Tensor,  # [I * N]
    colors: Tensor,  # [I * N, D]
    tile_size: int,
    tile_width: int,
    n_tiles: int,
    block: int,
) -> Tuple[Tensor, Tensor]:
    """Composites a chunk of tiles; returns colours [Tc, P, D] and transmittance [Tc, P].

    Pixel p of a tile is (row, col) = (p // tile_size, p % tile_size). The exponent is built
    from per-column and per-row terms, ``-sigma = A[col] + C[row] + dx[col] * (-b dy[row])``
    with ``A = -a dx^2 / 2`` and ``C = -c dy^2 / 2``, so only two full-size operations are needed.
    """
    Tc, S, D = tiles.shape[0], tile_size, colors.shape[-1]
    P = S * S
    dtype = means2d.dtype
    local = tiles % n_tiles
    ox = ((local % tile_width) * S).to(dtype)  # [Tc]
    oy = ((local // tile_width) * S).to(dtype)
    offs = torch.arange(S, dtype=dtype) + 0.5
    px = ox[:, None] + offs  # [Tc, S] pixel-centre x of each column
    py = oy[:, None] + offs  # [Tc, S] pixel-centre y of each row

    out = torch.zeros(Tc, P, D, dtype=dtype)
    T = torch.ones(Tc, P, dtype=dtype)
    done = torch.zeros(Tc, P, dtype=torch.bool)
    L = int(counts.max()) if Tc else 0
    for s in range(0, L, block):
        B = min(block, L - s)
        pos = s + torch.arange(B)
        present = pos[None, :] < counts[:, None]  # [Tc, B]
        idx = torch.where(present, starts[:, None] + pos[None, :], torch.zeros_like(pos)[None])
        gid = flatten_ids[idx]  # [Tc, B]
        mu = means2d[gid]  # [Tc, B, 2]
        con = conics[gid]  # [Tc, B, 3]
        dx = px[:, :, None] - mu[:, None, :, 0]  # [Tc, S, B]
        dy = py[:, :, None] - mu[:, None, :, 1]  # [Tc, S, B]
        A = -0.5 * con[:, None, :, 0] * dx * dx  # [Tc, S(col), B]
        C = -0.5 * con[:, None, :, 2] * dy * dy  # [Tc, S(row), B]
        nbdy = -con[:, None, :, 1] * dy  # [Tc, S(row), B]
        neg_sigma = torch.addcmul(
            A[:, None, :, :] + C[:, :, None, :], dx[:, None, :, :], nbdy[:, :, None, :]
        ).reshape(Tc, P, B)
        alpha = torch.clamp_max(opacities[gid][:, None, :] * torch.exp(neg_sigma), ALPHA_MAX)
        with torch.no_grad():
            valid = (alpha >= ALPHA_MIN) & (neg_sigma <= 0)
            valid &= present[:, None, :]
            valid &= ~done[:, :, None]
            t_after = torch.cumprod(torch.where(valid, 1.0 - alpha, 1.0), dim=-1)
            t_after *= T.detach()[:, :, None]
            # T only decreases, so every Gaussian after the first one that would push T to or
            # below T_MIN is excluded too, and the pixel is finished.
            used = valid & (t_after > T_MIN)
            done |= t_after[:, :, -1] <= T_MIN
        a = torch.where(used, alpha, 0.0)  # [Tc, P, B]
        t_incl = T[:, :, None] * torch.cumprod(1.0 - a, dim=-1)
        t_excl = torch.cat([T[:, :, None], t_incl[:, :, :-1]], dim=-1)
        out = out + torch.bmm(a * t_excl, colors[gid])
        T = t_incl[:, :, -1]
        if bool(done.all()):
            break
    return out, T


def rasterize(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    opacities: Tensor,  # [I, N]
    colors: Tensor,  # [I, N, D]
    flatten_ids: Tensor,  # [M] int64
    offsets: Tensor,  # [I * tile_height * tile_width + 1] int64
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,  # [I, D]
    chunk_tiles: int = 32,
    block: int = 64,
) -> Tuple[Tensor, Tensor]:
    """Tile-batched compositor; returns colours [I, H, W, D] and alphas [I, H, W, 1].

    Tiles are sorted by list length and processed ``chunk_tiles`` at a time; each chunk walks its
    lists ``block`` Gaussians at a time with a ``[tiles, pixels, block]`` tensor and stops once every
    pixel of the chunk is finished. Chunk results are concatenated and put back in image order
    with a single gather.
    """
    I, N, D = colors.shape
    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    n_tiles = tile_width * tile_height
    P = tile_size * tile_size
    flat = (means2d.reshape(I * N, 2), conics.reshape(I * N, 3), opacities.reshape(I * N),
            colors.reshape(I * N, D))
    counts = offsets[1:] - offsets[:-1]  # [I * n_tiles]
    order = torch.argsort(counts, stable=True)
    out_chunks, t_chunks = [], []
    for c0 in range(0, I * n_tiles, chunk_tiles):
        tiles = order[c0:c0 + chunk_tiles]
        out, T = _composite_chunk(
            tiles, counts[tiles], offsets[tiles], flatten_ids, *flat, tile_size, tile_width,
            n_tiles, block,
        )
        out_chunks.append(out)
        t_chunks.append(T)
    inverse = torch.argsort(order)
    out = torch.cat(out_chunks)[inverse]  # [I * n_tiles, P, D]
    T = torch.cat(t_chunks)[inverse]  # [I * n_tiles, P]

    def to_image(x: Tensor) -> Tensor:  # [I * n_tiles, P, F] -> [I, H, W, F]
        F = x.shape[-1]
        x = x.reshape(I, tile_height, tile_width, tile_size, tile_size, F)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(I, tile_height * tile_size, tile_width * tile_size, F)
        return x[:, :height, :width]

    image = to_image(out)
    T = to_image(T[:, :, None])
    if backgrounds is not None:
        image = image + T * backgrounds[:, None, None, :]
    return image, 1.0 - T


# ------------------------------------------------------------------------------------ render
def _colors_per_camera(colors, sh_degree, means, viewmats) -> Tensor:
    C = viewmats.shape[0]
    if sh_degree is None:
        return colors[None].expand(C, *colors.shape)  # [C, N, D]
    return sh_colors(sh_degree, means, colors, viewmats)  # [C, N, 3]


def render(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D] or SH [N, Kc, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    tile_size: int = 16,
    **kwargs,
) -> Tuple[Tensor, Tensor]:
    """One-expert render; returns colours [C, H, W, D] and alphas [C, H, W, 1] (gsplat rules)."""
    radii, means2d, depths, conics = project(means, quats, scales, opacities, viewmats, Ks, width, height)
    C, N = depths.shape
    cols = _colors_per_camera(colors, sh_degree, means, viewmats)
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    flatten_ids, offsets = isect_tiles(means2d, radii, depths, tile_size, tw, th)
    return rasterize(
        means2d, conics, opacities[None].expand(C, N), cols, flatten_ids, offsets, width, height,
        tile_size, backgrounds, **kwargs,
    )


def render_experts(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D] or SH [N, Kc, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    expert_ids: Tensor,  # [N] ints in [0, num_experts)
    num_experts: int,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    tile_size: int = 16,
    **kwargs,
) -> Tuple[Tensor, Tensor]:
    """Each expert rendered alone with its own transmittance.

    Returns colours [C, K, H, W, D] and alphas [C, K, H, W, 1]. Projection is shared; tile
    intersection and compositing run once per expert on that expert's Gaussians, which is the
    definition of the per-expert single-pass result.
    """
    radii, means2d, depths, conics = project(means, quats, scales, opacities, viewmats, Ks, width, height)
    C, N = depths.shape
    cols = _colors_per_camera(colors, sh_degree, means, viewmats)
    opac = opacities[None].expand(C, N)
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    ids = expert_ids.to(torch.int64)
    images, alphas = [], []
    for k in range(num_experts):
        radii_k = radii * (ids == k)[None, :, None].to(radii.dtype)
        flatten_ids, offsets = isect_tiles(means2d, radii_k, depths, tile_size, tw, th)
        img, alpha = rasterize(
            means2d, conics, opac, cols, flatten_ids, offsets, width, height, tile_size,
            backgrounds, **kwargs,
        )
        images.append(img)
        alphas.append(alpha)
    return torch.stack(images, 1), torch.stack(alphas, 1)


# ------------------------------------------------------------------------------------- check
def _loop_reference(means2d, conics, opacities, colors, radii, depths, width, height, background):
    """Per-pixel float64 loop over all visible Gaussians in depth order (one image).

    Returns image [H, W, D], alpha [H, W] and the number of pixels that hit the stop rule.
    """
    vis = (radii > 0).all(-1).nonzero().flatten()
    vis = vis[torch.argsort(depths[vis], stable=True)].tolist()
    m, cn = means2d.double().tolist(), conics.double().tolist()
    op, col = opacities.double().tolist(), colors.double().tolist()
    bg = background.double().tolist()
    D = len(bg)
    image = torch.zeros(height, width, D, dtype=torch.float64)
    alpha_out = torch.zeros(height, width, dtype=torch.float64)
    stopped = 0
    for y in range(height):
        for x in range(width):
            px, py = x + 0.5, y + 0.5
            T, acc = 1.0, [0.0] * D
            for g in vis:
                dx, dy = px - m[g][0], py - m[g][1]
                a, b, c = cn[g]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(ALPHA_MAX, op[g] * math.exp(-sigma))
                if sigma < 0 or alpha < ALPHA_MIN:
                    continue
                if T * (1.0 - alpha) <= T_MIN:
                    stopped += 1
                    break
                for d in range(D):
                    acc[d] += col[g][d] * alpha * T
                T *= 1.0 - alpha
            for d in range(D):
                image[y, x, d] = acc[d] + T * bg[d]
            alpha_out[y, x] = 1.0 - T
    return image, alpha_out, stopped


def run_check(n: int = 300, width: int = 40, height: int = 36) -> bool:
    """Baseline vs the per-pixel loop (forward, float32 and float64), plus a float64 gradcheck."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scenes import make_scene

    ok = True
    # The second scene has larger, more opaque Gaussians so that many pixels hit the stop rule.
    for label, scale_mul, opac_min in (("default", 1.0, None), ("dense", 10.0, 0.6)):
        scene = make_scene(n, width, height, num_experts=3, seed=1, dtype=torch.float64)
        scene.scales = scene.scales * scale_mul
        if opac_min is not None:
            scene.opacities = scene.opacities.clamp_min(opac_min)
        bg = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)
        radii, means2d, depths, conics = project(
            scene.means, scene.quats, scene.scales, scene.opacities, scene.viewmats, scene.Ks,
            width, height,
        )
        ref_img, ref_alpha, stopped = _loop_reference(
            means2d[0], conics[0], scene.opacities, scene.colors, radii[0], depths[0], width,
            height, bg[0],
        )
        for dtype in (torch.float64, torch.float32):
            s = scene.to(dtype)
            # Small chunks and blocks so that carrying T across blocks is exercised.
            img, alpha = render(
                s.means, s.quats, s.scales, s.opacities, s.colors, s.viewmats, s.Ks, width,
                height, backgrounds=bg.to(dtype), chunk_tiles=3, block=7,
            )
            err_c = (img[0].double() - ref_img).abs().max().item()
            err_a = (alpha[0, ..., 0].double() - ref_alpha).abs().max().item()
            tol = 1e-10 if dtype == torch.float64 else 1e-5
            good = err_c < tol and err_a < tol
            ok &= good
            print(
                f"[{label:7s}] {str(dtype):13s} max |colour - loop| = {err_c:.2e}, "
                f"max |alpha - loop| = {err_a:.2e}, pixels stopped = {stopped}, "
                f"visible = {int((radii > 0).all(-1).sum())}  {'ok' if good else 'FAIL'}"
            )
        # Multi-expert variant: expert k equals the loop over expert k's Gaussians.
        imgs, alphas = render_experts(
            scene.means, scene.quats, scene.scales, scene.opacities, scene.colors, scene.viewmats,
            scene.Ks, width, height, scene.expert_ids, scene.num_experts, backgrounds=bg,
            chunk_tiles=5, block=16,
        )
        err = 0.0
        for k in range(scene.num_experts):
            rk = radii[0] * (scene.expert_ids == k)[:, None].to(radii.dtype)
            ref_k, ref_ak, _ = _loop_reference(
                means2d[0], conics[0], scene.opacities, scene.colors, rk, depths[0], width,
                height, bg[0],
            )
            err = max(err, (imgs[0, k] - ref_k).abs().max().item(),
                      (alphas[0, k, ..., 0] - ref_ak).abs().max().item())
        good = err < 1e-10
        ok &= good
        print(f"[{label:7s}] experts (K={scene.num_experts}) float64 max diff = {err:.2e}  "
              f"{'ok' if good else 'FAIL'}")

    # Finite differences through the whole renderer on a tiny float64 scene.
    scene = make_scene(12, 20, 20, seed=3, dtype=torch.float64)
    scene.scales = scene.scales * 4.0
    inputs = scene.fresh_leaves()

    def fn(means, quats, scales, opacities, colors):
        img, alpha = render(means, quats, scales, opacities, colors, scene.viewmats, scene.Ks,
                            20, 20, chunk_tiles=2, block=5)
        return img, alpha

    good = torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=False)
    ok &= good
    print(f"[gradchk] float64 renderer vs finite differences  {'ok' if good else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="validate against a per-pixel loop")
    args = parser.parse_args()
    if not args.check:
        parser.print_help()
        return 0
    return 0 if run_check() else 1


if __name__ == "__main__":
    sys.exit(main())
