"""Rendering a NeuralScene into a window's keyframes, in memory-bounded chunks.

Shared by the G3R loop, the trainer, the benchmark and the node: a set of keyframes is
split into chunks of cameras that share an image size (and, when the scene has actors,
a stamp, since actors are placed per stamp). Each chunk is rendered and its loss
backpropagated before the next one, so memory does not grow with the number of views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .geometry import CameraBatch
from .render import render
from .render.types import GaussianParams
from .window import Keyframe


@dataclass
class ViewChunk:
    """Cameras rendered together. images: (C,H,W,3) float in [0,1] (None for novel views).
    stamp: the stamp actors are placed at (None: the first keyframe's)."""

    cameras: CameraBatch
    images: torch.Tensor | None
    stamp: float | None
    keyframe_indices: list[int]


def image_to_tensor(image: np.ndarray, device=None) -> torch.Tensor:
    """(H,W,3) uint8 → (H,W,3) float32 in [0,1]."""
    return torch.from_numpy(np.array(image, dtype=np.float32, copy=True)).to(device).div_(255.0)


def make_chunks(keyframes: list[Keyframe], *, chunk_size: int, per_stamp: bool, device=None) -> list[ViewChunk]:
    """Group keyframes into render chunks.

    per_stamp: True when the scene has actors, so each chunk holds one stamp only.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    groups: dict[tuple, list[int]] = {}
    for i, kf in enumerate(keyframes):
        key = (kf.camera.width, kf.camera.height, kf.stamp if per_stamp else None)
        groups.setdefault(key, []).append(i)
    chunks = []
    for (_, _, stamp), idx in groups.items():
        for s in range(0, len(idx), chunk_size):
            part = idx[s:s + chunk_size]
            cams = CameraBatch.from_cameras([keyframes[i].camera for i in part], device=device)
            imgs = torch.stack([image_to_tensor(keyframes[i].image, device) for i in part])
            chunks.append(ViewChunk(cams, imgs, stamp if per_stamp else keyframes[part[0]].stamp, part))
    return chunks


def render_chunk(params: GaussianParams, chunk: ViewChunk, *, background=None, backend="auto"):
    """Render ``params`` (world) into every camera of ``chunk`` → RenderOutput."""
    return render(params, chunk.cameras, backend=backend, background=background, render_depth=False)


def photometric_l2(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over a chunk: rgb, target (C,H,W,3)."""
    return (rgb - target).square().sum()
