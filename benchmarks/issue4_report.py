"""Pure helpers of ``run_issue4.py``: the linear fit of the scaling curve, its SVG plot and the markdown report.

Nothing here measures anything, so it is tested on hand-computed values (tests/test_benchmark_runner.py).
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> Dict[str, float]:
    """Least-squares line y = intercept + slope·x.

    Returns ``{"slope", "intercept", "r2", "max_rel_dev"}``; ``max_rel_dev`` is the largest
    |y − fit(x)| / y over the points. Needs at least two distinct x values.
    """
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError(f"need at least two (x, y) pairs, got {n} x and {len(ys)} y values")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("x values are all equal: no line can be fitted")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    fit = [intercept + slope * x for x in xs]
    ss_res = sum((y - f) ** 2 for y, f in zip(ys, fit))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    max_rel = max(abs(y - f) / abs(y) for y, f in zip(ys, fit) if y != 0) if any(ys) else 0.0
    return {"slope": slope, "intercept": intercept, "r2": r2, "max_rel_dev": max_rel}


def _log_ticks(lo: float, hi: float) -> List[float]:
    """Powers of ten, and 2× / 5× them, spanning [lo, hi] (both > 0)."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo * 0.9999 <= v <= hi * 1.0001:
                ticks.append(float(v))
        e += 1
    return ticks


def _fmt(v: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            q = v / div
            return f"{q:g}{unit}"
    return f"{v:g}"


def scaling_svg(series: Sequence[Tuple[str, str, Sequence[float], Sequence[float], Optional[Dict[str, float]]]],
                title: str, x_label: str, y_label: str, width: int = 640, height: int = 420) -> str:
    """A log-log scatter plot with optional fitted lines, as an SVG document (a string).

    series: (name, colour, xs, ys, fit) per series; ``fit`` (from :func:`linear_fit`) draws
    intercept + slope·x as a curve over the series' x range. All values must be > 0.
    """
    pts = [(x, y) for _, _, xs, ys, _ in series for x, y in zip(xs, ys)]
    if not pts or any(x <= 0 or y <= 0 for x, y in pts):
        raise ValueError("a log-log plot needs at least one point and positive values")
    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    x_lo, x_hi = x_lo / 1.3, x_hi * 1.3
    y_lo, y_hi = y_lo / 1.5, y_hi * 1.5
    left, right, top, bottom = 70, 20, 40, 55
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * (math.log10(x) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))

    def sy(y: float) -> float:
        return top + ph * (1 - (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.0f}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>']
    for t in _log_ticks(x_lo, x_hi):
        X = sx(t)
        out.append(f'<line x1="{X:.1f}" y1="{top}" x2="{X:.1f}" y2="{top + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{X:.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _log_ticks(y_lo, y_hi):
        Y = sy(t)
        out.append(f'<line x1="{left}" y1="{Y:.1f}" x2="{left + pw}" y2="{Y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{Y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="16" y="{top + ph / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + ph / 2:.0f})">{escape(y_label)}</text>')
    for i, (name, colour, xs, ys, fit) in enumerate(series):
        if fit is not None:
            a, b = min(xs), max(xs)
            path = []
            for s in range(41):
                x = a * (b / a) ** (s / 40)
                y = fit["intercept"] + fit["slope"] * x
                if y > 0:
                    path.append(f"{'M' if not path else 'L'}{sx(x):.1f},{sy(y):.1f}")
            if path:
                out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-dasharray="5,3"/>')
        for x, y in zip(xs, ys):
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/>')
        ly = top + 16 + 18 * i
        out.append(f'<circle cx="{left + 14}" cy="{ly - 4}" r="4" fill="{colour}"/>')
        label = name if fit is None else f"{name} (dashed: linear fit, R² {fit['r2']:.4f})"
        out.append(f'<text x="{left + 24}" y="{ly}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def status(ok: bool) -> str:
    return "PASS" if ok else "NOT MET"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    if any(len(r) != len(header) for r in rows):
        raise ValueError("every row needs one cell per header column")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def sharing_bound(separate_s: float, composite_s: float, calls: int) -> float:
    """Largest speedup one pass could have over ``calls`` separate calls taking ``separate_s`` seconds in all,
    of which ``composite_s`` is compositing (the same pair work in both): even if the single pass did the
    non-compositing work of only one call, it would take composite_s + (separate_s − composite_s) / calls."""
    if not (0 <= composite_s <= separate_s) or calls < 1:
        raise ValueError("need 0 <= composite_s <= separate_s and calls >= 1")
    return separate_s / (composite_s + (separate_s - composite_s) / calls)


def fixed_work_bound(separate_s: float, one_call_s: float, calls_s: float, calls: int) -> float:
    """Largest speedup one pass could have over ``calls`` separate calls taking ``separate_s`` seconds in all,
    if it saved exactly the per-call fixed work: ``one_call_s`` and ``calls_s`` are the times of 1 call and of
    ``calls`` calls on a near-empty scene at the same image size, so (calls_s − one_call_s) is the fixed work
    a single pass can avoid, and the single pass needs at least separate_s − (calls_s − one_call_s) seconds."""
    if calls < 1 or not (0 < one_call_s) or separate_s <= 0:
        raise ValueError("need separate_s > 0, one_call_s > 0 and calls >= 1")
    saved = min(max(calls_s - one_call_s, 0.0), separate_s * (1 - 1e-9))
    return separate_s / (separate_s - saved)


def fit_note(xs: Sequence[float], ys: Sequence[float], fit: Dict[str, float]) -> str:
    """One sentence on how the cost per unit of x moves from the smallest to the largest x and on which side
    of the fitted line (from :func:`linear_fit`) the smallest-x point lies, read from the data.

    xs: tile intersections (count), ys: times (any unit), same length, x values > 0.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need at least two (x, y) pairs, got {len(xs)} x and {len(ys)} y values")
    if min(xs) <= 0:
        raise ValueError("x values must be > 0")
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    lo, hi = order[0], order[-1]
    per_lo, per_hi = ys[lo] / xs[lo], ys[hi] / xs[hi]
    change = per_hi / per_lo - 1 if per_lo != 0 else math.inf
    if abs(change) < 0.10:
        trend = "The cost per intersection stays within 10% from the smallest to the largest scene"
    elif change < 0:
        trend = f"The cost per intersection falls by {100 * -change:.0f}% from the smallest to the largest scene"
    else:
        trend = f"The cost per intersection rises by {100 * change:.0f}% from the smallest to the largest scene"
    predicted = fit["intercept"] + fit["slope"] * xs[lo]
    side = "over-predicts" if predicted > ys[lo] else "under-predicts"
    dev = abs(ys[lo] - predicted) / abs(ys[lo]) if ys[lo] != 0 else math.inf
    return f"{trend}; the line {side} the smallest scene by {100 * dev:.0f}%."
