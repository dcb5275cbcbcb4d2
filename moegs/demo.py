"""The built-in demo: fit a K-expert Gaussian mixture to the analytic scene on the CPU.

Every Gaussian belongs to one of K experts and carries a gate logit. One
single-pass render gives each expert's image and its splatted gate-logit map;
the per-pixel softmax of those maps blends the experts. Training views and
held-out views come from :mod:`moegs.demo_scene`.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from moegs.blend import blend_experts
from moegs.demo_scene import SKY, make_views
from moegs.multi_expert import rasterize_experts
from moegs.utils.png import write_png

EXPERT_COLORS = torch.tensor(
    [[0.90, 0.25, 0.20], [0.20, 0.60, 0.90], [0.25, 0.80, 0.30], [0.95, 0.80, 0.20],
     [0.70, 0.35, 0.85], [0.30, 0.85, 0.85], [0.95, 0.55, 0.20], [0.60, 0.60, 0.60]]
)


@dataclass
class DemoConfig:
    out: str = "demo_out"
    iters: int = 300
    n_gaussians: int = 3000
    num_experts: int = 3
    width: int = 64
    height: int = 64
    train_views: int = 14
    test_views: int = 2
    seed: int = 0


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _init_params(cfg: DemoConfig):
    g = torch.Generator().manual_seed(cfg.seed)
    n = cfg.n_gaussians
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([1.5, 1.5, 0.55]) + torch.tensor([0, 0, -0.05])
    return {
        "means": means,
        "log_scales": torch.full((n, 3), math.log(0.06)) + 0.1 * torch.randn(n, 3, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "opacity_logits": torch.zeros(n),
        "color_logits": torch.randn(n, 3, generator=g) * 0.1,
        "gate_logits": torch.zeros(n, 1),
    }


def _render(params, expert_ids, cfg, viewmats, Ks):
    out = rasterize_experts(
        params["means"], params["quats"], torch.exp(params["log_scales"]),
        torch.sigmoid(params["opacity_logits"]), torch.sigmoid(params["color_logits"]), viewmats, Ks,
        cfg.width, cfg.height, expert_ids, cfg.num_experts, router_features=params["gate_logits"],
        backgrounds=torch.tensor(SKY), router_background=0.0,
    )
    blended, weights = blend_experts(out.colors, out.router, return_weights=True)  # [C, H, W, 3]
    return blended, weights, out


def run_demo(cfg: DemoConfig) -> dict:
    torch.manual_seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    views = make_views(cfg.train_views + cfg.test_views, cfg.width, cfg.height)
    step = len(views) // cfg.test_views
    test = [views[step // 2 + i * step] for i in range(cfg.test_views)]
    train = [v for v in views if all(v is not t for t in test)]
    tv = torch.stack([v.viewmat for v in train])
    tk = torch.stack([v.K for v in train])
    timg = torch.stack([v.image for v in train])

    params = {k: v.requires_grad_(True) for k, v in _init_params(cfg).items()}
    expert_ids = torch.arange(cfg.n_gaussians, dtype=torch.int32) % cfg.num_experts
    lrs = {"means": 3e-3, "log_scales": 1e-2, "quats": 2e-3, "opacity_logits": 5e-2, "color_logits": 5e-2,
           "gate_logits": 5e-2}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lr} for k, lr in lrs.items()])

    start = time.perf_counter()
    bar = tqdm(range(cfg.iters), desc="moegs demo", unit="it", dynamic_ncols=True)
    for it in bar:
        blended, _, _ = _render(params, expert_ids, cfg, tv, tk)
        loss = (blended - timg).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 10 == 0 or it == cfg.iters - 1:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", psnr=f"{psnr(blended.detach(), timg):.2f}")
    seconds = time.perf_counter() - start

    with torch.no_grad():
        results = {"config": asdict(cfg), "train_seconds": seconds, "views": []}
        vm = torch.stack([v.viewmat for v in test])
        ks = torch.stack([v.K for v in test])
        t0 = time.perf_counter()
        blended, weights, out = _render(params, expert_ids, cfg, vm, ks)
        render_ms = (time.perf_counter() - t0) * 1000 / len(test)
        train_blend, _, _ = _render(params, expert_ids, cfg, tv, tk)
        for i, v in enumerate(test):
            write_png(os.path.join(cfg.out, f"test{i}_target.png"), v.image)
            write_png(os.path.join(cfg.out, f"test{i}_blend.png"), blended[i])
            gate = (weights[i, :, :, :, 0].argmax(0))  # [H, W]
            write_png(os.path.join(cfg.out, f"test{i}_gates.png"), EXPERT_COLORS[gate % len(EXPERT_COLORS)])
            for k in range(cfg.num_experts):
                write_png(os.path.join(cfg.out, f"test{i}_expert{k}.png"), out.colors[i, k])
            results["views"].append({"view": i, "psnr": psnr(blended[i], v.image)})
        results["test_psnr"] = sum(r["psnr"] for r in results["views"]) / len(test)
        results["train_psnr"] = psnr(train_blend, timg)
        results["render_ms_per_view"] = render_ms
        results["gaussians_per_expert"] = torch.bincount(expert_ids, minlength=cfg.num_experts).tolist()
    tmp = os.path.join(cfg.out, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(cfg.out, "results.json"))
    return results
