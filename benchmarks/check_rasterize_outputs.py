"""Output checker for rasterizer changes: saves, then compares, renders and gradients.

``--save DIR`` writes the forward outputs (colours, alphas, depths, router channels) and every input
gradient of a few float32 scenes (K = 1, 3, 8 experts, router features, image sizes that are and are
not multiples of the tile size) as computed by the current build. ``--compare DIR`` recomputes them
with the build on ``PYTHONPATH`` at 1 and at 2 threads and checks

* every forward output is within ``--atol`` (default 1e-6) of the saved one;
* every gradient is within ``--atol`` of the saved one relative to the tensor's largest magnitude
  (gradients are not bounded by 1), or, where a changed float32 summation order moves it further, at
  least as close to the float64 result (the same scene rendered in float64) as the saved one was:
  reordering a float32 sum of thousands of terms moves it by about its rounding error, so the test is
  that the new order is no less accurate; and
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


def run_case(n: int, size: int, experts: int, router: int, seed: int,
             dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Forward outputs and input gradients of one scene (float32 unless ``dtype``), as a dict of tensors."""
    import moegs

    scene = make_scene(n, size, size, num_experts=experts, seed=seed, dtype=dtype)
    leaves = scene.fresh_leaves()
    g = torch.Generator().manual_seed(seed + 100)
    router_features = None
    if router:
        router_features = torch.rand(n, router, generator=g).to(dtype).requires_grad_(True)
    means, quats, scales, opacities, colors = leaves
    out = moegs.rasterize_experts(
        means, quats, scales, opacities, colors, scene.viewmats, scene.Ks, size, size,
        scene.expert_ids, experts, router_features=router_features,
    )
    loss = (out.colors * scene.grad_experts).sum()
    loss = loss + (out.alphas * torch.rand(out.alphas.shape, generator=g).to(dtype)).sum()
    loss = loss + (out.depths * torch.rand(out.depths.shape, generator=g).to(dtype)).sum()
    if router:
        loss = loss + (out.router * torch.rand(out.router.shape, generator=g).to(dtype)).sum()
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
    exact = {name: run_case(*args, dtype=torch.float64) for name, *args in CASES}
    print(f"{'scene':<20} {'tensor':<22} {'max |new-ref|':>14} {'rel':>10} {'new-f64':>10} {'ref-f64':>10} "
          f"{'1 vs 2 threads':>15}")
    for case, tensors in ref.items():
        for name, r in tensors.items():
            a, b = one[case][name], two[case][name]
            diff = (a.double() - r.double()).abs().max().item() if r.numel() else 0.0
            scale = max(r.abs().max().item(), 1.0) if r.numel() else 1.0
            rel = diff / scale
            x = exact[case][name]
            err_new = (a.double() - x).abs().max().item() / scale if r.numel() else 0.0
            err_ref = (r.double() - x).abs().max().item() / scale if r.numel() else 0.0
            same = torch.equal(a, b)
            is_grad = name.startswith("grad_")
            close = diff <= args.atol or (is_grad and (rel <= args.atol or err_new <= 1.1 * err_ref))
            good = same and close
            ok &= good
            flag = "" if good else "  <-- FAIL"
            print(f"{case:<20} {name:<22} {diff:14.3e} {rel:10.3e} {err_new:10.3e} {err_ref:10.3e} "
                  f"{'bitwise equal' if same else 'DIFFERENT':>15}{flag}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
