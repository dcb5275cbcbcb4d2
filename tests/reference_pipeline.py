"""Reference renders for the API tests, built only from independent pieces:
gsplat's pure-PyTorch covariance and SH, the projection twin, and the float64
brute-force multi-expert compositor."""

import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci, _spherical_harmonics

from moegs.ops import _reference as ref


def reference_experts(s, width, height, expert_ids, K, router=None, backgrounds=None, router_background=1.0,
                      sh_degree=None, antialiased=False, tile_size=16, near_plane=0.01, camera_model="pinhole",
                      radius_clip=0.0, covars=None):
    """Float64 reference of rasterize_experts for batch-free inputs. Returns colors, alphas, depths, router
    shaped [C, K, H, W, *]. ``s["colors"]`` may be [N, D] or per camera [C, N, D]; ``covars`` ([N, 3, 3])
    replaces quats / scales."""
    f64 = {k: v.double() for k, v in s.items()}
    if covars is None:
        covars, _ = _quat_scale_to_covar_preci(f64["quats"], f64["scales"], True, False, triu=True)
    else:
        covars = covars.double()
    radii, means2d, depths, conics, comp = ref.project(
        f64["means"], covars, f64["viewmats"], f64["Ks"], width, height, near_plane=near_plane,
        calc_compensations=antialiased, opacities=f64["opacities"], camera_model=camera_model,
        radius_clip=radius_clip,
    )
    C, N = means2d.shape[:2]
    opac = f64["opacities"][None].expand(C, N)
    if antialiased:
        opac = opac * comp
    if sh_degree is None and f64["colors"].dim() == 3:
        colors = f64["colors"]  # per camera
    elif sh_degree is None:
        colors = f64["colors"][None].expand(C, N, -1)
    else:
        campos = torch.inverse(f64["viewmats"])[:, :3, 3]
        dirs = f64["means"][None] - campos[:, None]
        colors = torch.clamp_min(
            _spherical_harmonics(sh_degree, dirs, f64["colors"][None].expand(C, -1, -1, -1)) + 0.5, 0.0
        )
    D = colors.shape[-1]
    parts = [colors, depths[..., None]]
    R = 0
    if router is not None:
        R = router.shape[-1]
        parts.append(router.double()[None].expand(C, N, R))
    feats = torch.cat(parts, -1)
    bg_color = (torch.zeros(C, K, D, dtype=torch.float64) if backgrounds is None
                else torch.broadcast_to(backgrounds.double(), (C, K, D)))
    bg = torch.cat([bg_color, torch.zeros(C, K, 1, dtype=torch.float64),
                    torch.full((C, K, R), float(router_background), dtype=torch.float64)], -1)
    image_ids = torch.arange(C).repeat_interleave(N)
    render, alphas = ref.rasterize_experts_brute(
        means2d.reshape(-1, 2), conics.reshape(-1, 3), opac.reshape(-1), feats.reshape(C * N, -1),
        expert_ids.long()[None].expand(C, N).reshape(-1), bg, radii.reshape(-1, 2), depths.reshape(-1),
        image_ids, width, height, tile_size, K,
    )
    return render[..., :D], alphas, render[..., D:D + 1], (render[..., D + 1:] if R else None)
