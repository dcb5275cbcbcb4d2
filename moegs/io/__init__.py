"""Reading and writing Gaussian scenes (the standard 3DGS PLY layout plus moegs's expert and router properties)."""

from moegs.io.ply import GaussianPly, PlyFormatError, read_ply, write_ply

__all__ = ["GaussianPly", "PlyFormatError", "read_ply", "write_ply"]
