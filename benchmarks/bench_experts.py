"""Time each deformation expert's step: forward(t) and forward + backward (with its regulariser).

    python benchmarks/bench_experts.py                      # N = 10000, threads 1 and all cores
    python benchmarks/bench_experts.py --n 5000 20000 --threads 1 --repeats 10

Per (threads, N, expert): median over ``--repeats`` calls after two warm-up calls, of
(a) ``expert(t)`` under no_grad and (b) ``expert(t)`` + ``expert.regularization(t)`` + backward of a loss
touching every output (means, quats, scales, opacities, SH). Gaussians: uniform in [−1, 1]³, SH degree 3;
the keyframe expert has half of its Gaussians dynamic. Rendering is not included.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm import tqdm

from moegs.experts import EXPERTS, build_expert


def _loss(expert, t: float) -> torch.Tensor:
    g = expert(t)
    return sum(x.sum() for x in (g.means, g.quats, g.scales, g.opacities, g.sh)) + expert.regularization(t)


def bench(name: str, n: int, repeats: int) -> tuple:
    gen = torch.Generator().manual_seed(0)
    pts, cols = torch.rand(n, 3, generator=gen) * 2 - 1, torch.rand(n, 3, generator=gen)
    cfg = {"dynamic_fraction": 0.5} if name == "keyframe" else {}
    e = build_expert(name, pts, cols, sh_degree=3, **cfg)
    for _ in range(2):
        _loss(e, 0.3).backward()
    fwd, both = [], []
    for i in range(repeats):
        t = 0.05 + 0.9 * i / max(1, repeats - 1)
        t0 = time.perf_counter()
        with torch.no_grad():
            e(t)
        fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _loss(e, t).backward()
        both.append(time.perf_counter() - t0)
    n_net = sum(p.numel() for g in e.network_param_groups() for p in g["params"])
    return statistics.median(fwd) * 1e3, statistics.median(both) * 1e3, n_net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10000], help="Gaussian counts")
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="torch thread counts (default 1 and all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--experts", nargs="+", default=list(EXPERTS), choices=list(EXPERTS))
    args = ap.parse_args()
    threads = args.threads or sorted({1, torch.get_num_threads()})
    rows = []
    jobs = [(th, n, name) for th in threads for n in args.n for name in args.experts]
    for th, n, name in tqdm(jobs, desc="experts", leave=False):
        torch.set_num_threads(th)
        rows.append((th, n, name) + bench(name, n, args.repeats))
    print(f"{'threads':>7} {'N':>7} {'expert':<11} {'forward ms':>11} {'fwd+bwd ms':>11} {'net params':>11}")
    for th, n, name, f, b, p in rows:
        print(f"{th:>7} {n:>7} {name:<11} {f:>11.1f} {b:>11.1f} {p:>11}")


if __name__ == "__main__":
    main()
