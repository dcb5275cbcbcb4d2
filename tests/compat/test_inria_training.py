"""A render-and-train loop in the style of the original 3DGS trainer, on moegs.compat.inria, on CPU.

The model keeps 3DGS's parameterisation (log-scales, logit opacities, dc + rest SH),
densifies from the norm of ``means2D.grad[:, :2]`` over visible Gaussians (``radii > 0``),
clones small and splits large high-gradient Gaussians and prunes transparent ones,
with the Adam state carried along like the original.
"""

import math

import torch

from moegs.compat.inria import GaussianRasterizationSettings, GaussianRasterizer
from tests.compat import inria_reference as ref

W, H = 32, 24


class Camera:
    def __init__(self, eye):
        view, proj, campos, tx, ty = ref.camera(eye, (0.0, 0.0, 0.0), W, H, 1.0, dtype=torch.float32)
        self.world_view_transform, self.full_proj_transform, self.camera_center = view, proj, campos
        self.tanfovx, self.tanfovy = tx, ty


class GaussianModel:
    def __init__(self, xyz, colors):
        n = xyz.shape[0]
        C0 = 0.28209479177387814
        self._xyz = xyz.clone().requires_grad_(True)
        self._features_dc = ((colors - 0.5) / C0)[:, None, :].clone().requires_grad_(True)
        self._features_rest = torch.zeros(n, 15, 3).requires_grad_(True)
        self._scaling = torch.full((n, 3), math.log(0.12)).requires_grad_(True)
        rot = torch.zeros(n, 4)
        rot[:, 0] = 1
        self._rotation = rot.requires_grad_(True)
        self._opacity = torch.full((n, 1), math.log(0.1 / 0.9)).requires_grad_(True)
        self.active_sh_degree, self.max_sh_degree = 0, 3
        self.lrs = dict(xyz=0.004, f_dc=0.02, f_rest=0.001, opacity=0.05, scaling=0.01, rotation=0.002)
        self.optimizer = torch.optim.Adam(
            [{"params": [getattr(self, a)], "lr": self.lrs[k], "name": k} for k, a in self._names()], eps=1e-15)
        self._reset_stats()

    @staticmethod
    def _names():
        return (("xyz", "_xyz"), ("f_dc", "_features_dc"), ("f_rest", "_features_rest"), ("opacity", "_opacity"),
                ("scaling", "_scaling"), ("rotation", "_rotation"))

    def _reset_stats(self):
        n = self._xyz.shape[0]
        self.xyz_gradient_accum = torch.zeros(n, 1)
        self.denom = torch.zeros(n, 1)
        self.max_radii2D = torch.zeros(n)

    get_xyz = property(lambda self: self._xyz)
    get_features = property(lambda self: torch.cat([self._features_dc, self._features_rest], 1))
    get_opacity = property(lambda self: torch.sigmoid(self._opacity))
    get_scaling = property(lambda self: torch.exp(self._scaling))
    get_rotation = property(lambda self: torch.nn.functional.normalize(self._rotation))

    def add_densification_stats(self, viewspace_points, visibility):
        self.xyz_gradient_accum[visibility] += viewspace_points.grad[visibility, :2].norm(dim=-1, keepdim=True)
        self.denom[visibility] += 1

    def _replace(self, make):
        """Replaces every parameter by make(name, tensor) -> new tensor; Adam moments follow (new rows zero)."""
        for group in self.optimizer.param_groups:
            old = group["params"][0]
            state = self.optimizer.state.pop(old, None)
            new = make(old.detach()).requires_grad_(True)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = make(state[key], zeros=True)
                self.optimizer.state[new] = state
            group["params"][0] = new
            setattr(self, dict(self._names())[group["name"]], new)

    def prune(self, mask):
        keep = ~mask
        self._replace(lambda t, zeros=False: t[keep])
        self.xyz_gradient_accum, self.denom = self.xyz_gradient_accum[keep], self.denom[keep]
        self.max_radii2D = self.max_radii2D[keep]

    def densify_and_prune(self, grad_threshold, min_opacity, extent, percent_dense=0.05):
        grads = (self.xyz_gradient_accum / self.denom.clamp(min=1))[:, 0]
        big = self.get_scaling.max(dim=1).values > percent_dense * extent
        clone_mask = (grads >= grad_threshold) & ~big
        split_mask = (grads >= grad_threshold) & big
        # clone: copy the Gaussians as they are
        src = clone_mask.nonzero()[:, 0]
        # split: two samples from each, scales shrunk by 1.6, originals pruned afterwards
        sp = split_mask.nonzero()[:, 0]
        with torch.no_grad():
            std = self.get_scaling[sp].repeat(2, 1)
            samples = torch.normal(torch.zeros_like(std), std)
            R = ref.quat_to_rotmat(self._rotation[sp].detach()).repeat(2, 1, 1).float()
            split_xyz = (R @ samples[..., None])[..., 0] + self._xyz[sp].detach().repeat(2, 1)
        n_old = self._xyz.shape[0]

        def grow(t, zeros=False):
            extra_clone = t[src]
            extra_split = t[sp].repeat(2, *([1] * (t.dim() - 1)))
            if zeros:
                extra_clone, extra_split = torch.zeros_like(extra_clone), torch.zeros_like(extra_split)
            return torch.cat([t, extra_clone, extra_split])

        self._replace(grow)
        with torch.no_grad():
            start = n_old + src.numel()
            self._xyz[start:] = split_xyz
            self._scaling[start:] = torch.log(self.get_scaling[start:] / 1.6)
        n_new = self._xyz.shape[0]
        self._reset_stats()
        drop = torch.zeros(n_new, dtype=torch.bool)
        drop[sp] = True
        drop |= self.get_opacity[:, 0].detach() < min_opacity
        self.prune(drop)
        return int(src.numel()), int(sp.numel())


def render(cam, pc, bg):
    screenspace_points = torch.zeros_like(pc.get_xyz, requires_grad=True)
    screenspace_points.retain_grad()
    settings = GaussianRasterizationSettings(
        image_height=H, image_width=W, tanfovx=cam.tanfovx, tanfovy=cam.tanfovy, bg=bg, scale_modifier=1.0,
        viewmatrix=cam.world_view_transform, projmatrix=cam.full_proj_transform, sh_degree=pc.active_sh_degree,
        campos=cam.camera_center, prefiltered=False, debug=False,
    )
    rasterizer = GaussianRasterizer(raster_settings=settings)
    image, radii = rasterizer(means3D=pc.get_xyz, means2D=screenspace_points, shs=pc.get_features,
                              colors_precomp=None, opacities=pc.get_opacity, scales=pc.get_scaling,
                              rotations=pc.get_rotation, cov3D_precomp=None)
    return {"render": image, "viewspace_points": screenspace_points, "visibility_filter": radii > 0, "radii": radii}


def test_inria_style_training_loop_loss_falls_and_densifies():
    torch.manual_seed(0)
    cams = [Camera((3.2 * math.sin(a), -0.6, -3.2 * math.cos(a))) for a in (-0.5, -0.17, 0.17, 0.5)]
    bg = torch.zeros(3)
    # ground truth: a few coloured blobs
    gt = GaussianModel(torch.tensor([[-0.6, -0.3, 0.0], [0.5, 0.2, 0.3], [0.0, 0.4, -0.3], [0.2, -0.4, 0.1]]),
                       torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.3, 0.9], [0.9, 0.9, 0.2]]))
    with torch.no_grad():
        gt._scaling.fill_(math.log(0.25))
        gt._opacity.fill_(math.log(0.9 / 0.1))
        targets = [render(c, gt, bg)["render"].detach() for c in cams]

    model = GaussianModel((torch.rand(40, 3) - 0.5) * 1.6, torch.rand(40, 3))
    losses, grown, n_counts = [], [], []
    iterations = 150
    for it in range(1, iterations + 1):
        if it % 50 == 0:
            model.active_sh_degree = min(model.active_sh_degree + 1, model.max_sh_degree)
        cam_idx = it % len(cams)
        pkg = render(cams[cam_idx], model, bg)
        loss = (pkg["render"] - targets[cam_idx]).abs().mean()
        loss.backward()
        losses.append(float(loss.detach()))
        with torch.no_grad():
            vis = pkg["visibility_filter"]
            assert pkg["viewspace_points"].grad is not None
            model.max_radii2D[vis] = torch.maximum(model.max_radii2D[vis], pkg["radii"][vis].float())
            model.add_densification_stats(pkg["viewspace_points"], vis)
            if it in (40, 80):
                grown.append(model.densify_and_prune(grad_threshold=2e-3, min_opacity=0.005, extent=2.0))
            model.optimizer.step()
            model.optimizer.zero_grad(set_to_none=True)
        n_counts.append(model._xyz.shape[0])

    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    print(f"loss {first:.4f} -> {last:.4f}, grown {grown}, N {n_counts[0]} -> {n_counts[-1]}")
    assert last < 0.6 * first, (first, last)
    assert sum(c + s for c, s in grown) > 0, grown
    assert max(n_counts) > 40
