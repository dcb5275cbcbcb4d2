"""CLI smoke tests on a tiny built-in scene: train (staged and joint), render, eval, demo; results.json schema."""

import json
import math
import os

import pytest

from moegs.cli import build_parser, main

TINY = dict(width=24, height=24)


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from moegs.data.procedural import ProceduralSceneConfig, write_procedural_scene

    folder = str(tmp_path_factory.mktemp("scene"))
    cfg = ProceduralSceneConfig(**TINY)
    for field, small in (("n_train_cameras", 3), ("n_test_cameras", 1), ("n_frames", 3)):
        if hasattr(cfg, field):
            setattr(cfg, field, small)
    write_procedural_scene(folder, cfg)
    return folder


def _check_schema(res, experts, with_singles=True):
    assert set(res) >= {"experts", "moe", "router_nmi"}
    for name in experts if with_singles else []:
        r = res["experts"][name]
        assert set(r) >= {"psnr", "ssim", "iters", "seconds"}
        assert all(isinstance(r[k], (int, float)) for k in ("psnr", "ssim", "iters", "seconds"))
    assert {"psnr", "ssim", "iters", "seconds"} <= set(res["moe"])
    assert isinstance(res["router_nmi"], float) and 0.0 <= res["router_nmi"] <= 1.0


def test_train_staged_render_eval(tiny_scene, tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "--data", tiny_scene, "--experts", "static,polynomial", "--staged", "--iters", "3",
            "--router-iters", "2", "--out", out, "--no-media"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "PSNR" in text and "MoE staged" in text
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    _check_schema(res, ["static", "polynomial"])
    assert res["moe"]["mode"] == "staged" and "moe_staged" in res and res["best_single"] in ("static", "polynomial")
    model = os.path.join(out, "model_staged.pt")
    assert main(["render", "--model", model, "--data", tiny_scene, "--out", str(tmp_path / "r"), "--frames", "2"]) == 0
    files = set(os.listdir(tmp_path / "r"))
    assert {"blend.mp4", "gates.mp4", "view00_blend.png", "view00_gates.png", "view00_expert_static.png"} <= files
    assert main(["eval", "--model", model, "--data", tiny_scene, "--out", str(tmp_path / "e")]) == 0
    with open(tmp_path / "e" / "results.json") as f:
        ev = json.load(f)
    assert abs(ev["moe"]["psnr"] - res["moe"]["psnr"]) < 1e-4  # the saved model reproduces the run's evaluation
    assert set(ev["experts"]) == {"static", "polynomial"}
    _check_schema(ev, ["static", "polynomial"])


def test_train_joint_and_resume(tiny_scene, tmp_path, capsys):
    out = str(tmp_path / "j")
    argv = ["train", "--data", tiny_scene, "--experts", "static,mlp", "--joint", "--iters", "3", "--out", out,
            "--no-media"]
    assert main(argv) == 0
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    _check_schema(res, [], with_singles=False)
    assert res["moe"]["mode"] == "joint" and res["gain_db"] is None
    assert main(argv + ["--resume"]) == 0  # finished checkpoints are loaded, nothing retrained
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["moe"]["psnr"] == res["moe"]["psnr"]
    warm = str(tmp_path / "w")
    assert main(argv[:-3] + ["--out", warm, "--no-media", "--joint-warmup", "2"]) == 0
    with open(os.path.join(warm, "results.json")) as f:
        assert json.load(f)["config"]["joint_warmup"] == 2
    assert main(argv[:-3] + ["--out", str(tmp_path / "bad"), "--no-media", "--joint-warmup", "3"]) == 2
    assert "joint_warmup" in capsys.readouterr().err
    # resuming with other settings is refused instead of silently reusing the finished checkpoint
    assert main(argv + ["--resume", "--joint-warmup", "1"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "joint_warmup" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv + ["--joint-warmup", "-1"])


def test_demo_smoke(tmp_path, capsys):
    out = str(tmp_path / "d")
    assert main(["demo", "--out", out, "--iters", "2", "--router-iters", "2", "--size", "24", "--cameras", "3",
                 "--frames", "3", "--experts", "static,polynomial"]) == 0
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    _check_schema(res, ["static", "polynomial"])
    assert {"moe_staged", "moe_joint"} <= set(res)
    assert math.isfinite(res["singles_class_blend_oracle_psnr"])
    assert math.isfinite(res["moe_staged"]["class_blend_oracle_psnr"])
    assert os.path.exists(os.path.join(out, "renders", "gates.mp4"))
    assert "router NMI" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "x", "--out", "y", "--experts", "static,nope"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "x", "--out", "y", "--staged", "--joint"])
    for bad in ("0", "-2", "nan", "inf", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--data", "x", "--out", "y", "--network-lr-scale", bad])
    args = build_parser().parse_args(["train", "--data", "x", "--out", "y", "--network-lr-scale", "2.5"])
    assert args.network_lr_scale == 2.5
    assert build_parser().parse_args(["demo", "--out", "y"]).network_lr_scale == 3.0
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    for cmd in ("demo", "train", "render", "eval"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([cmd, "--help"])
        assert e.value.code == 0
