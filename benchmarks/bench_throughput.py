"""Forward throughput of the CPU rasterizer in (pixel, Gaussian) pairs per second.

Pairs are counted as the renderer is handed them: every intersection (Gaussian, tile) offers its Gaussian
to all tile_size² pixels of the tile, so pairs = n_isects · tile_size². Early termination and bounding-box
skipping make the kernel evaluate fewer than that, so the figure is the rate at which the offered work is
cleared, comparable with the idealised blend loop of benchmarks/simd_ceiling (run.sh prints its pairs/s).

    python benchmarks/bench_throughput.py [--sizes 10000x256,100000x512] [--threads 1,2] [--repeats 5]
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenes import make_scene  # noqa: E402

import moegs  # noqa: E402


def forward(scene, res):
    return moegs.rasterization(scene.means, scene.quats, scene.scales, scene.opacities, scene.colors,
                               scene.viewmats, scene.Ks, res, res)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000x256,100000x512")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    print(f"{'threads':>7} {'N':>7} {'res':>5} {'isects':>9} {'fwd ms':>8} {'G pairs/s':>10}")
    for th in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(th)
        for item in a.sizes.split(","):
            n, res = (int(v) for v in item.split("x"))
            scene = make_scene(n, res, res, seed=0)
            with torch.no_grad():
                _, _, meta = forward(scene, res)
                times = []
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    forward(scene, res)
                    times.append(time.perf_counter() - t0)
            times.sort()
            med = times[len(times) // 2]
            pairs = meta["isect_ids"].numel() * meta["tile_size"] ** 2
            print(f"{th:>7} {n:>7} {res:>5} {meta['isect_ids'].numel():>9} {med * 1e3:>8.1f} "
                  f"{pairs / med / 1e9:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
