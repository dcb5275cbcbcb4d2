"""Small random scenes shared by the API tests."""

import math

import torch


def random_scene(n=60, n_cams=2, width=37, height=29, dtype=torch.float32, batch=(), seed=0, d=3):
    """Gaussians in front of C cameras looking down +z; sizes not multiples of the tile size by default."""
    g = torch.Generator().manual_seed(seed)
    means = torch.empty(*batch, n, 3, dtype=torch.float64)
    means[..., 2] = 2 + 3 * torch.rand(*batch, n, generator=g, dtype=torch.float64)
    means[..., :2] = (torch.rand(*batch, n, 2, generator=g, dtype=torch.float64) * 2 - 1) * 0.6 * means[..., 2:]
    quats = torch.randn(*batch, n, 4, generator=g, dtype=torch.float64)
    scales = torch.exp(torch.empty(*batch, n, 3, dtype=torch.float64).uniform_(math.log(0.05), math.log(0.3), generator=g))
    opacities = 0.1 + 0.8 * torch.rand(*batch, n, generator=g, dtype=torch.float64)
    colors = torch.rand(*batch, n, d, generator=g, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64).repeat(*batch, n_cams, 1, 1)
    for c in range(n_cams):  # small shifts and a yaw per camera
        a = 0.08 * c
        viewmats[..., c, 0, 0] = math.cos(a)
        viewmats[..., c, 0, 2] = math.sin(a)
        viewmats[..., c, 2, 0] = -math.sin(a)
        viewmats[..., c, 2, 2] = math.cos(a)
        viewmats[..., c, 0, 3] = 0.1 * c
    f = 0.8 * width
    Ks = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)
    Ks = Ks.repeat(*batch, n_cams, 1, 1)
    out = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats, Ks=Ks)
    return {k: v.to(dtype) for k, v in out.items()}, width, height
