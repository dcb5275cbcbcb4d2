"""Time the CUDA path of moegs with CUDA events (needs a GPU; skips cleanly without one).

Same scenes, contenders and JSON record keys as ``bench_rasterize.py`` (``moegs_fwd_median_s``,
``moegs_fwdbwd_median_s``, ``moegs_experts_*``, ``moegs_separate_*``, ratios), with ``"device": "cuda"``
and the GPU name in the machine info. Usage on a GPU machine built with CUDA kernels:

    python benchmarks/bench_cuda.py --json cuda.json --append-results benchmarks/RESULTS.md
"""

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_rasterize as B  # noqa: E402
from scenes import Scene, make_scene  # noqa: E402


def cuda_unavailable_reason() -> Optional[str]:
    if not torch.cuda.is_available():
        return "no CUDA device"
    import moegs

    if not moegs.has_cuda_kernels():
        return "this moegs build has no CUDA kernels (rebuild with MOEGS_FORCE_CUDA=1)"
    return None


def scene_to(scene: Scene, device: str) -> Scene:
    values = {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene)}
    return Scene(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in values.items()})


def time_cuda(forward: Callable[[], torch.Tensor], inputs: Sequence[torch.Tensor], repeats: int) -> Dict:
    """Median/min seconds of forward and forward + backward, measured with CUDA events after a warm-up."""
    fwd, total = [], []
    for i in range(repeats + 1):
        start, mid, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        start.record()
        loss = forward()
        mid.record()
        torch.autograd.grad(loss, list(inputs), allow_unused=True)
        end.record()
        torch.cuda.synchronize()
        if i > 0:
            fwd.append(start.elapsed_time(mid) / 1e3)
            total.append(start.elapsed_time(end) / 1e3)
    return {"fwd_median_s": statistics.median(fwd), "fwd_min_s": min(fwd),
            "fwdbwd_median_s": statistics.median(total), "fwdbwd_min_s": min(total),
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def bench_one(n: int, res: int, experts: int, repeats: int, seed: int) -> Dict:
    scene = scene_to(make_scene(n, res, res, num_experts=max(experts, 1), seed=seed), "cuda")
    leaves = scene.fresh_leaves()
    rec: Dict = {"n": n, "width": res, "height": res, "experts": experts, "repeats": repeats, "dtype": "float32"}

    def run(name, fn, inputs):
        torch.cuda.reset_peak_memory_stats()
        for key, value in time_cuda(fn, inputs, repeats).items():
            rec[f"{name}_{key}"] = value

    run("moegs", lambda: B._loss(B.moegs_single(scene, leaves), scene.grad_image), leaves)
    if experts > 0:
        parts = B.split_by_expert(scene)
        run("moegs_experts", lambda: B._loss(B.moegs_experts(scene, leaves), scene.grad_experts), leaves)
        run("moegs_separate", lambda: B._loss(B.moegs_separate(scene, parts), scene.grad_experts),
            [t for p in parts for t in p])
        for kind in ("fwd", "fwdbwd"):
            rec[f"ratio_{kind}_separate_over_single"] = (
                rec[f"moegs_separate_{kind}_median_s"] / rec[f"moegs_experts_{kind}_median_s"])
    return rec


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Time moegs on CUDA with CUDA events (skips without a GPU).")
    p.add_argument("--sizes", type=B.parse_sizes, default=B.parse_sizes("100000x512,1000000x1024"))
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--append-results", type=Path, default=None, metavar="MD")
    args = p.parse_args(argv)
    reason = cuda_unavailable_reason()
    if reason:
        print(f"bench_cuda: skipped ({reason}); nothing was timed")
        return 0
    machine = {**B.machine_info(), "device": "cuda", "gpu": torch.cuda.get_device_name()}
    records = []
    for n, res in args.sizes:
        rec = bench_one(n, res, args.experts, args.repeats, args.seed)
        rec["machine"] = machine
        records.append(rec)
        print(f"N={n} {res}x{res}: fwd {1e3 * rec['moegs_fwd_median_s']:.2f} ms, "
              f"fwd+bwd {1e3 * rec['moegs_fwdbwd_median_s']:.2f} ms", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    if args.append_results:
        lines = [f"\n### CUDA ({machine['gpu']})\n", "| N | image | fwd ms | fwd+bwd ms | separate/single (K) |",
                 "|---:|---:|---:|---:|---:|"]
        for r in records:
            ratio = f"{r['ratio_fwdbwd_separate_over_single']:.2f}× ({r['experts']})" if r["experts"] else "-"
            lines.append(f"| {r['n']} | {r['width']}² | {1e3 * r['moegs_fwd_median_s']:.2f} | "
                         f"{1e3 * r['moegs_fwdbwd_median_s']:.2f} | {ratio} |")
        with open(args.append_results, "a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
