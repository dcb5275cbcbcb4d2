"""Datasets: D-NeRF, Neural 3D Video, Technicolor loaders and the built-in procedural dynamic scene."""

from moegs.data.cameras import Camera, SceneData
from moegs.data.dnerf import load_dnerf
from moegs.data.procedural import MOTION_CLASSES, ProceduralSceneConfig, write_procedural_scene

__all__ = [
    "Camera",
    "SceneData",
    "load_dnerf",
    "MOTION_CLASSES",
    "ProceduralSceneConfig",
    "write_procedural_scene",
]
