"""Command line: ``moegs demo``, ``moegs train``, ``moegs render``, ``moegs eval``."""

import argparse
import math
import os
import sys
import time

# Budgets of the built-in scene. ``demo`` is the quick main job; ``--benchmark`` is the full comparison.
DEMO = dict(iters=150, router_iters=75, singles=None, equal_compute=False)
BENCHMARK = dict(iters=1000, router_iters=300, singles="all", equal_compute=True)


def _expert_list(text: str):
    from moegs.experiment import ALL_EXPERTS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in ALL_EXPERTS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown expert(s) {', '.join(bad)}; choose from {', '.join(ALL_EXPERTS)}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("give at least two different experts, e.g. keyframe,embedding,hexplane")
    return names


def _non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _load_scene(path: str):
    import moegs.data

    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset not found: {path}")
    return moegs.data.load_dataset(path)


def _builtin_scene(out: str, size: int, seed: int, resume: bool, cameras=None, frames=None):
    from moegs.data import load_dnerf
    from moegs.data.procedural import ProceduralSceneConfig, write_procedural_scene

    folder = os.path.join(out, "scene")
    if not (resume and os.path.exists(os.path.join(folder, "transforms_train.json"))):
        cfg = ProceduralSceneConfig(width=size, height=size, seed=seed)
        if cameras:
            cfg.n_train_cameras = cameras
        if frames:
            cfg.n_frames = frames
        write_procedural_scene(folder, cfg)
    return load_dnerf(folder)


def _finish(results: dict, out: str, t0: float) -> int:
    from moegs.experiment import results_table

    print()
    print(results_table(results))
    print(f"\nresults.json, model files and renders written to {out}/ ({time.perf_counter() - t0:.0f} s in total)")
    return 0


def _cmd_demo(args) -> int:
    from moegs.experiment import ALL_EXPERTS, ExperimentConfig, run_experiment

    t0 = time.perf_counter()
    budget = BENCHMARK if args.benchmark else DEMO
    experts = args.experts
    iters = args.iters or budget["iters"]
    cfg = ExperimentConfig(
        experts=experts, singles=ALL_EXPERTS if budget["singles"] == "all" else experts, iters=iters,
        router_iters=args.router_iters or budget["router_iters"], equal_compute=budget["equal_compute"],
        staged=True, joint=True, primary=args.primary, temperature=args.temperature, seed=args.seed,
        joint_warmup=args.joint_warmup, network_lr_scale=args.network_lr_scale,
    )
    scene = _builtin_scene(args.out, args.size, args.seed, args.resume, args.cameras, args.frames)
    print(f"built-in scene: {len(scene.train)} training and {len(scene.test)} held-out views, "
          f"{scene.train[0].width}x{scene.train[0].height}; mixture of {', '.join(experts)}")
    res = run_experiment(scene, cfg, args.out, resume=args.resume)
    return _finish(res, args.out, t0)


def _cmd_train(args) -> int:
    from moegs.experiment import ExperimentConfig, run_experiment

    t0 = time.perf_counter()
    scene = _load_scene(args.data)
    mode = "staged" if args.staged else "joint"
    cfg = ExperimentConfig(
        experts=args.experts, singles=args.experts if args.staged else (), iters=args.iters,
        router_iters=args.router_iters, staged=mode == "staged", joint=mode == "joint", primary=mode,
        temperature=args.temperature, seed=args.seed, joint_warmup=args.joint_warmup,
        network_lr_scale=args.network_lr_scale,
    )
    res = run_experiment(scene, cfg, args.out, resume=args.resume, media=not args.no_media)
    print(f"model: {os.path.join(args.out, f'model_{mode}.pt')}")
    return _finish(res, args.out, t0)


def _cmd_render(args) -> int:
    from moegs.experiment import load_model, write_media

    scene = _load_scene(args.data)
    moe = load_model(args.model, scene)
    cams = scene.test if args.split == "test" else scene.train
    if not cams:
        raise ValueError(f"the dataset has no {args.split} cameras")
    paths = write_media(moe, cams, args.out, n_frames=args.frames)
    print(f"{len(paths)} files written to {args.out}/ (PNGs per view, blend.mp4, gates.mp4)")
    return 0


def _cmd_eval(args) -> int:
    import torch

    from moegs.experiment import evaluate_mixture, load_model, results_table, write_results

    scene = _load_scene(args.data)
    moe = load_model(args.model, scene)
    if not scene.test:
        raise ValueError("the dataset has no held-out cameras to evaluate on")
    ev = evaluate_mixture(moe, scene.test)
    from moegs.train import load_checkpoint

    cfg = load_checkpoint(args.model)["config"]
    experts = {n: {"psnr": p, "ssim": ev["member_ssim"][n], "iters": cfg["iters"], "seconds": 0.0,
                   "within_mixture": True} for n, p in ev["member_psnr"].items()}
    t0 = time.perf_counter()
    with torch.no_grad():
        for cam in scene.test:
            moe.render(cam)
    ms = 1000 * (time.perf_counter() - t0) / len(scene.test)
    res = {"experts": experts, "moe": {**ev, "iters": cfg["iters"], "seconds": 0.0, "render_ms_per_view": ms},
           "router_nmi": ev["router_nmi"], "model": os.path.abspath(args.model)}
    os.makedirs(args.out, exist_ok=True)
    write_results(res, args.out)
    print(f"{'model':<14}{'PSNR dB':>9}")
    for n, r in experts.items():
        print(f"{n:<14}{r['psnr']:>9.2f}")
    print(f"{'MoE':<14}{ev['psnr']:>9.2f}   SSIM {ev['ssim']:.3f}   router NMI {ev['router_nmi']}")
    print(f"results.json written to {args.out}/")
    return 0


def _model_data_out(p) -> None:
    p.add_argument("--model", required=True, help="model file written by train or demo")
    p.add_argument("--data", required=True, help="dataset folder (format detected)")
    p.add_argument("--out", required=True, help="output folder")


def _common(p, iters_default=None, router_default=None):
    p.add_argument("--experts", type=_expert_list, default=None,
                   help="comma-separated mixture members from static, mlp, hexplane, embedding, polynomial, "
                        "keyframe (default: keyframe,embedding,polynomial)")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="router softmax temperature, the same in training and rendering (default: 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and camera order (default: 0)")
    p.add_argument("--network-lr-scale", type=_positive_float, default=3.0, metavar="S",
                   help="multiplies the published start learning rates of the experts' deformation networks, "
                        "feature grids and temporal tables, which are set for 14k-80k-step schedules "
                        "(default: 3; 1 keeps the published rates)")
    p.add_argument("--joint-warmup", type=_non_negative, default=0, metavar="N",
                   help="joint training: the first N iterations train each expert alone on the image before the "
                        "router joins (default: 0, end to end from the start)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoints in OUT/checkpoints")


def build_parser() -> argparse.ArgumentParser:
    from moegs.experiment import DEFAULT_MIXTURE

    p = argparse.ArgumentParser(prog="moegs", description="Mixture-of-experts dynamic Gaussian splatting.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "demo", help="reconstruct the built-in dynamic scene with single experts and their mixture",
        description="Builds the built-in procedural dynamic scene (analytic ray casting), trains the mixture's "
        "experts alone, the staged mixture (frozen experts + router) and the joint mixture (end to end), "
        "evaluates them on held-out cameras and writes OUT/results.json, model files, PNG renders, a video of "
        f"the blend and a colour-coded gate-map video. Default: {DEMO['iters']} iterations per expert, a few "
        "minutes on a 2-core CPU. --benchmark trains all six single experts, both mixtures and the best single "
        f"expert with K x the iterations ({BENCHMARK['iters']} iterations per expert).",
    )
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--benchmark", action="store_true",
                   help="full comparison: all six single experts, staged and joint mixtures, equal compute")
    d.add_argument("--iters", type=_positive, default=None,
                   help=f"iterations per expert (default {DEMO['iters']}; {BENCHMARK['iters']} with --benchmark)")
    d.add_argument("--router-iters", type=_positive, default=None,
                   help=f"staged router iterations (default {DEMO['router_iters']}; {BENCHMARK['router_iters']} "
                        "with --benchmark)")
    d.add_argument("--primary", choices=("joint", "staged"), default="staged",
                   help="which mixture results.json reports as 'moe' (default: staged)")
    d.add_argument("--size", type=_positive, default=64, help="image width and height (default: 64)")
    d.add_argument("--cameras", type=_positive, default=None, help="training cameras of the built-in scene (default 10)")
    d.add_argument("--frames", type=int, default=None, help="time steps of the built-in scene, >= 2 (default 14)")
    _common(d)
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser(
        "train", help="train a mixture on a dataset (D-NeRF, Neural 3D Video, Technicolor)",
        description="Trains K experts and the router on PATH's training cameras, staged (experts alone, then the "
        "router with frozen experts; the single experts are evaluated too) or joint (end to end), evaluates on "
        "its held-out cameras and writes OUT/results.json and OUT/model_<mode>.pt.",
    )
    t.add_argument("--data", required=True, help="dataset folder (format detected)")
    t.add_argument("--out", required=True, help="output folder")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--staged", action="store_true", help="experts alone, then the router (published recipe)")
    g.add_argument("--joint", action="store_true", help="experts and router end to end (default)")
    t.add_argument("--iters", type=_positive, default=1000, help="iterations per expert (default: 1000)")
    t.add_argument("--router-iters", type=_positive, default=500, help="staged router iterations (default: 500)")
    t.add_argument("--no-media", action="store_true", help="skip PNG renders and videos")
    _common(t)
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("render", help="render a trained mixture: PNGs per view, blend and gate-map videos",
                       description="Renders MODEL (model_<mode>.pt from train/demo) at the cameras of PATH: "
                       "target, blend, members and gate map per view, and blend.mp4 / gates.mp4 over time.")
    _model_data_out(r)
    r.add_argument("--split", choices=("test", "train"), default="test", help="which cameras (default: test)")
    r.add_argument("--frames", type=_positive, default=24, help="frames of the videos (default: 24)")
    r.set_defaults(func=_cmd_render)

    e = sub.add_parser("eval", help="evaluate a trained mixture on held-out cameras; writes results.json",
                       description="PSNR / SSIM of the blend and of each member inside the mixture on PATH's "
                       "held-out cameras, and router_nmi where motion labels exist; writes OUT/results.json.")
    _model_data_out(e)
    e.set_defaults(func=_cmd_eval)

    for sp in (d, t):
        sp.set_defaults(experts_default=DEFAULT_MIXTURE)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "experts", "unset") is None:
        args.experts = args.experts_default
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"moegs {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
