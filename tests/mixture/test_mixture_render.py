import pytest
import torch

import moegs
from moegs.mixture import MixtureOfExperts
from moegs.router import PixelRouter
from tests.mixture.toy import ToyExpert, toy_camera


def _reference(experts, router, backgrounds, cam, t):
    """K separate moegs.rasterization renders + a float64 router/softmax computed from first principles."""
    W, H = cam.width, cam.height
    vm, K = cam.viewmat[None], cam.K[None]
    imgs, feats, alphas = [], [], []
    for k, e in enumerate(experts):
        g = e(t)
        deg = max(x.sh_degree for x in experts)
        sh = torch.cat([g.sh, torch.zeros(g.sh.shape[0], (deg + 1) ** 2 - g.sh.shape[1], 3)], 1)
        c, a, _ = moegs.rasterization(g.means, g.quats, g.scales, g.opacities, sh, vm, K, W, H, sh_degree=deg,
                                      backgrounds=backgrounds[k][None])
        r = e.splats["router"] * torch.tensor([1.0, 1.0, t])
        f, _, _ = moegs.rasterization(g.means, g.quats, g.scales, g.opacities, r, vm, K, W, H,
                                      backgrounds=torch.ones(1, 3))
        imgs.append(c[0].double())
        feats.append(f[0].double())
        alphas.append(a[0, ..., 0].double())
    imgs, feats = torch.stack(imgs), torch.stack(feats)  # [K, H, W, 3]
    c2w = torch.linalg.inv(cam.viewmat.double())
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1)
    d = pix @ torch.linalg.inv(cam.K.double()).T @ c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    rays = torch.cat([c2w[:3, 3].expand(H, W, 3), d], -1).expand(len(experts), H, W, 6)
    x = torch.cat([feats[..., 1:], rays], -1)
    Ws = [layer.weight.double() for layer in router.mlp.layers]
    phi = torch.relu(torch.relu(x @ Ws[0].T) @ Ws[1].T) @ Ws[2].T
    logits = feats[..., 0] + phi[..., 0]
    gates = torch.softmax(logits / router.temperature, 0)
    return (gates[..., None] * imgs).sum(0), imgs, gates, torch.stack(alphas)


@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_single_pass_mixture_equals_separate_renders(temperature):
    experts = [ToyExpert(n=50, sh_degree=0, seed=1), ToyExpert(n=40, sh_degree=1, seed=2),
               ToyExpert(n=70, sh_degree=2, seed=3)]
    router = PixelRouter(temperature=temperature, seed=5)
    with torch.no_grad():  # non-trivial MLP so the ray / w_dir / w_time paths matter
        for layer in router.mlp.layers:
            layer.weight.mul_(3.0)
    bgs = torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    moe = MixtureOfExperts(experts, router, backgrounds=bgs)
    cam = toy_camera(1, W=26, H=22, t=0.7)
    with torch.no_grad():
        out = moe.render(cam)
        ref_img, ref_imgs, ref_gates, ref_alphas = _reference(experts, router, bgs, cam, 0.7)
    assert out.image.shape == (22, 26, 3) and out.gates.shape == (3, 22, 26) and out.depth.shape == (22, 26)
    torch.testing.assert_close(out.expert_images.double(), ref_imgs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.alphas.double(), ref_alphas, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.gates.double(), ref_gates, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(out.image.double(), ref_img, atol=2e-4, rtol=1e-4)
    assert float(ref_gates.std()) > 0.01  # the gates are far from uniform: the test exercises the router
    torch.testing.assert_close(out.depth, (out.gates * out.depths).sum(0))


def test_time_defaults_to_camera_and_bad_input():
    moe = MixtureOfExperts([ToyExpert(seed=1), ToyExpert(seed=2)], PixelRouter())
    cam = toy_camera(0, t=0.2)
    with torch.no_grad():
        a, b = moe.render(cam), moe.render(cam, 0.2)
    assert torch.equal(a.image, b.image)
    with pytest.raises(ValueError, match="time"):
        moe.render(cam, 1.5)
    with pytest.raises(ValueError, match="backgrounds"):
        MixtureOfExperts([ToyExpert()], PixelRouter(), backgrounds=torch.zeros(2, 3))
    e = ToyExpert()
    del e.splats["router"]
    with pytest.raises(ValueError, match="router"):
        MixtureOfExperts([e], PixelRouter())
    with pytest.raises(TypeError, match="viewmat"):
        moe.render(object(), 0.1)


def test_gradients_reach_experts_and_router():
    experts = [ToyExpert(seed=1), ToyExpert(seed=2, sh_degree=1)]
    moe = MixtureOfExperts(experts, PixelRouter(seed=0))
    out = moe.render(toy_camera(0, t=0.4))
    (out.image - 0.5).square().mean().backward()
    for e in experts:
        for k in ("means", "scales", "opacities", "sh0", "router", "velocity"):
            assert e.splats[k].grad is not None and float(e.splats[k].grad.abs().sum()) > 0, k
        assert e.bias.grad is not None
    assert all(float(p.grad.abs().sum()) > 0 for p in moe.router.mlp.parameters())
