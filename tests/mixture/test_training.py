import math
import os

import pytest
import torch

from moegs.router import PixelRouter
from moegs.train import TrainConfig, Trainer, load_checkpoint, save_atomic
from tests.mixture.toy import ToyExpert, toy_scene


def _cfg(**kw):
    base = dict(iters=8, seed=3, refine_start=1, refine_every=3, grow_grad2d=1e-7, checkpoint_every=2)
    base.update(kw)
    return TrainConfig(**base)


def test_staged_router_stage_updates_only_the_router():
    scene = toy_scene()
    experts = [ToyExpert(seed=1), ToyExpert(seed=2)]
    before = [{k: v.detach().clone() for k, v in e.state_dict().items()} for e in experts]
    router = PixelRouter(temperature=0.5)
    mlp0 = [p.detach().clone() for p in router.mlp.parameters()]
    Trainer("router", experts, scene, _cfg(iters=4), router=router).run(progress=False)
    for e, b in zip(experts, before):
        for k, v in e.state_dict().items():
            if k == "splats.router":
                assert not torch.equal(v, b[k])
            else:
                assert torch.equal(v, b[k]), k
        assert not any(p.requires_grad for n, p in e.named_parameters() if n != "splats.router")
    assert any(not torch.equal(a, b) for a, b in zip(mlp0, router.mlp.parameters()))


def test_joint_updates_experts_and_router():
    scene = toy_scene()
    experts = [ToyExpert(seed=1), ToyExpert(seed=2)]
    before = [{k: v.detach().clone() for k, v in e.splats.items()} for e in experts]
    bias0 = [e.bias.detach().clone() for e in experts]
    router = PixelRouter(temperature=0.5)
    mlp0 = [p.detach().clone() for p in router.mlp.parameters()]
    tr = Trainer("joint", experts, scene, _cfg(iters=2, densify=False), router=router).run(progress=False)
    for e, b, b0 in zip(experts, before, bias0):
        for k in ("means", "sh0", "opacities", "router", "velocity"):
            assert not torch.equal(e.splats[k], b[k]), k
        assert not torch.equal(e.bias, b0)
    assert any(not torch.equal(a, b) for a, b in zip(mlp0, router.mlp.parameters()))
    assert len(tr.history) == 2


@pytest.mark.parametrize("mode", ["expert", "joint"])
def test_network_lr_scale_multiplies_only_network_groups(mode):
    scene = toy_scene()
    n = 1 if mode == "expert" else 2
    router = PixelRouter(temperature=0.5) if mode == "joint" else None
    base = Trainer(mode, [ToyExpert(seed=s) for s in range(n)], scene, _cfg(), router=router)
    scaled = Trainer(mode, [ToyExpert(seed=s) for s in range(n)], scene, _cfg(network_lr_scale=7.0), router=router)
    base.run(stop_after=0, progress=False)
    scaled.run(stop_after=0, progress=False)
    for k in range(n):
        g0, g1 = base.net_opts[k].param_groups[0], scaled.net_opts[k].param_groups[0]
        assert g1["lr"] == pytest.approx(7.0 * g0["lr"]) and g0["lr"] == pytest.approx(1e-3)
        assert g1["initial_lr"] == pytest.approx(7e-3)
        for name, opt in base.splat_opts[k].items():
            assert scaled.splat_opts[k][name].param_groups[0]["lr"] == opt.param_groups[0]["lr"], name
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="network_lr_scale"):
            Trainer("expert", [ToyExpert()], scene, _cfg(network_lr_scale=bad))


def test_experiment_config_passes_its_network_lr_scale():
    from moegs.experiment import ExperimentConfig

    assert ExperimentConfig().train_config(100).network_lr_scale == 3.0
    assert ExperimentConfig(network_lr_scale=1.0).train_config(100, densify=False).network_lr_scale == 1.0


def test_router_time_column_moves_at_its_own_rate():
    from moegs.mixture import MixtureOfExperts
    from moegs.train import camera_index, photometric_loss

    scene = toy_scene()
    experts = [ToyExpert(seed=1), ToyExpert(seed=2)]
    router = PixelRouter(temperature=0.5)
    cam = scene.train[camera_index(0, len(scene.train), 3)]
    out = MixtureOfExperts(experts, router, backgrounds=scene.background).render(cam)
    photometric_loss(out.image, cam.image).backward()
    grads = [e.splats["router"].grad.clone() for e in experts]
    r0 = [e.splats["router"].detach().clone() for e in experts]
    for e in experts:
        e.zero_grad()
    Trainer("router", experts, scene, _cfg(iters=1), router=router).run(progress=False)
    for e, g, r in zip(experts, grads, r0):
        delta = e.splats["router"].detach() - r
        # RAdam's first step is lr·g: 0.5 for (w, w_dir), 0.05 for w_time
        torch.testing.assert_close(delta[:, :2], -0.5 * g[:, :2], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(delta[:, 2], -0.05 * g[:, 2], atol=1e-6, rtol=1e-4)
        assert float(g[:, 2].abs().max()) > 0


def _run(mode, tmp_path, name, stop_after=None, resume=False, densify=True):
    torch.manual_seed(99)  # the trainer must not depend on the caller's RNG state
    experts = [ToyExpert(seed=1)] if mode == "expert" else [ToyExpert(seed=1), ToyExpert(seed=2, sh_degree=1)]
    router = None if mode == "expert" else PixelRouter(temperature=0.5)
    tr = Trainer(mode, experts, toy_scene(), _cfg(densify=densify), router=router,
                 checkpoint=os.path.join(tmp_path, name))
    if stop_after is not None:
        tr.run(stop_after=stop_after, progress=False)
        torch.manual_seed(12345)  # a "new process"
        experts = [ToyExpert(seed=1)] if mode == "expert" else [ToyExpert(seed=1), ToyExpert(seed=2, sh_degree=1)]
        router = None if mode == "expert" else PixelRouter(temperature=0.5)
        tr = Trainer(mode, experts, toy_scene(), _cfg(densify=densify), router=router,
                     checkpoint=os.path.join(tmp_path, name))
        assert load_checkpoint(tr.checkpoint)["step"] == stop_after
        tr.run(resume=True, progress=False)
    else:
        tr.run(progress=False)
    return tr


@pytest.mark.parametrize("mode", ["expert", "joint"])
def test_resume_equals_uninterrupted(tmp_path, mode):
    full = _run(mode, tmp_path, "a.pt")
    resumed = _run(mode, tmp_path, "b.pt", stop_after=5)
    assert full.history == resumed.history
    for e1, e2 in zip(full.experts, resumed.experts):
        assert e1.num_gaussians == e2.num_gaussians
        for k in e1.splats:
            assert torch.equal(e1.splats[k], e2.splats[k]), k
    if mode == "expert":
        assert full.experts[0].num_gaussians != 60  # densification ran (and was replayed exactly)
    else:
        assert all(torch.equal(a, b) for a, b in zip(full.router.parameters(), resumed.router.parameters()))


def test_a_setting_missing_from_an_older_checkpoint_counts_as_its_default(tmp_path):
    path = os.path.join(tmp_path, "ck.pt")
    Trainer("expert", [ToyExpert(seed=1)], toy_scene(), _cfg(densify=False), checkpoint=path).run(
        stop_after=4, progress=False)
    ck = load_checkpoint(path)
    del ck["config"]["network_lr_scale"]  # as written before the setting existed
    save_atomic(ck, path)
    with pytest.raises(ValueError, match="network_lr_scale"):
        Trainer("expert", [ToyExpert(seed=1)], toy_scene(), _cfg(densify=False, network_lr_scale=10.0),
                checkpoint=path).run(resume=True, progress=False)
    tr = Trainer("expert", [ToyExpert(seed=1)], toy_scene(), _cfg(densify=False), checkpoint=path)
    tr.run(resume=True, progress=False)
    assert tr.step == 8


def test_atomic_checkpoint(tmp_path, monkeypatch):
    path = os.path.join(tmp_path, "ck.pt")
    save_atomic({"a": torch.ones(3)}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(3))

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_atomic({"a": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(3))  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]  # no temporary left behind
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(os.path.join(tmp_path, "missing.pt"))


def test_members_share_the_time_tagged_cloud_and_only_temporal_experts_use_its_times():
    """With a per-frame cloud every expert starts from its points; the polynomial and keyframe experts also
    centre Gaussians in time at their point's frame. Without it, the frame-0 cloud; an explicit option wins."""
    import types

    from moegs.experiment import ExperimentConfig, build_member

    g = torch.Generator().manual_seed(0)
    pts, cols = torch.randn(30, 3, generator=g), torch.rand(30, 3, generator=g)
    tp = torch.cat([torch.randn(50, 3, generator=g), torch.rand(50, 3, generator=g),
                    torch.linspace(0, 1, 50)[:, None]], 1)
    scene = types.SimpleNamespace(points=pts, point_colors=cols, radius=2.0, temporal_points=tp)
    cfg = ExperimentConfig(sh_degree=0)
    poly = build_member("polynomial", scene, cfg)
    assert poly.num_gaussians == 50
    assert torch.equal(poly.splats["means"].detach(), tp[:, :3])
    assert torch.allclose(poly.splats["t_center"].detach(), tp[:, 6])
    assert torch.allclose(poly.splats["t_scale"].detach(), torch.full((50,), -2.0))
    hexplane = build_member("hexplane", scene, cfg)
    assert torch.equal(hexplane.splats["means"].detach(), tp[:, :3])
    keyframe = build_member("keyframe", scene, cfg)  # later-frame points start dynamic, centred at their time
    assert torch.equal(keyframe.splats["dynamic"].detach(), (tp[:, 6] > 0).float())
    assert torch.allclose(keyframe.splats["t_center"].detach()[1:, 0], tp[1:, 6])
    assert torch.allclose(hexplane.splats["sh0"].detach()[:, 0], (tp[:, 3:6] - 0.5) / 0.28209479177387814)
    scene.temporal_points = None
    assert build_member("polynomial", scene, cfg).num_gaussians == 30
    assert build_member("hexplane", scene, cfg).num_gaussians == 30
    scene.temporal_points = tp
    own = ExperimentConfig(sh_degree=0, expert_options={"polynomial": {"point_times": torch.zeros(30)}})
    assert build_member("polynomial", scene, own).num_gaussians == 30


def test_class_means_and_class_oracle_on_hand_computed_values():
    from moegs.experiment import class_means, class_oracle_psnr

    labels = torch.tensor([[[0, 0], [1, -1]]])  # [V=1, 2, 2]
    a = torch.tensor([[[0.01, 0.03], [0.04, 9.0]]])  # member 0: class 0 mean 0.02, class 1: 0.04
    b = torch.tensor([[[0.02, 0.04], [0.01, 5.0]]])  # member 1: class 0 mean 0.03, class 1: 0.01
    means = class_means(a, labels, 3)
    assert means[:2] == pytest.approx([0.02, 0.04]) and means[2] is None
    # oracle: class 0 from member 0, class 1 from member 1, the unlabelled pixel keeps member 0's error
    composed = (0.01 + 0.03 + 0.01 + 9.0) / 4
    assert class_oracle_psnr(torch.stack([a, b]), labels, 2) == pytest.approx(-10 * math.log10(composed))


def test_class_blend_oracle_matches_numpy_least_squares_per_class():
    import numpy as np

    from moegs.experiment import class_blend_oracle_psnr

    g = torch.Generator().manual_seed(3)
    members = torch.rand(3, 2, 5, 4, 3, generator=g)  # K=3 members, V=2 views of 5x4
    target = torch.rand(2, 5, 4, 3, generator=g)
    labels = torch.randint(0, 2, (2, 5, 4), generator=g)
    labels[0, 0, 0] = -1  # unlabelled pixel keeps member 0
    want = members[0].numpy().astype(np.float64).copy()
    for k in range(2):
        m = (labels == k).numpy()
        A = np.stack([members[i].numpy()[m].ravel() for i in range(3)], axis=1).astype(np.float64)
        w = np.linalg.lstsq(A, target.numpy()[m].ravel().astype(np.float64), rcond=None)[0]
        want[m] = (A @ w).reshape(-1, 3)
    mse = ((want - target.numpy()) ** 2).reshape(2, -1).mean(1)
    got = class_blend_oracle_psnr(members, target, labels, 2)
    assert got == pytest.approx(float(np.mean(-10 * np.log10(mse))), rel=1e-5)
    # never below the best single member restricted to the same classes, and exact when the target is a blend
    assert got >= max(class_blend_oracle_psnr(members[i:i + 1], target, labels, 2) for i in range(3)) - 1e-9
    exact = 0.3 * members[1] - 0.2 * members[2] + 0.9 * members[0]
    labels_all = labels.clamp_min(0)
    assert class_blend_oracle_psnr(members, exact, labels_all, 2) > 100
    with pytest.raises(ValueError, match="shapes"):
        class_blend_oracle_psnr(members, target[:1], labels, 2)


def test_class_table_lists_singles_and_mixtures():
    from moegs.experiment import class_table

    res = {"label_names": ["room", "cube"],
           "experts": {"static": {"class_mse": [0.002, None]}, "mlp": {}},
           "moe_staged": {"class_mse": {"blend": [0.001, 0.02]}, "class_oracle_psnr": 25.5,
                          "class_blend_oracle_psnr": 26.25},
           "singles_class_blend_oracle_psnr": 27.125}
    lines = class_table(res)
    assert "room" in lines[0] and "cube" in lines[0]
    assert any(line.startswith("static") and "2.00" in line and "-" in line for line in lines)
    assert any(line.startswith("MoE staged") and "20.00" in line for line in lines)
    assert lines[-3].endswith("25.50 dB") and lines[-2].endswith("26.25 dB")
    assert "all 2 single experts" in lines[-1] and lines[-1].endswith("27.12 dB")
    assert class_table({"experts": {"mlp": {}}}) == []
