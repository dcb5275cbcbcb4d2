"""Output checker for rasterizer changes: saves, then compares, renders and gradients.

``--save DIR`` writes the forward outputs (colours, alphas, depths, router channels) and every input
gradient of a few float32 scenes (K = 1, 3, 8 experts, router features, image sizes that are and are
not multiples of the tile size) as computed by the current build. ``--compare DIR`` recomputes them
with the build on ``PYTHONPATH`` at 1 and at 2 threads and checks

* every tensor is within ``--atol`` (default 1e-6) of the saved one (absolute, and also relative to
  the tensor's largest magnitude for gradients, which are not bounded by 1), and
* the 1-thread and 2-thread results are bitwise identical (determinism).

The saved tensors are not committed: make them from a pinned commit's build, e.g.::

    git worktree add /tmp/moegs-ref <commit> && (cd /tmp/moegs-ref && MOEGS_NO_CUDA=1 \
        python setup.py build_ext --inplace) && PYTHONPATH=/tmp/moegs-ref \
        python benchmarks/check_rasterize_outputs.py --save /tmp/moegs-ref-outputs
    PYTHONPATH=$PWD python benchmarks/check_rasterize_outputs.py --compare /tmp/moegs-ref-outputs

Exit status 0 when everything matches, 1 otherwise.
"""

import argparse
import os
import sys
from typing import Dict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenes import make_scene  # noqa: E402

# (name, N, size, experts, router channels, seed)
CASES = [
    ("k1_2k_128", 2000, 128, 1, 0, 1),
    ("k3_router_3k_100", 3000, 100, 3, 2, 2),
    ("k8_router_6k_160", 6000, 160, 8, 3, 3),
    ("k1_10k_256", 10000, 256, 1, 0, 4),
    ("k4_20k_200", 20000, 200, 4, 0, 5),
]


def run_case(n: int, size: int, experts: int, router: int, seed: int) -> Dict[str, torch.Tensor]:
    """Forward outputs and input gradients of one scene, float32, as a dict of tensors."""
    import moegs

    scene = make_scene(n, size, size, num_experts=experts, seed=seed)
    leaves = scene.fresh_leaves()
    g = torch.Generator().manual_seed(seed + 100)
    router_features = None
    if router:
        router_features = torch.rand(n, router, generator=g).requires_grad_(True)
    means, quats, scales, opacities, colors = leaves
    out = moegs.rasterize_experts(
        means, quats, scales, opacities, colors, scene.viewmats, scene.Ks, size, size,
        scene.expert_ids, experts, router_features=router_features,
    )
    loss = (out.colors * scene.grad_experts).sum()
    loss = loss + (out.alphas * torch.rand(out.alphas.shape, generator=g)).sum()
    loss = loss + (out.depths * torch.rand(out.depths.shape, generator=g)).sum()
    if router:
        loss = loss + (out.router * torch.rand(out.router.shape, generator=g)).sum()
    loss.backward()
    result = {"colors": out.colors, "alphas": out.alphas, "depths": out.depths}
    if router:
        result["router"] = out.router
        result["grad_router_features"] = router_features.grad
    for name, leaf in zip(["means", "quats", "scales", "opacities", "colors"], leaves):
        result["grad_" + name] = leaf.grad
    return {k: v.detach().clone() for k, v in result.items()}


def run_all(threads: int) -> Dict[str, Dict[str, torch.Tensor]]:
    torch.set_num_threads(threads)
    return {name: run_case(*args) for name, *args in CASES}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", metavar="DIR", help="write the current build's outputs to DIR")
    mode.add_argument("--compare", metavar="DIR", help="compare against the outputs saved in DIR")
    ap.add_argument("--atol", type=float, default=1e-6)
    args = ap.parse_args(argv)

    if args.save:
        os.makedirs(args.save, exist_ok=True)
        ref = run_all(threads=1)
        torch.save(ref, os.path.join(args.save, "outputs.pt"))
        print(f"saved {sum(len(v) for v in ref.values())} tensors of {len(ref)} scenes to {args.save}")
        return 0

    path = os.path.join(args.compare, "outputs.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no saved outputs at {path}: run with --save first")
    ref = torch.load(path)
    ok = True
    one = run_all(threads=1)
    two = run_all(threads=2)
    print(f"{'scene':<20} {'tensor':<22} {'max |new-ref|':>14} {'rel':>10} {'1 vs 2 threads':>15}")
    for case, tensors in ref.items():
        for name, r in tensors.items():
            a, b = one[case][name], two[case][name]
            diff = (a.double() - r.double()).abs().max().item() if r.numel() else 0.0
            scale = max(r.abs().max().item(), 1.0) if r.numel() else 1.0
            rel = diff / scale
            same = torch.equal(a, b)
            good = same and (diff <= args.atol or (name.startswith("grad_") and rel <= args.atol))
            ok &= good
            flag = "" if good else "  <-- FAIL"
            print(f"{case:<20} {name:<22} {diff:14.3e} {rel:10.3e} "
                  f"{'bitwise equal' if same else 'DIFFERENT':>15}{flag}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
