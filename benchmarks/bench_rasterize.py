"""CPU timings of moegs against the in-process PyTorch baseline (``torch_baseline.py``).

For every (threads, N, resolution) the script times, after one warm-up call each:

* ``moegs.rasterization`` (dense, RGB) and the PyTorch baseline: forward and forward + backward
  of ``loss = sum(image * G)`` with a fixed random G, as median and min over ``--repeats``;
* with ``--experts K``: one ``moegs.rasterize_experts`` pass against K separate single-expert
  ``moegs.rasterization`` calls on each expert's Gaussians (split before timing), and the baseline's
  per-expert renderer;
* the peak resident-memory growth of each measurement (Linux ``VmHWM``; ``getrusage`` otherwise).

All numbers are CPU wall times in this process; nothing here runs on a GPU. Progress goes to
stderr, results to ``--json`` and ``--append-results``.

    python benchmarks/bench_rasterize.py                       # 10000x256 and 100000x512
    python benchmarks/bench_rasterize.py --quick               # 2000x128 smoke run
    python benchmarks/bench_rasterize.py --sizes 50000x384 --threads 2 --json out.json
"""

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch_baseline  # noqa: E402
from scenes import Scene, make_scene  # noqa: E402

DEFAULT_SIZES = "10000x256,100000x512"
QUICK_SIZES = "2000x128"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ machine / memory
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> Dict:
    import moegs

    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "moegs": getattr(moegs, "__version__", "unknown"),
        "moegs_git": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
        "device": "cpu",
    }


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_free_memory() -> None:
    """Hands freed heap pages back to the OS (glibc), so RSS growth is measured from a low base."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak RSS growth (MB) over a block: resets Linux's VmHWM, else uses the getrusage peak."""

    def __enter__(self):
        gc.collect()
        _release_free_memory()
        self.start_rss = _status_kb("VmRSS")
        self.hwm_reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak resident set size of this process
            self.hwm_reset = True
        except OSError:
            pass
        self.start_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        if self.hwm_reset and self.start_rss is not None:
            self.growth_mb = max(0, _status_kb("VmHWM") - self.start_rss) / 1024.0
        else:  # only growth of the lifetime peak is visible
            self.growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.start_max) / 1024.0
        return False


# ------------------------------------------------------------------------------------- timing
def time_fwd_bwd(
    forward: Callable[[], torch.Tensor], inputs: Sequence[torch.Tensor], repeats: int
) -> Dict:
    """Median/min seconds of forward and forward + backward (one warm-up call first).

    ``forward`` returns the scalar loss; ``backward`` is ``torch.autograd.grad`` on ``inputs``.
    """
    fwd, total = [], []
    with PeakMemory() as mem:
        for i in range(repeats + 1):
            gc.collect()
            t0 = time.perf_counter()
            loss = forward()
            t1 = time.perf_counter()
            torch.autograd.grad(loss, list(inputs), allow_unused=True)
            t2 = time.perf_counter()
            del loss
            if i > 0:  # call 0 is the warm-up
                fwd.append(t1 - t0)
                total.append(t2 - t0)
    return {
        "fwd_median_s": statistics.median(fwd),
        "fwd_min_s": min(fwd),
        "fwdbwd_median_s": statistics.median(total),
        "fwdbwd_min_s": min(total),
        "peak_rss_growth_mb": round(mem.growth_mb, 1),
    }


def _loss(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (images * weights).sum()


# ------------------------------------------------------------------------------- the contenders
def moegs_single(scene: Scene, leaves):
    import moegs

    means, quats, scales, opacities, colors = leaves
    images, _, _ = moegs.rasterization(
        means, quats, scales, opacities, colors, scene.viewmats, scene.Ks, scene.width, scene.height,
        packed=False, sh_degree=scene.sh_degree,
    )
    return images  # [1, H, W, 3]


def baseline_single(scene: Scene, leaves):
    images, _ = torch_baseline.render(*leaves, scene.viewmats, scene.Ks, scene.width, scene.height,
                                      sh_degree=scene.sh_degree)
    return images  # [1, H, W, 3]


def moegs_experts(scene: Scene, leaves):
    import moegs

    means, quats, scales, opacities, colors = leaves
    out = moegs.rasterize_experts(
        means, quats, scales, opacities, colors, scene.viewmats, scene.Ks, scene.width, scene.height,
        scene.expert_ids, scene.num_experts, sh_degree=scene.sh_degree,
    )
    return out.colors  # [1, K, H, W, 3]


def moegs_separate(scene: Scene, expert_leaves):
    """K independent single-expert moegs calls, stacked to [1, K, H, W, 3]."""
    import moegs

    images = []
    for means, quats, scales, opacities, colors in expert_leaves:
        img, _, _ = moegs.rasterization(
            means, quats, scales, opacities, colors, scene.viewmats, scene.Ks, scene.width,
            scene.height, packed=False, sh_degree=scene.sh_degree,
        )
        images.append(img)
    return torch.stack(images, dim=1)


def baseline_experts(scene: Scene, leaves):
    images, _ = torch_baseline.render_experts(
        *leaves, scene.viewmats, scene.Ks, scene.width, scene.height, scene.expert_ids,
        scene.num_experts, sh_degree=scene.sh_degree,
    )
    return images  # [1, K, H, W, 3]


def split_by_expert(scene: Scene) -> List[List[torch.Tensor]]:
    """Per-expert leaf tensors (requires_grad), made once outside the timed region."""
    ids = scene.expert_ids.long()
    return [
        [t.detach()[ids == k].clone().requires_grad_(True) for t in scene.leaves()]
        for k in range(scene.num_experts)
    ]


# ---------------------------------------------------------------------------------------- run
def bench_one(threads: int, n: int, res: int, experts: int, repeats: int, seed: int,
              baseline_only: bool) -> Dict:
    torch.set_num_threads(threads)
    scene = make_scene(n, res, res, num_experts=max(experts, 1), seed=seed)
    rec: Dict = {"threads": threads, "n": n, "width": res, "height": res, "experts": experts,
                 "repeats": repeats, "dtype": "float32", "load_avg_1min": round(os.getloadavg()[0], 2)}
    leaves = scene.fresh_leaves()
    G, GK = scene.grad_image, scene.grad_experts

    def run(name: str, fn: Callable[[], torch.Tensor], inputs) -> None:
        log(f"  [{threads} thr, N={n}, {res}x{res}] {name} ...")
        r = time_fwd_bwd(fn, inputs, repeats)
        for key, value in r.items():
            rec[f"{name}_{key}"] = value
        log(f"      fwd {1e3 * r['fwd_median_s']:.1f} ms, fwd+bwd {1e3 * r['fwdbwd_median_s']:.1f} ms "
            f"(median), peak RSS +{r['peak_rss_growth_mb']:.0f} MB")

    if not baseline_only:
        with torch.no_grad():
            diff = (moegs_single(scene, leaves) - baseline_single(scene, leaves)).abs().max().item()
        rec["max_abs_diff_vs_baseline"] = diff
        log(f"  [{threads} thr, N={n}, {res}x{res}] max |moegs - baseline| = {diff:.2e}")
        run("moegs", lambda: _loss(moegs_single(scene, leaves), G), leaves)
    run("torch", lambda: _loss(baseline_single(scene, leaves), G), leaves)
    if not baseline_only:
        for kind in ("fwd", "fwdbwd"):
            rec[f"ratio_{kind}_torch_over_moegs"] = (
                rec[f"torch_{kind}_median_s"] / rec[f"moegs_{kind}_median_s"])

    if experts > 0:
        if not baseline_only:
            parts = split_by_expert(scene)
            flat_parts = [t for p in parts for t in p]
            run("moegs_experts", lambda: _loss(moegs_experts(scene, leaves), GK), leaves)
            run("moegs_separate", lambda: _loss(moegs_separate(scene, parts), GK), flat_parts)
        run("torch_experts", lambda: _loss(baseline_experts(scene, leaves), GK), leaves)
        if not baseline_only:
            for kind in ("fwd", "fwdbwd"):
                single = rec[f"moegs_experts_{kind}_median_s"]
                rec[f"ratio_{kind}_separate_over_single"] = rec[f"moegs_separate_{kind}_median_s"] / single
                rec[f"ratio_{kind}_torch_experts_over_moegs_experts"] = (
                    rec[f"torch_experts_{kind}_median_s"] / single)
    return rec


# ------------------------------------------------------------------------------------ reports
def _ms(rec: Dict, name: str, kind: str) -> str:
    med, mn = rec.get(f"{name}_{kind}_median_s"), rec.get(f"{name}_{kind}_min_s")
    if med is None:
        return "–"
    return f"{1e3 * med:.0f} ({1e3 * mn:.0f})"


def _ratio(rec: Dict, key: str) -> str:
    v = rec.get(key)
    return "–" if v is None else f"{v:.1f}×"


def _mb(rec: Dict, name: str) -> str:
    v = rec.get(f"{name}_peak_rss_growth_mb")
    return "–" if v is None else f"{v:.0f}"


def markdown_table(records: List[Dict], machine: Dict, command: str, when: Optional[str] = None) -> str:
    when = when or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    K = records[0]["experts"] if records else 0
    lines = [
        f"### {when}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']}, "
        f"moegs {machine['moegs']} ({machine['moegs_git']}), {machine['platform']}; "
        f"1-min load average at start {machine['load_avg_1min_at_start']}. CPU only.",
        "",
        "Times in ms, median (min) of the repeats after a warm-up; ratios from medians. "
        "RSS = peak resident-memory growth during that measurement, MB; load = 1-minute load average "
        "when the row started (other processes on the machine).",
        "",
        "| threads | N | image | moegs fwd | moegs fwd+bwd | torch fwd | torch fwd+bwd | torch/moegs fwd "
        "| torch/moegs fwd+bwd | RSS moegs | RSS torch | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['threads']} | {r['n']} | {r['width']}² | {_ms(r, 'moegs', 'fwd')} | "
            f"{_ms(r, 'moegs', 'fwdbwd')} | {_ms(r, 'torch', 'fwd')} | {_ms(r, 'torch', 'fwdbwd')} | "
            f"{_ratio(r, 'ratio_fwd_torch_over_moegs')} | {_ratio(r, 'ratio_fwdbwd_torch_over_moegs')} | "
            f"{_mb(r, 'moegs')} | {_mb(r, 'torch')} | {r['load_avg_1min']} |"
        )
    if K > 0:
        lines += [
            "",
            f"K = {K} experts, forward + backward, ms (median (min)): one `rasterize_experts` pass, "
            f"{K} separate `rasterization` calls on each expert's Gaussians, and the baseline's "
            "per-expert renderer.",
            "",
            "| threads | N | image | single pass | separate calls | separate/single | torch experts "
            "| torch/single | RSS single | RSS separate | RSS torch |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in records:
            lines.append(
                f"| {r['threads']} | {r['n']} | {r['width']}² | {_ms(r, 'moegs_experts', 'fwdbwd')} | "
                f"{_ms(r, 'moegs_separate', 'fwdbwd')} | {_ratio(r, 'ratio_fwdbwd_separate_over_single')} | "
                f"{_ms(r, 'torch_experts', 'fwdbwd')} | "
                f"{_ratio(r, 'ratio_fwdbwd_torch_experts_over_moegs_experts')} | "
                f"{_mb(r, 'moegs_experts')} | {_mb(r, 'moegs_separate')} | {_mb(r, 'torch_experts')} |"
            )
    return "\n".join(lines) + "\n"


RESULTS_HEADER = """# Benchmark results

CPU wall-clock timings from `benchmarks/bench_rasterize.py` (details in `benchmarks/README.md`). Scenes
come from `benchmarks/scenes.py` (N random Gaussians in front of one camera, float32, RGB colours).
"fwd" is one forward call with inputs that require grad; "fwd+bwd" adds the backward of
sum(image * G) for means, quats, scales, opacities and colours. "torch" is the pure-PyTorch baseline
(`benchmarks/torch_baseline.py`), run in the same process at the same thread count; ratios above 1 mean
moegs is faster. No GPU numbers.
"""

# ---------------------------------------------------------------------------------------- CLI
def parse_sizes(text: str) -> List[Tuple[int, int]]:
    sizes = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            n, res = item.lower().split("x")
            sizes.append((int(n), int(res)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {item!r} is not of the form NxRES, e.g. 10000x256")
        if sizes[-1][0] < 1 or sizes[-1][1] < 1:
            raise argparse.ArgumentTypeError(f"size {item!r} must be positive")
    return sizes


def parse_threads(text: str) -> List[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads expects a list like 1,2, got {text!r}")
    if not threads or min(threads) < 1:
        raise argparse.ArgumentTypeError(f"--threads expects positive counts, got {text!r}")
    return threads


def main(argv: Optional[List[str]] = None) -> int:
    default_threads = ",".join(str(t) for t in sorted({1, os.cpu_count() or 1}))
    p = argparse.ArgumentParser(description="Time moegs against the in-process PyTorch baseline (CPU).")
    p.add_argument("--sizes", type=parse_sizes, default=None,
                   help=f"comma-separated NxRES list (default {DEFAULT_SIZES}; --quick: {QUICK_SIZES})")
    p.add_argument("--threads", type=parse_threads, default=parse_threads(default_threads),
                   help=f"comma-separated torch thread counts (default {default_threads})")
    p.add_argument("--experts", type=int, default=4, help="K for the expert comparison; 0 skips it")
    p.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the records to this JSON file")
    p.add_argument("--append-results", type=Path, default=None, metavar="MD",
                   help="append a markdown table to this file (e.g. benchmarks/RESULTS.md)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_SIZES}, 2 repeats")
    p.add_argument("--baseline-only", action="store_true", help="time only the PyTorch baseline")
    args = p.parse_args(argv)
    if args.experts < 0 or args.experts > 16:
        p.error("--experts must be in [0, 16]")
    sizes = args.sizes or parse_sizes(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    if repeats < 1:
        p.error("--repeats must be at least 1")

    if not args.baseline_only:
        import moegs

        missing = [f for f in ("rasterization", "rasterize_experts") if not hasattr(moegs, f)]
        if missing:
            log(f"moegs has no {', '.join(missing)} yet; run with --baseline-only or rebuild moegs")
            return 2

    command = "python " + " ".join(shlex.quote(a) for a in [
        os.path.relpath(sys.argv[0]) if argv is None else "benchmarks/bench_rasterize.py",
        *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info()
    log(f"{machine['cpu']} | torch {machine['torch']} | load {machine['load_avg_1min_at_start']}")
    if machine["load_avg_1min_at_start"] > 0.5:
        log("warning: the machine is not idle; timings will be noisy")

    records = []
    for threads in args.threads:
        for n, res in sizes:
            rec = bench_one(threads, n, res, args.experts, repeats, args.seed, args.baseline_only)
            rec["machine"] = machine
            rec["command"] = command
            records.append(rec)

    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
        log(f"wrote {args.json}")
    table = markdown_table(records, machine, command)
    if args.append_results:
        new = not args.append_results.exists()
        with open(args.append_results, "a") as f:
            if new:
                f.write(RESULTS_HEADER)
            f.write("\n" + table)
        log(f"appended to {args.append_results}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
