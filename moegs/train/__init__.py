"""Training: experts alone, the router of frozen experts (staged), or experts and router end to end (joint)."""

from moegs.train.checkpoint import load_checkpoint, save_atomic
from moegs.train.losses import photometric_loss, ssim_map
from moegs.train.trainer import TrainConfig, Trainer, camera_index, expert_checkpoint, load_expert_state

__all__ = ["TrainConfig", "Trainer", "camera_index", "expert_checkpoint", "load_expert_state", "load_checkpoint",
           "save_atomic", "photometric_loss", "ssim_map"]
