"""The five CPU-performance targets, measured in one run (CPU only).

    python benchmarks/run_issue4.py --append-results benchmarks/RESULTS.md --json issue4.json \
        --svg benchmarks/scaling_curve.svg
    python benchmarks/run_issue4.py --quick        # about a minute, small sizes, nothing written by default

1. forward+backward of ``moegs.rasterization`` against the in-process PyTorch baseline (bench_rasterize.py) at
   10k / 256² and 100k / 512², 1 and 2 threads (target: ≥ 30×);
2. forward throughput in offered (pixel, Gaussian) pairs per second (n_isects × tile²) as a share of the SIMD
   ceiling built and run in the same process tree (simd_ceiling/run.sh; the best variant per thread count;
   target ≥ 40%), and backward time over forward time (target ≤ 3);
3. one ``rasterize_experts`` pass over K = 4 experts against 4 separate calls (target ≥ 1.7×), with two bounds
   sharing can reach: the compositing kernels' time in the 4 calls is measured with the torch profiler, and
   even a pass that did the rest of the work of just one call could not beat ``sharing_bound``; and the
   per-call fixed work, 4 calls minus 1 call on a near-empty scene at the same image size (``fixed_work_bound``);
4. peak resident-memory growth of forward+backward at 100k / 512² (target ≤ 640 MB);
5. the scaling curve from 10k to 1M Gaussians at 512² (all cores): forward and forward+backward time against
   the number of tile intersections, a least-squares line, R² and the largest relative deviation, as a table
   and an SVG plot.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_rasterize as BR  # noqa: E402
import issue4_report as R  # noqa: E402
from scenes import make_scene  # noqa: E402

import moegs  # noqa: E402

SIZES = [(10_000, 256), (100_000, 512)]
SCALING = ([10_000, 30_000, 100_000, 300_000, 1_000_000], 512)
QUICK_SIZES = [(2_000, 128)]
QUICK_SCALING = ([2_000, 5_000, 10_000, 20_000], 128)
EXPERTS = 4


def simd_ceiling(seconds: float) -> Dict[int, Tuple[str, float]]:
    """Best pairs/s of the idealised blend loop per thread count: {threads: (variant, pairs/s)}."""
    out = subprocess.run(["bash", os.path.join(HERE, "simd_ceiling", "run.sh"), str(seconds)],
                         check=True, capture_output=True, text=True).stdout
    best: Dict[int, Tuple[str, float]] = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+(\d+)\s+([0-9.eE+-]+)$", line.strip())
        if m:
            variant, threads, rate = m.group(1), int(m.group(2)), float(m.group(3))
            if threads not in best or rate > best[threads][1]:
                best[threads] = (variant, rate)
    if not best:
        raise RuntimeError(f"simd_ceiling/run.sh printed no measurements:\n{out}")
    return best


def _median(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def _forward(scene, res, leaves=None):
    m, q, s, o, c = leaves if leaves is not None else (scene.means, scene.quats, scene.scales, scene.opacities,
                                                       scene.colors)
    return moegs.rasterization(m, q, s, o, c, scene.viewmats, scene.Ks, res, res, packed=False)


def throughput(n: int, res: int, threads: int, repeats: int) -> Dict:
    """Forward time (no autograd) and offered pairs per second."""
    torch.set_num_threads(threads)
    scene = make_scene(n, res, res, seed=0)
    with torch.no_grad():
        _, _, meta = _forward(scene, res)
        sec = _median(lambda: _forward(scene, res), repeats)
    pairs = meta["isect_ids"].numel() * meta["tile_size"] ** 2
    return {"threads": threads, "n": n, "res": res, "isects": int(meta["isect_ids"].numel()),
            "fwd_s": sec, "pairs_per_s": pairs / sec}


def composite_time_of_separate_calls(n: int, res: int, repeats: int) -> Dict:
    """1 thread: wall time of K separate fwd+bwd calls and the part spent in the compositing kernels."""
    torch.set_num_threads(1)
    scene = make_scene(n, res, res, num_experts=EXPERTS, seed=0)
    parts = BR.split_by_expert(scene)

    def run():
        loss = BR._loss(BR.moegs_separate(scene, parts), scene.grad_experts)
        loss.backward()
        for p in parts:
            for t in p:
                t.grad = None

    wall = _median(run, repeats)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            run()
    comp = sum(e.self_cpu_time_total for e in prof.key_averages() if "rasterize_experts" in e.key)
    return {"n": n, "res": res, "separate_fwdbwd_s": wall, "composite_s": comp / 1e6 / repeats}


def fixed_work_of_calls(res: int, repeats: int, n_tiny: int = 4 * EXPERTS) -> Dict:
    """1 thread: fwd+bwd time of 1 call and of EXPERTS calls on a near-empty scene (``n_tiny`` Gaussians, split
    among the experts) at ``res``² -- the per-call fixed work (allocation, projection set-up, sort, image clear,
    autograd) that a single pass can share at most."""
    torch.set_num_threads(1)
    scene = make_scene(n_tiny, res, res, num_experts=EXPERTS, seed=0)
    parts = BR.split_by_expert(scene)

    def run(group):
        loss = BR._loss(BR.moegs_separate(scene, group), scene.grad_experts[:, :len(group)])
        loss.backward()
        for p in group:
            for t in p:
                t.grad = None

    one = _median(lambda: run(parts[:1]), max(repeats, 5))
    many = _median(lambda: run(parts), max(repeats, 5))
    return {"res": res, "n_tiny": n_tiny, "one_call_fwdbwd_s": one, "calls_fwdbwd_s": many}


def scaling(ns: List[int], res: int, threads: int, repeats: int) -> List[Dict]:
    torch.set_num_threads(threads)
    rows = []
    for n in ns:
        BR.log(f"  scaling: N={n} at {res}² ...")
        scene = make_scene(n, res, res, seed=0)
        leaves = scene.fresh_leaves()
        with torch.no_grad():
            _, _, meta = _forward(scene, res)
            fwd = _median(lambda: _forward(scene, res), repeats)

        def fb():
            img, _, _ = _forward(scene, res, leaves)
            (img * scene.grad_image).sum().backward()
            for t in leaves:
                t.grad = None

        rows.append({"n": n, "isects": int(meta["isect_ids"].numel()), "fwd_s": fwd,
                     "fwdbwd_s": _median(fb, repeats)})
        del scene, leaves
    return rows


def report(res: Dict, command: str) -> str:
    m = res["machine"]
    when = res.get("when") or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    out = [f"### Issue-4 targets, {when}", "",
           f"Command: `{command}`  ",
           f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, moegs {m['moegs']} "
           f"({m['moegs_git']}); 1-min load average at start {m['load_avg_1min_at_start']}"
           + (f", at end {res['load_avg_1min_at_end']}" if "load_avg_1min_at_end" in res else "")
           + (f"; measurements took {res['elapsed_s'] / 60:.1f} min" if "elapsed_s" in res else "")
           + ". CPU only.", ""]
    recs = res["records"]
    # 1
    rows, ok1 = [], True
    for r in recs:
        ratio = r["ratio_fwdbwd_torch_over_moegs"]
        ok1 &= ratio >= 30
        rows.append([f"{r['threads']}", f"{r['n'] // 1000}k / {r['width']}²",
                     f"{1e3 * r['moegs_fwdbwd_median_s']:.0f}", f"{1e3 * r['torch_fwdbwd_median_s']:.0f}",
                     f"{ratio:.1f}×"])
    out += [f"**1. Forward+backward vs the PyTorch path (≥ 30×): {R.status(ok1)}**", "",
            R.markdown_table(["threads", "N / image", "moegs ms", "PyTorch ms", "PyTorch / moegs"], rows), ""]
    # 2
    ceil = res["ceiling"]
    rows, ok2a = [], True
    for t in res["throughput"]:
        variant, c = ceil[str(t["threads"])] if str(t["threads"]) in ceil else ceil[t["threads"]]
        share = t["pairs_per_s"] / c
        t["ceiling_share"] = share
        big = (t["n"], t["res"]) == max((x["n"], x["res"]) for x in res["throughput"])
        if big:
            ok2a &= share >= 0.40
        rows.append([f"{t['threads']}", f"{t['n'] // 1000}k / {t['res']}²", f"{t['isects']:,}",
                     f"{1e3 * t['fwd_s']:.1f}", f"{t['pairs_per_s'] / 1e9:.2f} G", f"{c / 1e9:.2f} G ({variant})",
                     f"{100 * share:.0f}%"])
    ratios = [(r, (r["moegs_fwdbwd_median_s"] - r["moegs_fwd_median_s"]) / r["moegs_fwd_median_s"]) for r in recs]
    ok2b = all(x <= 3 for _, x in ratios)
    out += [f"**2. Forward throughput ≥ 40% of the SIMD ceiling (largest size): {R.status(ok2a)}; "
            f"backward ≤ 3× forward: {R.status(ok2b)}**", "",
            R.markdown_table(["threads", "N / image", "isects", "fwd ms", "offered pairs/s", "ceiling",
                              "share"], rows), "",
            "Backward / forward time (from target 1's runs): " + ", ".join(
                f"{r['threads']} thr {r['n'] // 1000}k/{r['width']}² {x:.2f}" for r, x in ratios) + ".", ""]
    # 3
    rows, ok3 = [], True
    bounds = {(b["n"], b["res"]): b for b in res["sharing"]}
    fixed = {f["res"]: f for f in res.get("fixed_work", [])}
    for r in recs:
        sep, single = r["moegs_separate_fwdbwd_median_s"], r["moegs_experts_fwdbwd_median_s"]
        ok3 &= sep / single >= 1.7
        b = bounds.get((r["n"], r["width"]))
        fx = fixed.get(r["width"])
        bound, fbound = "–", "–"
        if fx is not None and r["threads"] == 1:
            fbound = f"{R.fixed_work_bound(sep, fx['one_call_fwdbwd_s'], fx['calls_fwdbwd_s'], EXPERTS):.2f}× " \
                     f"({1e3 * (fx['calls_fwdbwd_s'] - fx['one_call_fwdbwd_s']) / (EXPERTS - 1):.1f} ms/call)"
        if b is not None and r["threads"] == 1:
            bound = f"{R.sharing_bound(b['separate_fwdbwd_s'], b['composite_s'], EXPERTS):.2f}× " \
                    f"({100 * b['composite_s'] / b['separate_fwdbwd_s']:.0f}% compositing)"
        rows.append([f"{r['threads']}", f"{r['n'] // 1000}k / {r['width']}²",
                     f"{1e3 * r['moegs_experts_fwd_median_s']:.0f} / {1e3 * r['moegs_separate_fwd_median_s']:.0f}",
                     f"{1e3 * single:.0f} / {1e3 * sep:.0f}", f"{sep / single:.2f}×", bound, fbound])
    out += [f"**3. K = {EXPERTS} single pass ≥ 1.7× faster than {EXPERTS} separate calls: {R.status(ok3)}**", "",
            R.markdown_table(["threads", "N / image", "fwd ms single / separate", "fwd+bwd ms single / separate",
                              "separate / single", "bound from sharing (1 thread)",
                              "bound from fixed work (1 thread)"], rows), "",
            "The single pass composites the same (pixel, Gaussian) pairs as the separate calls and also renders "
            "each expert's depth; only the non-compositing work (projection, SH, sorting, call overhead) can be "
            "shared. The profiler bound assumes the single pass did that work once for all experts at the cost of "
            "one call."
            + (f" The fixed-work bound times 1 call and {EXPERTS} calls on a near-empty scene "
               f"({res['fixed_work'][0]['n_tiny']} Gaussians) at the same image size: their difference is the "
               "per-call work a single pass can avoid, and separate / (separate − that difference) is the largest "
               "ratio sharing it can give." if res.get("fixed_work") else ""), ""]
    # 4
    big = max(recs, key=lambda r: (r["n"], r["width"]))
    rss = max(x["moegs_peak_rss_growth_mb"] for x in recs if (x["n"], x["width"]) == (big["n"], big["width"]))
    out += [f"**4. Peak memory growth of forward+backward at {big['n'] // 1000}k / {big['width']}² ≤ 640 MB: "
            f"{R.status(rss <= 640)}** ({rss:.0f} MB, largest over the thread counts).", ""]
    # 5
    sc = res["scaling"]
    fit_f = R.linear_fit([r["isects"] for r in sc], [r["fwd_s"] for r in sc])
    fit_b = R.linear_fit([r["isects"] for r in sc], [r["fwdbwd_s"] for r in sc])
    res["scaling_fit"] = {"fwd": fit_f, "fwdbwd": fit_b}
    per = [r["fwdbwd_s"] / r["isects"] for r in sc]
    # "about linear": the cost per intersection must not grow with the scene (at most 25% above its value at
    # the smallest size), i.e. no super-linear growth; the line fit shows how close to proportional it is
    ok5 = max(per) <= 1.25 * per[0]
    rows = [[f"{r['n']:,}", f"{r['isects']:,}", f"{1e3 * r['fwd_s']:.1f}", f"{1e3 * r['fwdbwd_s']:.1f}",
             f"{1e9 * r['fwdbwd_s'] / r['isects']:.0f}"] for r in sc]
    out += [f"**5. Cost at most linear in tile intersections, {sc[0]['n']:,} → {sc[-1]['n']:,} Gaussians at "
            f"{res['scaling_res']}², {res['scaling_threads']} threads: {R.status(ok5)}** (forward+backward time per "
            f"intersection {1e9 * per[0]:.0f} ns at the smallest size, {1e9 * max(per):.0f} ns at most, "
            f"{1e9 * per[-1]:.0f} ns at the largest)", "",
            R.markdown_table(["N", "isects", "fwd ms", "fwd+bwd ms", "fwd+bwd ns / isect"], rows), "",
            f"Least squares, time = a + b · isects: forward b = {1e9 * fit_f['slope']:.1f} ns, "
            f"a = {1e3 * fit_f['intercept']:.1f} ms, R² {fit_f['r2']:.4f}, largest deviation "
            f"{100 * fit_f['max_rel_dev']:.0f}%; forward+backward b = {1e9 * fit_b['slope']:.1f} ns, "
            f"a = {1e3 * fit_b['intercept']:.1f} ms, R² {fit_b['r2']:.4f}, largest deviation "
            f"{100 * fit_b['max_rel_dev']:.0f}%. "
            + R.fit_note([r["isects"] for r in sc], [r["fwdbwd_s"] for r in sc], fit_b)
            + (f" Plot: `{res['svg']}`." if res.get("svg") else ""), ""]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute), for a smoke run")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after a warm-up (default 3)")
    p.add_argument("--ceiling-seconds", type=float, default=1.0, help="seconds per SIMD-ceiling run")
    p.add_argument("--json", default=None, help="write every measurement to this JSON file")
    p.add_argument("--append-results", default=None, metavar="MD", help="append the report to this markdown file")
    p.add_argument("--svg", default=None, help="write the scaling plot to this SVG file")
    p.add_argument("--report-from", default=None, metavar="JSON",
                   help="print the report of a run saved with --json, measuring nothing")
    a = p.parse_args(argv)
    if a.report_from:
        with open(a.report_from) as f:
            saved = json.load(f)
        print(report(saved, saved.get("command", "")))
        return 0
    if a.repeats < 1:
        p.error("--repeats must be >= 1")
    cores = os.cpu_count() or 1
    threads = [1, 2] if cores >= 2 else [1]
    sizes = QUICK_SIZES if a.quick else SIZES
    sc_ns, sc_res = QUICK_SCALING if a.quick else SCALING
    command = "python benchmarks/run_issue4.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t_start = time.perf_counter()
    res: Dict = {"machine": BR.machine_info(), "command": command}
    if res["machine"]["load_avg_1min_at_start"] > 0.5:
        BR.log(f"warning: load average {res['machine']['load_avg_1min_at_start']}: timings will be noisy")
    BR.log("SIMD ceiling ...")
    res["ceiling"] = {str(k): v for k, v in simd_ceiling(a.ceiling_seconds).items()}
    res["records"] = []
    for th in threads:
        for n, r in sizes:
            res["records"].append(BR.bench_one(th, n, r, EXPERTS, a.repeats, 0, False))
    res["throughput"] = [throughput(n, r, th, max(a.repeats, 3)) for th in threads for n, r in sizes]
    res["sharing"] = [composite_time_of_separate_calls(n, r, a.repeats) for n, r in sizes]
    res["fixed_work"] = [fixed_work_of_calls(r, a.repeats) for _, r in sizes]
    res["scaling_res"], res["scaling_threads"] = sc_res, max(threads)
    res["scaling"] = scaling(sc_ns, sc_res, max(threads), a.repeats)
    res["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    res["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    res["when"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")  # end of the measurements
    if a.svg:
        xs = [r["isects"] for r in res["scaling"]]
        fits = {k: R.linear_fit(xs, [r[k + "_s"] * 1e3 for r in res["scaling"]]) for k in ("fwd", "fwdbwd")}
        svg = R.scaling_svg(
            [("forward", "#1f77b4", xs, [r["fwd_s"] * 1e3 for r in res["scaling"]], fits["fwd"]),
             ("forward + backward", "#d62728", xs, [r["fwdbwd_s"] * 1e3 for r in res["scaling"]], fits["fwdbwd"])],
            title=f"moegs CPU rasterizer, {sc_ns[0]:,} to {sc_ns[-1]:,} Gaussians at {sc_res}², "
                  f"{max(threads)} threads",
            x_label="tile intersections", y_label="time (ms)")
        with open(a.svg, "w") as f:
            f.write(svg)
        repo, svg_abs = os.path.dirname(HERE), os.path.abspath(a.svg)
        res["svg"] = os.path.relpath(svg_abs, repo) if svg_abs.startswith(repo + os.sep) else svg_abs
    text = report(res, command)
    print(text)
    if a.append_results:
        with open(a.append_results, "a") as f:
            f.write("\n" + text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
