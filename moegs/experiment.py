"""Train and evaluate single experts and their mixtures on one scene; write results.json, renders and videos.

One run (:func:`run_experiment`):

1. every requested single expert is trained alone for ``iters`` steps (same init, densification and learning
   rates for all), then evaluated on the held-out cameras;
2. staged mixture: copies of the trained members are frozen and the router trains for ``router_iters`` steps;
3. joint mixture: fresh members (same init) and the router train together on the blended image for ``iters``
   steps (each member therefore gets exactly ``iters`` updates, like a single expert);
4. equal compute: the best single expert trained again from the same init for K × ``iters`` steps.

Each stage keeps its own checkpoint under ``out/checkpoints``; with ``resume`` finished stages are loaded and an
interrupted one continues where it stopped.
"""

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from tqdm import tqdm

from moegs.mixture import MixtureOfExperts, render_expert
from moegs.router import PixelRouter
from moegs.train import TrainConfig, Trainer, expert_checkpoint, load_checkpoint, load_expert_state, save_atomic

ALL_EXPERTS = ("static", "mlp", "hexplane", "embedding", "polynomial", "keyframe")
# the published Technicolor triple of MoE-GS: Ex4DGS + E-D3DGS + STG
DEFAULT_MIXTURE = ("keyframe", "embedding", "polynomial")
# experts that also take each point's time from a scene's time-tagged point cloud, with their build options
# (polynomial: the narrow temporal scale of the published Spacetime-Gaussians Technicolor configuration;
# keyframe: points seen after the first frame start as dynamic Gaussians centred in time at their frame)
TEMPORAL_INIT = {"polynomial": {"t_scale_init": -2.0}, "keyframe": {}}
# colours of the gate maps, one per expert slot (red, blue, green, yellow, purple, cyan, ...)
GATE_COLORS = torch.tensor(
    [[0.90, 0.25, 0.20], [0.20, 0.50, 0.95], [0.25, 0.80, 0.30], [0.95, 0.80, 0.20],
     [0.70, 0.35, 0.85], [0.30, 0.85, 0.85], [0.95, 0.55, 0.20], [0.60, 0.60, 0.60]]
)


@dataclass
class ExperimentConfig:
    """What to train and for how long.

    Attributes:
        experts: the mixture's members (K = len(experts)).
        singles: single experts to train and report (the members are always included).
        iters: optimiser steps of every single expert and of every mixture member.
        router_iters: steps of the staged router stage.
        staged, joint: which mixtures to train.
        equal_compute: also train the best single expert for K × iters steps.
        primary: which mixture is reported as "moe" ("joint" or "staged").
        temperature: router softmax temperature (training and rendering).
        sh_degree: SH degree of every expert.
        joint_warmup: joint mode only: first steps train each member alone before the router joins.
        seed: seeds initialisation and camera order.
        max_gaussians: densification stops for an expert holding this many Gaussians (0: no limit).
        network_lr_scale: multiplies the start rate of every expert's network groups (deformation MLPs,
            HexPlane grids, temporal tables). The published rates are set for 14k–80k-step schedules; over the
            few hundred to few thousand steps run here they leave the deformation networks near their
            initialisation, so the default is 3×: the largest of 1, 3 and 10 with which every training mode stays
            stable (at 10× joint training from scratch lets the embedding expert's scale deltas blow up within
            150 steps; at 100× even an expert trained alone diverges). 1 keeps the published rates.
    """

    experts: Tuple[str, ...] = DEFAULT_MIXTURE
    singles: Tuple[str, ...] = DEFAULT_MIXTURE
    iters: int = 600
    router_iters: int = 300
    staged: bool = True
    joint: bool = True
    equal_compute: bool = False
    primary: str = "staged"
    temperature: float = 0.1
    sh_degree: int = 1
    joint_warmup: int = 0
    seed: int = 0
    max_gaussians: int = 20_000
    network_lr_scale: float = 3.0
    expert_options: Dict[str, dict] = field(default_factory=dict)

    def train_config(self, iters: int, **kw) -> TrainConfig:
        every = max(10, iters // 10)
        return TrainConfig(iters=iters, seed=self.seed, refine_start=every, refine_every=every, refine_stop_frac=0.5,
                           max_gaussians=self.max_gaussians, checkpoint_every=max(50, iters // 10),
                           network_lr_scale=self.network_lr_scale, **kw)


def build_member(name: str, scene, cfg: ExperimentConfig) -> nn.Module:
    """A freshly initialised expert from the scene's point cloud (the same init for every use of ``name``).

    When the scene has a time-tagged cloud (``scene.temporal_points`` [Q, 7]: xyz, rgb, time; the union of
    per-frame clouds), every expert starts from its points, so all experts share one initial point set.
    The experts in ``TEMPORAL_INIT`` also use each point's time (Spacetime Gaussians centre a Gaussian in
    time at the frame that seeded it; the keyframe expert makes the Gaussians of later frames dynamic, visible
    around their frame). Without it, every expert starts from ``scene.points``.
    """
    from moegs.experts import build_expert

    torch.manual_seed(cfg.seed)
    opts = dict(cfg.expert_options.get(name, {}))
    points, colors = scene.points, scene.point_colors
    temporal = getattr(scene, "temporal_points", None)
    if temporal is not None and len(temporal) and "point_times" not in opts:
        points, colors = temporal[:, :3], temporal[:, 3:6]
        if name in TEMPORAL_INIT:
            opts["point_times"] = temporal[:, 6]
            for k, v in TEMPORAL_INIT[name].items():
                opts.setdefault(k, v)
    return build_expert(name, points, colors, sh_degree=cfg.sh_degree, scene_radius=float(scene.radius), **opts)


# ----------------------------------------------------------------------------------------------------- evaluation
def class_means(values: torch.Tensor, labels: torch.Tensor, n_classes: int) -> List[Optional[float]]:
    """Mean of a per-pixel map over each label class (e.g. squared error → MSE per motion class).

    Args:
        values: [V, H, W] per-pixel values of V views.
        labels: [V, H, W] integer class per pixel (-1: unknown, ignored).
        n_classes: number of classes C.
    Returns:
        C values: the mean of ``values`` over the pixels of each class (None for a class with no pixel).
    """
    out: List[Optional[float]] = []
    for k in range(n_classes):
        m = labels == k
        out.append(float(values[m].double().mean()) if bool(m.any()) else None)
    return out


def class_oracle_psnr(member_sq_err: torch.Tensor, labels: torch.Tensor, n_classes: int) -> float:
    """Held-out PSNR of the best per-class choice among members: an upper bound for any router that gives
    each motion class to one member everywhere (chosen with the held-out errors, so it is an oracle).

    Args:
        member_sq_err: [K, V, H, W] per-pixel squared error of each member.
        labels: [V, H, W] class per pixel; pixels of unknown class (-1) keep the first member's error.
    Returns:
        mean over the V views of the PSNR (dB) of the composed error map.
    """
    composed = member_sq_err[0].clone()
    for k in range(n_classes):
        m = labels == k
        if bool(m.any()):
            best = min(range(member_sq_err.shape[0]), key=lambda i: float(member_sq_err[i][m].double().mean()))
            composed[m] = member_sq_err[best][m]
    return _mean_view_psnr(composed)


def class_blend_oracle_psnr(member_images: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                            n_classes: int) -> float:
    """Held-out PSNR of the best per-class linear blend of members: within each class one weight per member
    (any sign, no softmax), fitted by least squares on the held-out pixels themselves. An upper bound for every
    router whose gates are constant within a motion class (a softmax gate is one such blend), and an oracle:
    the weights see the held-out targets.

    Args:
        member_images: [K, V, H, W, 3] renders of the K members on V views.
        targets: [V, H, W, 3] ground truth.
        labels: [V, H, W] class per pixel; pixels of unknown class (-1) keep the first member's colour.
    Returns:
        mean over the V views of the PSNR (dB) of the blended images.
    """
    K = member_images.shape[0]
    if member_images.shape[1:] != targets.shape or targets.shape[:3] != labels.shape:
        raise ValueError(f"shapes do not match: members {tuple(member_images.shape)}, targets "
                         f"{tuple(targets.shape)}, labels {tuple(labels.shape)}")
    blend = member_images[0].clone()
    for k in range(n_classes):
        m = labels == k
        if bool(m.any()):
            A = member_images[:, m].reshape(K, -1).T.double().cpu()  # [pixels·3, K]
            b = targets[m].reshape(-1, 1).double().cpu()
            w = torch.linalg.lstsq(A, b).solution  # [K, 1]; rank-deficient A (equal members) is fine
            blend[m] = (A @ w).to(blend).reshape(-1, 3)
    return _mean_view_psnr((blend - targets).square())


def _mean_view_psnr(sq_err: torch.Tensor) -> float:
    """Mean over views of the PSNR (dB) of per-pixel squared errors ``sq_err [V, ...]`` (signal peak 1)."""
    mse = sq_err.double().flatten(1).mean(1).clamp_min(1e-20)
    return float((-10.0 * torch.log10(mse)).mean())


def _labels_of(cameras: Sequence) -> Optional[torch.Tensor]:
    """[V, H, W] motion labels of the cameras, or None unless every camera has them."""
    labs = [getattr(c, "labels", None) for c in cameras]
    return None if any(x is None for x in labs) else torch.stack(labs)


@torch.no_grad()
def evaluate_expert(expert: nn.Module, cameras: Sequence, background: torch.Tensor,
                    images: Optional[list] = None) -> dict:
    """Mean PSNR / SSIM of one expert over ``cameras`` (each with an ``image``). The clamped renders
    ([H, W, 3] each) are appended to ``images`` when it is given."""
    from moegs.metrics import psnr, ssim

    ps, ss, se = [], [], []
    labels = _labels_of(cameras)  # per-pixel errors are kept only for the per-class numbers
    for cam in cameras:
        img, _, _ = render_expert(expert, cam, cam.time, background)
        img = img.clamp(0, 1)
        if images is not None:
            images.append(img)
        ps.append(psnr(img, cam.image))
        ss.append(ssim(img, cam.image))
        if labels is not None:
            se.append((img - cam.image).square().mean(-1))
    res = {"psnr": sum(ps) / len(ps), "ssim": sum(ss) / len(ss), "gaussians": int(expert.num_gaussians)}
    if labels is not None:
        res["class_mse"] = class_means(torch.stack(se), labels, int(labels.max()) + 1)
    return res


@torch.no_grad()
def evaluate_mixture(mixture: MixtureOfExperts, cameras: Sequence) -> dict:
    """Mean PSNR / SSIM of the blend over ``cameras``, per-member PSNR inside the mixture, and ``router_nmi``
    (normalised mutual information between the per-pixel argmax expert and the motion labels, where present).

    With motion labels, also: ``class_mse`` (blend and members, MSE per class), ``class_gate`` (mean gate of
    each member per class), ``class_oracle_psnr`` (see :func:`class_oracle_psnr`) and ``class_blend_oracle_psnr``
    (see :func:`class_blend_oracle_psnr`)."""
    import numpy as np

    from moegs.metrics import normalized_mutual_info, psnr, ssim

    ps, ss, arg, lab = [], [], [], []
    members, members_ssim = [[] for _ in mixture.experts], [[] for _ in mixture.experts]
    gate_share = torch.zeros(mixture.num_experts)
    labels = _labels_of(cameras)  # per-pixel maps are kept only for the per-class numbers
    se_blend, se_members, gates, member_images = [], [], [], []
    for cam in cameras:
        out = mixture.render(cam)
        img = out.image.clamp(0, 1)
        if labels is not None:
            se_blend.append((img - cam.image).square().mean(-1))
            member_images.append(torch.stack([x.clamp(0, 1) for x in out.expert_images]))
            se_members.append((member_images[-1] - cam.image).square().mean(-1))
            gates.append(out.gates)
        ps.append(psnr(img, cam.image))
        ss.append(ssim(img, cam.image))
        for k in range(mixture.num_experts):
            members[k].append(psnr(out.expert_images[k].clamp(0, 1), cam.image))
            members_ssim[k].append(ssim(out.expert_images[k].clamp(0, 1), cam.image))
        gate_share += out.gates.mean(dim=(1, 2))
        if getattr(cam, "labels", None) is not None:
            arg.append(out.gates.argmax(0).reshape(-1).numpy())
            lab.append(cam.labels.reshape(-1).numpy())
    res = {
        "psnr": sum(ps) / len(ps), "ssim": sum(ss) / len(ss),
        "member_psnr": {n: sum(v) / len(v) for n, v in zip(mixture.names, members)},
        "member_ssim": {n: sum(v) / len(v) for n, v in zip(mixture.names, members_ssim)},
        "gate_share": {n: float(g) / len(cameras) for n, g in zip(mixture.names, gate_share)},
        "gaussians": int(sum(e.num_gaussians for e in mixture.experts)),
    }
    res["router_nmi"] = float(normalized_mutual_info(np.concatenate(arg), np.concatenate(lab))) if arg else None
    if labels is not None:
        C = int(labels.max()) + 1
        members_se = torch.stack(se_members, 1)  # [K, V, H, W]
        gate_maps = torch.stack(gates, 1)  # [K, V, H, W]
        res["class_mse"] = {"blend": class_means(torch.stack(se_blend), labels, C),
                            **{n: class_means(members_se[k], labels, C) for k, n in enumerate(mixture.names)}}
        res["class_gate"] = {n: class_means(gate_maps[k], labels, C) for k, n in enumerate(mixture.names)}
        res["class_oracle_psnr"] = class_oracle_psnr(members_se, labels, C)
        targets = torch.stack([cam.image for cam in cameras])
        res["class_blend_oracle_psnr"] = class_blend_oracle_psnr(torch.stack(member_images, 1), targets, labels, C)
    return res


# ----------------------------------------------------------------------------------------------------- model files
def save_model(path: str, mixture: MixtureOfExperts, cfg: ExperimentConfig, mode: str) -> None:
    """Write a trained mixture (experts, router, backgrounds, build options) atomically."""
    save_atomic({
        "format": "moegs-mixture-1", "names": mixture.names, "mode": mode,
        "experts": [expert_checkpoint(e) for e in mixture.experts],
        "router": mixture.router.state_dict(), "temperature": mixture.router.temperature,
        "backgrounds": mixture.backgrounds.clone(), "config": asdict(cfg),
    }, path)


def load_model(path: str, scene) -> MixtureOfExperts:
    """Rebuild a mixture written by :func:`save_model` (``scene`` supplies the point cloud used to construct the
    experts before their saved weights are loaded)."""
    ck = load_checkpoint(path)
    if not isinstance(ck, dict) or ck.get("format") != "moegs-mixture-1":
        raise ValueError(f"{path} is not a moegs mixture model file")
    cfg = ExperimentConfig(**{k: (tuple(v) if k in ("experts", "singles") else v) for k, v in ck["config"].items()})
    experts = []
    for name, saved in zip(ck["names"], ck["experts"]):
        e = build_member(name, scene, cfg)
        load_expert_state(e, saved)
        experts.append(e)
    router = PixelRouter(temperature=ck["temperature"])
    router.load_state_dict(ck["router"])
    return MixtureOfExperts(experts, router, backgrounds=ck["backgrounds"]).eval()


# ----------------------------------------------------------------------------------------------------- media
def gate_image(gates: torch.Tensor) -> torch.Tensor:
    """``[K, H, W]`` gates → ``[H, W, 3]`` colour-coded map Σ_k gate_k · colour_k."""
    cols = GATE_COLORS[torch.arange(gates.shape[0]) % len(GATE_COLORS)]
    return torch.einsum("khw,kc->hwc", gates, cols)


@torch.no_grad()
def write_media(mixture: MixtureOfExperts, cameras: Sequence, out_dir: str, n_frames: int = 24) -> List[str]:
    """PNGs of every held-out view (target, blend, members, gate map) and two videos over time from the first
    held-out camera: ``blend.mp4`` and ``gates.mp4``. Returns the written paths."""
    from moegs.utils.png import write_png

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i, cam in enumerate(cameras):
        out = mixture.render(cam)
        items = {"target": cam.image, "blend": out.image, "gates": gate_image(out.gates)}
        for k, n in enumerate(mixture.names):
            items[f"expert_{n}"] = out.expert_images[k]
        for key, img in items.items():
            p = os.path.join(out_dir, f"view{i:02d}_{key}.png")
            write_png(p, img.clamp(0, 1))
            written.append(p)
    cam = cameras[0]
    blend, gates = [], []
    for f in tqdm(range(n_frames), desc="videos", unit="frame", leave=False):
        out = mixture.render(cam, f / max(1, n_frames - 1))
        blend.append(out.image.clamp(0, 1))
        gates.append(gate_image(out.gates))
    for name, frames in (("blend", blend), ("gates", gates)):
        written.append(_write_video(os.path.join(out_dir, f"{name}.mp4"), torch.stack(frames)))
    return written


def _write_video(path: str, frames: torch.Tensor, fps: int = 8) -> str:
    """``frames [F, H, W, 3]`` in [0, 1] → an H.264 mp4, or an animated PNG without imageio-ffmpeg.

    Returns the path actually written."""
    from moegs.utils.video import write_video

    return write_video(frames, path, fps=fps)


# ----------------------------------------------------------------------------------------------------- the run
def _stage(out: str, name: str) -> str:
    return os.path.join(out, "checkpoints", f"{name}.pt")


def run_experiment(scene, cfg: ExperimentConfig, out: str, resume: bool = False, media: bool = True,
                   progress: bool = True) -> dict:
    """Run the configured comparison on ``scene`` and write ``out/results.json``; returns the results dict.

    results.json: ``{"experts": {name: {"psnr", "ssim", "iters", "seconds", "gaussians"}}, "moe": {...},
    "moe_staged": {...}, "moe_joint": {...}, "equal_compute": {...}, "router_nmi": float, "best_single": name,
    "gain_db": moe − best single, "config": {...}}``. With motion labels on the held-out views also
    ``"singles_class_blend_oracle_psnr"`` (:func:`class_blend_oracle_psnr` over all single experts).
    """
    if cfg.primary not in ("joint", "staged"):
        raise ValueError(f"primary must be 'joint' or 'staged', got {cfg.primary!r}")
    if (cfg.primary == "joint" and not cfg.joint) or (cfg.primary == "staged" and not cfg.staged):
        raise ValueError(f"the primary mixture {cfg.primary!r} is not enabled")
    unknown = [n for n in (*cfg.experts, *cfg.singles) if n not in ALL_EXPERTS]
    if unknown:
        raise ValueError(f"unknown expert(s) {unknown}; choose from {', '.join(ALL_EXPERTS)}")
    if cfg.joint and not 0 <= cfg.joint_warmup < cfg.iters:
        raise ValueError(f"joint_warmup must be in [0, iters) = [0, {cfg.iters}), got {cfg.joint_warmup}")
    if len(cfg.experts) < 2 or len(set(cfg.experts)) != len(cfg.experts):
        raise ValueError(f"a mixture needs at least two different experts, got {cfg.experts}")
    os.makedirs(out, exist_ok=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    bg = scene.background.to(torch.float32)
    K = len(cfg.experts)
    results: dict = {"experts": {}, "config": asdict(cfg), "scene": getattr(scene, "name", ""),
                     "n_train_views": len(scene.train), "n_test_views": len(scene.test),
                     "label_names": getattr(scene, "label_names", None)}
    singles = list(dict.fromkeys([*cfg.singles, *(cfg.experts if cfg.staged else ())]))
    trained: Dict[str, nn.Module] = {}
    labels = _labels_of(scene.test)
    single_images: Dict[str, list] = {}
    for name in singles:
        e = build_member(name, scene, cfg)
        tr = Trainer("expert", [e], scene, cfg.train_config(cfg.iters), checkpoint=_stage(out, f"single_{name}"),
                     desc=f"{name} ({cfg.iters} it)").run(resume=resume, progress=progress)
        single_images[name] = [] if labels is not None else None
        ev = evaluate_expert(e, scene.test, bg, images=single_images[name])
        results["experts"][name] = {**ev, "iters": cfg.iters, "seconds": tr.seconds}
        _log(progress, f"{name:<11} PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.3f}  {tr.seconds:.0f} s")
        trained[name] = e
    best = max(singles, key=lambda n: results["experts"][n]["psnr"]) if singles else None
    results["best_single"] = best
    if labels is not None and len(singles) >= 2:
        targets = torch.stack([cam.image for cam in scene.test])
        stacked = torch.stack([torch.stack(single_images[n]) for n in singles])  # [S, V, H, W, 3]
        results["singles_class_blend_oracle_psnr"] = class_blend_oracle_psnr(
            stacked, targets, labels, int(labels.max()) + 1)
    del single_images

    if cfg.staged:
        members = [copy.deepcopy(trained[n]) for n in cfg.experts]
        router = PixelRouter(temperature=cfg.temperature, seed=cfg.seed)
        tr = Trainer("router", members, scene, cfg.train_config(cfg.router_iters, densify=False), router=router,
                     checkpoint=_stage(out, "staged_router"), desc=f"router ({cfg.router_iters} it)")
        tr.run(resume=resume, progress=progress)
        ev = evaluate_mixture(tr.mixture, scene.test)
        secs = sum(results["experts"][n]["seconds"] for n in cfg.experts) + tr.seconds
        results["moe_staged"] = {**ev, "iters": cfg.iters, "router_iters": cfg.router_iters, "seconds": secs,
                                 "experts": list(cfg.experts)}
        save_model(os.path.join(out, "model_staged.pt"), tr.mixture, cfg, "staged")
        _log(progress, f"staged MoE  PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.3f}  NMI {ev['router_nmi']}")
        staged_mix = tr.mixture

    if cfg.joint:
        members = [build_member(n, scene, cfg) for n in cfg.experts]
        router = PixelRouter(temperature=cfg.temperature, seed=cfg.seed)
        tcfg = cfg.train_config(cfg.iters, joint_warmup=cfg.joint_warmup)
        tr = Trainer("joint", members, scene, tcfg, router=router, checkpoint=_stage(out, "joint"),
                     desc=f"joint ({cfg.iters} it)").run(resume=resume, progress=progress)
        ev = evaluate_mixture(tr.mixture, scene.test)
        results["moe_joint"] = {**ev, "iters": cfg.iters, "seconds": tr.seconds, "experts": list(cfg.experts)}
        save_model(os.path.join(out, "model_joint.pt"), tr.mixture, cfg, "joint")
        _log(progress, f"joint MoE   PSNR {ev['psnr']:.2f} dB  SSIM {ev['ssim']:.3f}  NMI {ev['router_nmi']}")
        joint_mix = tr.mixture

    if cfg.equal_compute and best is not None:
        e = build_member(best, scene, cfg)
        tr = Trainer("expert", [e], scene, cfg.train_config(K * cfg.iters), checkpoint=_stage(out, f"equal_{best}"),
                     desc=f"{best} ({K * cfg.iters} it)").run(resume=resume, progress=progress)
        ev = evaluate_expert(e, scene.test, bg)
        results["equal_compute"] = {**ev, "name": best, "iters": K * cfg.iters, "seconds": tr.seconds}
        _log(progress, f"{best} x{K}   PSNR {ev['psnr']:.2f} dB")

    primary = results[f"moe_{cfg.primary}"]
    results["moe"] = {**primary, "mode": cfg.primary}
    results["router_nmi"] = primary["router_nmi"]
    results["gain_db"] = None if best is None else primary["psnr"] - results["experts"][best]["psnr"]
    mix = joint_mix if cfg.primary == "joint" else staged_mix
    if media:
        results["media"] = [os.path.relpath(p, out) for p in write_media(mix, scene.test, os.path.join(out, "renders"))]
    results["total_wall_seconds"] = time.perf_counter() - wall0
    results["total_cpu_seconds"] = time.process_time() - cpu0
    results["torch_threads"] = torch.get_num_threads()
    write_results(results, out)
    return results


def write_results(results: dict, out: str) -> str:
    path = os.path.join(out, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)
    return path


def _log(progress: bool, msg: str) -> None:
    if progress:
        tqdm.write(msg)


def results_table(results: dict) -> str:
    """A readable table of a results.json dict."""
    rows = [("model", "iters", "PSNR dB", "SSIM", "seconds", "Gaussians")]
    for n, r in results["experts"].items():
        rows.append((n, str(r["iters"]), f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['seconds']:.0f}",
                     str(r.get("gaussians", ""))))
    if "equal_compute" in results:
        r = results["equal_compute"]
        rows.append((f"{r['name']} (K× iters)", str(r["iters"]), f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
                     f"{r['seconds']:.0f}", str(r.get("gaussians", ""))))
    for key in ("moe_staged", "moe_joint"):
        if key in results:
            r = results[key]
            it = f"{r['iters']}+{r['router_iters']}r" if "router_iters" in r else str(r["iters"])
            rows.append((f"MoE {key[4:]} ({'+'.join(r['experts'])})", it, f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
                         f"{r['seconds']:.0f}", str(r.get("gaussians", ""))))
    lines = _format_rows(rows)
    tail = []
    if results.get("gain_db") is not None:
        tail.append(f"MoE ({results['moe'].get('mode', '')}) − best single ({results['best_single']}): "
                    f"{results['gain_db']:+.2f} dB")
    if results.get("router_nmi") is not None:
        tail.append(f"router NMI (argmax expert vs motion labels): {results['router_nmi']:.3f}")
    classes = class_table(results)
    return "\n".join(lines + [""] + tail + ([""] + classes if classes else []))


def _format_rows(rows: List[Tuple[str, ...]]) -> List[str]:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def class_table(results: dict) -> List[str]:
    """Lines of a table of held-out MSE ×10³ per motion class (single experts, each mixture's blend), then the
    staged mixture's per-class oracle; empty when the run had no motion labels."""
    rows = []
    for n, r in results.get("experts", {}).items():
        if r.get("class_mse"):
            rows.append((n, r["class_mse"]))
    for key in ("moe_staged", "moe_joint"):
        r = results.get(key, {})
        if r.get("class_mse"):
            rows.append((f"MoE {key[4:]}", r["class_mse"]["blend"]))
    if not rows:
        return []
    C = len(rows[0][1])
    names = results.get("label_names") or [f"class {k}" for k in range(C)]
    table = [("held-out MSE x1e3", *names[:C])]
    table += [(n, *("-" if v is None else f"{1e3 * v:.2f}" for v in vals)) for n, vals in rows]
    out = _format_rows(table)
    staged = results.get("moe_staged", {})
    if "class_oracle_psnr" in staged:
        out.append(f"best member per class, chosen on the held-out views (staged members): "
                   f"{staged['class_oracle_psnr']:.2f} dB")
    if "class_blend_oracle_psnr" in staged:
        out.append(f"best linear blend per class, fitted on the held-out views (staged members): "
                   f"{staged['class_blend_oracle_psnr']:.2f} dB")
    same_set = set(results.get("experts", {})) == set(staged.get("experts", ()))
    if results.get("singles_class_blend_oracle_psnr") is not None and not same_set:
        out.append(f"best linear blend per class, fitted on the held-out views (all {len(results['experts'])} "
                   f"single experts): {results['singles_class_blend_oracle_psnr']:.2f} dB")
    return out
