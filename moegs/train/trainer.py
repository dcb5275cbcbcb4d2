"""Training loops: one expert alone, the router of frozen experts (staged), experts + router end to end (joint).

Every run is deterministic for a fixed seed: the training camera of step s comes from a permutation seeded by
(seed, epoch), and the global RNG (used by densification's splitting) is reseeded from (seed, step) before each
step, so a run resumed from a checkpoint follows exactly the same path as an uninterrupted one.
"""

import math
import os
import time
import types
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import torch
from gsplat import DefaultStrategy
from torch import nn
from tqdm import tqdm

from moegs.mixture import MixtureOfExperts, render_expert
from moegs.router import PixelRouter
from moegs.train.checkpoint import load_checkpoint, save_atomic
from moegs.train.losses import photometric_loss

MODES = ("expert", "router", "joint")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (iterations count optimiser steps, one view each).

    The expert learning rates are each expert's own (``splat_lrs`` / ``network_param_groups``); the position and
    network rates decay exponentially to ``lr_final_ratio`` of their start over the run, as in 3DGS.
    ``network_lr_scale`` multiplies the start rate of every network group (deformation MLPs, feature planes,
    temporal tables; not the per-Gaussian tensors): 1 keeps each expert's published rates.
    Router (MoE-GS, RAdam): ``w, w_dir`` 0.5 decaying log-linearly to 1 % over ``router_decay_steps``,
    ``w_time`` 0.05, Φ 0.05.
    """

    iters: int = 1000
    seed: int = 0
    lambda_dssim: float = 0.2
    lr_final_ratio: float = 0.01
    network_lr_scale: float = 1.0
    densify: bool = True
    refine_start: int = 100
    refine_every: int = 100
    refine_stop_frac: float = 0.6
    grow_grad2d: float = 0.0002
    max_gaussians: int = 0  # > 0: an expert stops densifying once it holds this many Gaussians
    router_lr_w: float = 0.5
    router_lr_time: float = 0.05
    router_lr_mlp: float = 0.05
    router_decay_steps: int = 10_000
    joint_warmup: int = 0  # joint mode: first steps train each expert alone on the image
    checkpoint_every: int = 250


def _frozen(expert: nn.Module, keep_router: bool) -> None:
    for p in expert.parameters():
        p.requires_grad_(False)
    if keep_router:
        expert.splats["router"].requires_grad_(True)


def camera_index(step: int, n: int, seed: int) -> int:
    """Training camera of ``step``: epoch-wise random permutations seeded by ``(seed, epoch)``."""
    epoch, i = divmod(step, n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return int(torch.randperm(n, generator=g)[i])


class Trainer:
    """Runs one training stage.

    Args:
        mode: ``"expert"`` (one expert, its own image loss), ``"router"`` (experts frozen, only the router:
            per-Gaussian router parameters and Φ), ``"joint"`` (experts and router together on the blend).
        experts: the experts (exactly one for ``"expert"``).
        scene: a :class:`moegs.data.cameras.SceneData`-like object (``train`` cameras with images,
            ``background [3]``, ``radius``).
        cfg: :class:`TrainConfig`.
        router: the :class:`PixelRouter` (router / joint modes).
        checkpoint: path of the checkpoint file (written every ``cfg.checkpoint_every`` steps and at the end).
        desc: progress-bar label.
    """

    def __init__(self, mode: str, experts: Sequence[nn.Module], scene, cfg: TrainConfig,
                 router: Optional[PixelRouter] = None, checkpoint: Optional[str] = None, desc: str = ""):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "expert" and len(experts) != 1:
            raise ValueError("mode 'expert' trains exactly one expert")
        if mode != "expert" and router is None:
            raise ValueError(f"mode {mode!r} needs a router")
        if not scene.train:
            raise ValueError("the scene has no training cameras")
        if cfg.iters < 1:
            raise ValueError(f"iters must be >= 1, got {cfg.iters}")
        if not (math.isfinite(cfg.network_lr_scale) and cfg.network_lr_scale > 0):
            raise ValueError(f"network_lr_scale must be finite and > 0, got {cfg.network_lr_scale}")
        self.mode, self.experts, self.scene, self.cfg = mode, list(experts), scene, cfg
        self.router, self.checkpoint, self.desc = router, checkpoint, desc or mode
        self.background = scene.background.to(torch.float32)
        self.step = 0
        self.seconds = 0.0
        self.mixture = None
        if mode != "expert":
            self.mixture = MixtureOfExperts(self.experts, router, backgrounds=self.background)
        self.history: List[float] = []

    # ----------------------------------------------------------------------------------------------- optimisers
    def _setup(self) -> None:
        cfg = self.cfg
        self.splat_opts: List[Dict[str, torch.optim.Optimizer]] = []
        self.net_opts: List[Optional[torch.optim.Optimizer]] = []
        self.strategies, self.strategy_states = [], []
        train_experts = self.mode in ("expert", "joint")
        for e in self.experts:
            if not train_experts:
                _frozen(e, keep_router=True)
            opts = {}
            lrs = e.splat_lrs()
            for k, p in e.splats.items():
                if k == "router":
                    opts[k] = torch.optim.RAdam([p], lr=cfg.router_lr_w)
                elif train_experts:
                    opts[k] = torch.optim.Adam([p], lr=lrs[k], eps=1e-15)
            self.splat_opts.append(opts)
            groups = [dict(g) for g in e.network_param_groups()] if train_experts else []
            groups = [g for g in groups if len(list(g["params"])) > 0]
            for g in groups:
                g["lr"] = g["lr"] * cfg.network_lr_scale
                g["initial_lr"] = g["lr"]
            self.net_opts.append(torch.optim.Adam(groups, eps=1e-15) if groups else None)
            if train_experts and cfg.densify:
                # on the blend, an expert's screen-space gradients carry its gate (1/K on average), so its
                # growth threshold is scaled by 1/K to densify like an expert trained alone
                grow = cfg.grow_grad2d / (len(self.experts) if self.mode == "joint" else 1)
                s = DefaultStrategy(
                    refine_start_iter=cfg.refine_start, refine_every=cfg.refine_every,
                    refine_stop_iter=int(cfg.refine_stop_frac * cfg.iters), grow_grad2d=grow,
                    reset_every=10**9, verbose=False,
                )
                s.check_sanity(e.splats, opts)
                self.strategies.append(s)
                self.strategy_states.append(s.initialize_state(scene_scale=float(self.scene.radius)))
            else:
                self.strategies.append(None)
                self.strategy_states.append(None)
        self.router_opt = None
        if self.router is not None:
            self.router_opt = torch.optim.RAdam(self.router.mlp.parameters(), lr=cfg.router_lr_mlp)
        self.means_lr0 = [float(o["means"].param_groups[0]["lr"]) if "means" in o else 0.0 for o in self.splat_opts]

    def _set_lrs(self, step: int) -> None:
        cfg = self.cfg
        frac = step / max(1, cfg.iters)
        decay = cfg.lr_final_ratio**frac
        for k, opts in enumerate(self.splat_opts):
            if "means" in opts:
                opts["means"].param_groups[0]["lr"] = self.means_lr0[k] * decay
            if "router" in opts:
                opts["router"].param_groups[0]["lr"] = cfg.router_lr_w * 0.01 ** min(1.0, step / cfg.router_decay_steps)
            if self.net_opts[k] is not None:
                for g in self.net_opts[k].param_groups:
                    g["lr"] = g["initial_lr"] * decay

    def _step_optimizers(self) -> None:
        scale_time = self.cfg.router_lr_time / self.cfg.router_lr_w
        for k, opts in enumerate(self.splat_opts):
            for name, opt in opts.items():
                if name == "router":
                    p = self.experts[k].splats["router"]
                    if p.grad is None:
                        continue
                    old = p.detach()[:, 2].clone()
                    opt.step()
                    with torch.no_grad():  # w_time moves at its own rate: RAdam's update is linear in lr
                        p[:, 2] = old + scale_time * (p[:, 2] - old)
                else:
                    opt.step()
            if self.net_opts[k] is not None:
                self.net_opts[k].step()
        if self.router_opt is not None and self.mode != "expert":
            self.router_opt.step()
        for opts in self.splat_opts:
            for opt in opts.values():
                opt.zero_grad(set_to_none=True)
        for o in self.net_opts:
            if o is not None:
                o.zero_grad(set_to_none=True)
        if self.router_opt is not None:
            self.router_opt.zero_grad(set_to_none=True)

    # ----------------------------------------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {
            "mode": self.mode, "step": self.step, "seconds": self.seconds, "config": asdict(self.cfg),
            "history": list(self.history),
            "experts": [
                {
                    "name": getattr(e, "name", ""),
                    "splats": {k: v.detach().clone() for k, v in e.splats.items()},
                    "state_dict": e.state_dict(),
                    "splat_opts": {k: o.state_dict() for k, o in self.splat_opts[i].items()},
                    "net_opt": None if self.net_opts[i] is None else self.net_opts[i].state_dict(),
                    "strategy": self.strategy_states[i],
                }
                for i, e in enumerate(self.experts)
            ],
            "router": None if self.router is None else self.router.state_dict(),
            "router_opt": None if self.router_opt is None else self.router_opt.state_dict(),
        }

    def save(self) -> None:
        if self.checkpoint:
            save_atomic(self.state(), self.checkpoint)

    def _load(self, ck: dict) -> None:
        if ck.get("mode") != self.mode or len(ck["experts"]) != len(self.experts):
            raise ValueError(f"checkpoint {self.checkpoint} is for another run (mode {ck.get('mode')!r}, "
                             f"{len(ck['experts'])} experts)")
        names = [getattr(e, "name", "") for e in self.experts]
        if [s.get("name", "") for s in ck["experts"]] != names:
            raise ValueError(f"checkpoint {self.checkpoint} holds experts {[s.get('name') for s in ck['experts']]}, "
                             f"this run trains {names}")
        # a setting missing from an older checkpoint had its default then
        saved = {**asdict(TrainConfig()), **ck.get("config", {})}
        changed = sorted(k for k, v in asdict(self.cfg).items() if saved[k] != v)
        if changed:
            raise ValueError(f"checkpoint {self.checkpoint} was written with other settings ({', '.join(changed)}); "
                             "resume with the same settings, or use a new output folder")
        for e, s in zip(self.experts, ck["experts"]):
            load_expert_state(e, s)
        if self.router is not None and ck["router"] is not None:
            self.router.load_state_dict(ck["router"])
        self._setup()
        for i, s in enumerate(ck["experts"]):
            for k, o in self.splat_opts[i].items():
                o.load_state_dict(s["splat_opts"][k])
            if self.net_opts[i] is not None:
                self.net_opts[i].load_state_dict(s["net_opt"])
            self.strategy_states[i] = s["strategy"]
        if self.router_opt is not None and ck["router_opt"] is not None:
            self.router_opt.load_state_dict(ck["router_opt"])
        self.step, self.seconds, self.history = ck["step"], ck["seconds"], list(ck["history"])

    # ----------------------------------------------------------------------------------------------- training
    def run(self, resume: bool = False, stop_after: Optional[int] = None, progress: bool = True) -> "Trainer":
        """Train up to ``cfg.iters`` steps (or only until step ``stop_after``, to simulate an interruption).

        With ``resume`` and an existing checkpoint, training continues from the saved step.
        """
        if resume and self.checkpoint and os.path.exists(self.checkpoint):
            self._load(load_checkpoint(self.checkpoint))
        else:
            self._setup()
        cfg = self.cfg
        end = cfg.iters if stop_after is None else min(cfg.iters, stop_after)
        cams = self.scene.train
        bar = tqdm(range(self.step, end), initial=self.step, total=cfg.iters, desc=self.desc, unit="it",
                   dynamic_ncols=True, disable=not progress, leave=False)
        t0 = time.perf_counter() - self.seconds
        for step in bar:
            torch.manual_seed(cfg.seed * 1_000_003 + step)
            cam = cams[camera_index(step, len(cams), cfg.seed)]
            self._set_lrs(step)
            for e in self.experts:
                if self.mode != "router" and hasattr(e, "step_schedule"):
                    e.step_schedule(step, cfg.iters)
            loss = self._train_step(step, cam)
            self.history.append(loss)
            self.step = step + 1
            self.seconds = time.perf_counter() - t0
            if step % 25 == 0:
                bar.set_postfix(loss=f"{loss:.4f}", n=sum(e.num_gaussians for e in self.experts))
            if self.checkpoint and cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0:
                self.save()
        bar.close()
        self.save()
        return self

    def _train_step(self, step: int, cam) -> float:
        cfg = self.cfg
        target = cam.image.to(torch.float32)
        t = float(cam.time)
        warm = self.mode == "joint" and step < cfg.joint_warmup
        if self.mode == "expert" or warm:
            loss = 0.0
            metas = []
            for e in self.experts:
                img, _, meta = render_expert(e, cam, t, self.background)
                if self.strategies[0] is not None:
                    meta["means2d"].retain_grad()
                loss = loss + photometric_loss(img, target, cfg.lambda_dssim) + _regularization(e, t)
                metas.append(meta)
            loss.backward()
            infos = metas
        else:
            out = self.mixture.render(cam, t)
            meta = out.meta
            dens = any(s is not None for s in self.strategies)
            if dens:
                meta["means2d"].retain_grad()
            loss = photometric_loss(out.image, target, cfg.lambda_dssim)
            if self.mode == "joint":
                loss = loss + sum(_regularization(e, t) for e in self.experts)
            loss.backward()
            infos = _split_meta(meta) if dens else [None] * len(self.experts)
        for k, e in enumerate(self.experts):
            s = self.strategies[k]
            full = cfg.max_gaussians > 0 and e.num_gaussians >= cfg.max_gaussians
            if s is not None and not full and infos[k] is not None and infos[k]["means2d"].grad is not None:
                s.step_post_backward(e.splats, self.splat_opts[k], self.strategy_states[k], step, infos[k])
        self._step_optimizers()
        return float(loss.detach())


def _regularization(expert: nn.Module, t: float):
    if hasattr(expert, "regularization"):
        r = expert.regularization(t)
        if isinstance(r, torch.Tensor):
            return r
    return 0.0


def _split_meta(meta: dict) -> List[dict]:
    """Per-expert views of a mixture render's meta, in the form gsplat's DefaultStrategy reads."""
    counts = meta["expert_counts"]
    grad = meta["means2d"].grad
    infos, start = [], 0
    for n in counts:
        sl = slice(start, start + n)
        g = None if grad is None else grad[:, sl]
        infos.append({
            "width": meta["width"], "height": meta["height"], "n_cameras": meta["n_cameras"],
            "radii": meta["radii"][:, sl], "gaussian_ids": None,
            "means2d": types.SimpleNamespace(grad=g, absgrad=None),
        })
        start += n
    return infos


def load_expert_state(expert: nn.Module, saved: dict) -> None:
    """Resize ``expert.splats`` to the saved Gaussian count, then load its full state dict."""
    for k, v in saved["splats"].items():
        req = expert.splats[k].requires_grad if k in expert.splats else True
        expert.splats[k] = nn.Parameter(v.clone(), requires_grad=req)
    expert.load_state_dict(saved["state_dict"])


def expert_checkpoint(expert: nn.Module) -> dict:
    """Weights of one expert for :func:`load_expert_state` (no optimiser state)."""
    return {"name": getattr(expert, "name", ""), "splats": {k: v.detach().clone() for k, v in expert.splats.items()},
            "state_dict": expert.state_dict(), "sh_degree": getattr(expert, "sh_degree", None)}


def total_loss_is_finite(history: Sequence[float]) -> bool:
    return all(math.isfinite(x) for x in history)
