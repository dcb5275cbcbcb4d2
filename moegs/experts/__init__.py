"""Deformation experts: six dynamic-Gaussian models behind one interface (``DeformationExpert``)."""

from __future__ import annotations

from typing import Dict

from torch import Tensor

from .base import ROUTER_INIT, ROUTER_LRS, DeformationExpert, GaussianSet
from .embedding import EmbeddingExpert
from .hexplane import HexPlaneExpert
from .keyframe import KeyframeExpert
from .mlp import MLPExpert
from .polynomial import PolynomialExpert
from .static import StaticExpert

EXPERTS: Dict[str, type] = {
    "static": StaticExpert,
    "mlp": MLPExpert,
    "hexplane": HexPlaneExpert,
    "embedding": EmbeddingExpert,
    "polynomial": PolynomialExpert,
    "keyframe": KeyframeExpert,
}


def build_expert(name: str, points: Tensor, colors: Tensor, **cfg) -> DeformationExpert:
    """Build the expert registered as ``name`` from a point cloud ([P,3] points, [P,3] colours in [0,1]).

    ``cfg`` is passed to the expert's constructor (``sh_degree``, ``scene_radius`` and expert options);
    an unknown option raises TypeError.
    """
    if not isinstance(name, str) or name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}; choose one of {sorted(EXPERTS)}")
    return EXPERTS[name](points, colors, **cfg)


__all__ = ["EXPERTS", "build_expert", "DeformationExpert", "GaussianSet", "ROUTER_INIT", "ROUTER_LRS",
           "StaticExpert", "MLPExpert", "HexPlaneExpert", "EmbeddingExpert", "PolynomialExpert", "KeyframeExpert"]
