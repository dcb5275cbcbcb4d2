"""Datasets: D-NeRF, Neural 3D Video, Technicolor loaders and the built-in procedural dynamic scene."""

import os

from moegs.data.cameras import Camera, SceneData
from moegs.data.dnerf import load_dnerf
from moegs.data.multiview import load_n3v, load_technicolor
from moegs.data.procedural import MOTION_CLASSES, ProceduralSceneConfig, procedural_scene, write_procedural_scene


def detect_format(path: str) -> str:
    """'dnerf', 'n3v' or 'technicolor' from the files in ``path``; ValueError if none matches."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"dataset folder not found: {path}")
    if os.path.isfile(os.path.join(path, "transforms_train.json")):
        return "dnerf"
    if os.path.isfile(os.path.join(path, "poses_bounds.npy")):
        return "n3v"
    if os.path.isfile(os.path.join(path, "cameras_parameters.txt")):
        return "technicolor"
    raise ValueError(
        f"{path}: unknown dataset layout; expected transforms_train.json (D-NeRF), poses_bounds.npy + camXX.mp4 "
        f"(Neural 3D Video) or cameras_parameters.txt + images (Technicolor)"
    )


def load_dataset(path: str, **opts) -> SceneData:
    """Load a D-NeRF, N3V or Technicolor scene, detecting the format (options go to the loader)."""
    fmt = detect_format(path)
    loader = {"dnerf": load_dnerf, "n3v": load_n3v, "technicolor": load_technicolor}[fmt]
    return loader(path, **opts)


__all__ = [
    "Camera",
    "SceneData",
    "load_dataset",
    "detect_format",
    "load_dnerf",
    "load_n3v",
    "load_technicolor",
    "MOTION_CLASSES",
    "ProceduralSceneConfig",
    "write_procedural_scene",
    "procedural_scene",
]
