"""Command line: ``moegs demo``."""

import argparse
import sys


def _cmd_demo(args) -> int:
    from moegs.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=args.out, iters=args.iters, n_gaussians=args.gaussians, num_experts=args.experts,
        width=args.size, height=args.size, seed=args.seed,
    )
    res = run_demo(cfg)
    print(f"\n{'split':<8}{'PSNR (dB)':>10}")
    print(f"{'train':<8}{res['train_psnr']:>10.2f}")
    print(f"{'test':<8}{res['test_psnr']:>10.2f}")
    print(f"\n{cfg.num_experts} experts, {cfg.n_gaussians} Gaussians, {cfg.iters} iterations in "
          f"{res['train_seconds']:.1f} s; render {res['render_ms_per_view']:.1f} ms/view at {cfg.width}x{cfg.height}")
    print(f"images and results.json written to {cfg.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moegs", description="Mixture-of-experts Gaussian splatting.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo",
        help="fit a K-expert Gaussian mixture to the built-in analytic scene (CPU, about 1.5 minutes)",
        description="Builds the built-in scene (analytic ray casting), trains a single-pass K-expert mixture "
        "with per-pixel softmax gates, evaluates on held-out views and writes PNGs and results.json.",
    )
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--iters", type=int, default=300, help="training iterations (default: 300)")
    d.add_argument("--gaussians", type=int, default=3000, help="number of Gaussians (default: 3000)")
    d.add_argument("--experts", type=int, default=3, help="number of experts K, 1-16 (default: 3)")
    d.add_argument("--size", type=int, default=64, help="image width and height in pixels (default: 64)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
