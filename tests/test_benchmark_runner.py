"""Pure helpers of benchmarks/run_issue4.py (fit, plot, tables) against hand-computed values."""

import math
import os
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import issue4_report as R  # noqa: E402


def test_linear_fit_exact_line_and_residuals():
    fit = R.linear_fit([1, 2, 3, 4], [3, 5, 7, 9])  # y = 1 + 2x
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1)
    assert fit["r2"] == pytest.approx(1) and fit["max_rel_dev"] == pytest.approx(0, abs=1e-12)
    # y = (1, 3, 2) at x = (0, 1, 2): slope 0.5, intercept 1.5, fit (1.5, 2, 2.5); SS_res = 0.25 + 1 + 0.25
    # = 1.5, SS_tot = 2; relative deviations 0.5, 1/3, 0.25
    fit = R.linear_fit([0, 1, 2], [1, 3, 2])
    assert fit["slope"] == pytest.approx(0.5) and fit["intercept"] == pytest.approx(1.5)
    assert fit["r2"] == pytest.approx(1 - 1.5 / 2)
    assert fit["max_rel_dev"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        R.linear_fit([1, 1], [2, 3])
    with pytest.raises(ValueError):
        R.linear_fit([1], [2])


def test_sharing_bound():
    # 4 calls, 100 ms, 60 of them compositing: one pass needs at least 60 + 40 / 4 = 70 ms
    assert R.sharing_bound(0.100, 0.060, 4) == pytest.approx(100 / 70)
    assert R.sharing_bound(0.1, 0.1, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        R.sharing_bound(0.1, 0.2, 4)


def test_scaling_svg_is_valid_and_complete():
    fit = R.linear_fit([10, 100, 1000], [2, 11, 101])
    svg = R.scaling_svg([("fwd", "#00f", [10, 100, 1000], [2, 11, 101], fit),
                         ("fwd+bwd", "#f00", [10, 100, 1000], [5, 30, 250], None)],
                        title="t <&>", x_label="isects", y_label="ms")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    circles = root.findall(f"{ns}circle")
    assert len(circles) == 6 + 2  # points and legend markers
    assert len(root.findall(f"{ns}path")) == 1  # one fitted line
    texts = [t.text for t in root.findall(f"{ns}text")]
    assert "t <&>" in texts and "isects" in texts and "ms" in texts
    assert "10" in texts and "100" in texts and "1k" in texts  # log ticks at the powers of ten
    # larger x is further right, larger y higher up
    xs = [float(c.get("cx")) for c in circles[:3]]
    ys = [float(c.get("cy")) for c in circles[:3]]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)
    # equal log steps give equal pixel steps
    assert math.isclose(xs[1] - xs[0], xs[2] - xs[1], rel_tol=1e-3)
    with pytest.raises(ValueError):
        R.scaling_svg([("a", "#000", [0, 1], [1, 2], None)], "t", "x", "y")


def test_markdown_table():
    assert R.markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|:---|---:|\n| 1 | 2 |"
    with pytest.raises(ValueError):
        R.markdown_table(["a", "b"], [["1"]])


def test_fit_note_reads_trend_and_misfit_from_the_data():
    # x = (1, 2, 3), y = (1, 3, 2): slope 0.5, intercept 1, fit 1.5 at x = 1 (50% above y); y/x 1 -> 2/3
    xs, ys = [1, 2, 3], [1, 3, 2]
    assert R.fit_note(xs, ys, R.linear_fit(xs, ys)) == (
        "The cost per intersection falls by 33% from the smallest to the largest scene; "
        "the line over-predicts the smallest scene by 50%.")
    # y = (1, 3, 6): slope 2.5, intercept -5/3, fit 5/6 at x = 1 (17% below y); y/x 1 -> 2
    ys = [1, 3, 6]
    assert R.fit_note(xs, ys, R.linear_fit(xs, ys)) == (
        "The cost per intersection rises by 100% from the smallest to the largest scene; "
        "the line under-predicts the smallest scene by 17%.")
    # x = (4, 1, 2) unsorted, y = (4.2, 1, 2): y/x 1 -> 1.05; slope 15/14, intercept -0.1, fit 0.9714 at x = 1
    xs, ys = [4, 1, 2], [4.2, 1, 2]
    assert R.fit_note(xs, ys, R.linear_fit(xs, ys)) == (
        "The cost per intersection stays within 10% from the smallest to the largest scene; "
        "the line under-predicts the smallest scene by 3%.")
    with pytest.raises(ValueError):
        R.fit_note([0, 1], [1, 2], R.linear_fit([0, 1], [1, 2]))
    with pytest.raises(ValueError):
        R.fit_note([1], [1], {"slope": 1, "intercept": 0})


def test_fixed_work_bound():
    # 4 calls take 100 ms; on a near-empty scene 1 call takes 2 ms and 4 calls 8 ms: 6 ms of fixed work can be
    # shared, so one pass needs at least 94 ms
    assert R.fixed_work_bound(0.100, 0.002, 0.008, 4) == pytest.approx(100 / 94)
    # no fixed work (or noise making 4 calls faster than 1): no speedup available
    assert R.fixed_work_bound(0.100, 0.002, 0.001, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        R.fixed_work_bound(0.1, 0.0, 0.01, 4)
