import json
import os

from moegs.cli import main
from moegs.demo import DemoConfig, run_demo


def test_demo_trains_and_writes_outputs(tmp_path):
    short = run_demo(DemoConfig(out=str(tmp_path / "a"), iters=2, n_gaussians=400, width=32, height=32))
    longer = run_demo(DemoConfig(out=str(tmp_path / "b"), iters=40, n_gaussians=400, width=32, height=32))
    assert longer["train_psnr"] > short["train_psnr"] + 1.0
    files = os.listdir(tmp_path / "b")
    assert {"results.json", "test0_target.png", "test0_blend.png", "test0_gates.png", "test0_expert2.png"} <= set(files)
    with open(tmp_path / "b" / "results.json") as f:
        assert json.load(f)["test_psnr"] == longer["test_psnr"]


def test_cli_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--iters", "3", "--gaussians", "200", "--size", "24"]) == 0
    assert "PSNR" in capsys.readouterr().out
