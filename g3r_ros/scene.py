"""NeuralScene: the decomposed 3D neural Gaussians of one window.

A scene is a list of :class:`Component`, each a state ``(N,46)`` (layout in
:mod:`g3r_ros.gaussians`) of one kind (the G3R decomposition, docs/ARCHITECTURE.md):

- ``background``: static, in the world frame;
- ``actor``: one per rigid actor track, in *box-local* coordinates; placed per stamp by
  ``track.pose_at(stamp)`` (``T_world_box``), rotating means and quaternions;
- ``distant``: Gaussians on a cropped sphere around the ego path, in the world frame.

All components decode with their kind's decoder and are concatenated into one
:class:`~g3r_ros.render.types.GaussianParams` in the world frame, which renders through
the single ``g3r_ros.render.render`` entry point. Initialization from LiDAR lives in
:mod:`g3r_ros.initialization`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .gaussians import COMPONENT_KINDS, STATE_CHANNELS
from .geometry import quat_multiply_torch, rotmat_to_quat
from .render.types import GaussianParams
from .window import ActorTrack


# ---------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------
@dataclass
class Component:
    """One part of the scene. state: (N,46) in the component frame (world, or box-local
    for actors). track: the actor's track (actors only)."""

    name: str
    kind: str
    state: torch.Tensor
    track: ActorTrack | None = None

    def __post_init__(self):
        if self.kind not in COMPONENT_KINDS:
            raise ValueError(f"component {self.name!r}: kind must be one of {COMPONENT_KINDS}, got {self.kind!r}")
        if self.state.dim() != 2 or self.state.shape[1] != STATE_CHANNELS:
            raise ValueError(f"component {self.name!r}: state must be (N,{STATE_CHANNELS}), "
                             f"got {tuple(self.state.shape)}")
        if self.kind == "actor" and self.track is None:
            raise ValueError(f"actor component {self.name!r} needs a track")

    def __len__(self) -> int:
        return int(self.state.shape[0])


Decoder = Callable[[torch.Tensor], GaussianParams]


def place_params(params: GaussianParams, T_world_local: np.ndarray) -> GaussianParams:
    """Move Gaussians from a local frame to world: means (N,3) local → R·m + t; quats are
    left-multiplied by the rotation's quaternion. Differentiable w.r.t. ``params``."""
    dev, dt = params.means.device, params.means.dtype
    R = torch.as_tensor(T_world_local[:3, :3], dtype=dt, device=dev)
    t = torch.as_tensor(T_world_local[:3, 3], dtype=dt, device=dev)
    q = torch.as_tensor(rotmat_to_quat(T_world_local[:3, :3]), dtype=dt, device=dev)
    return GaussianParams(
        means=params.means @ R.T + t,
        quats=quat_multiply_torch(q.expand_as(params.quats), params.quats),
        log_scales=params.log_scales,
        opacity_logits=params.opacity_logits,
        rgb=params.rgb,
    )


def _empty_params(device=None, dtype=torch.float32) -> GaussianParams:
    def z(*shape):
        return torch.zeros(shape, device=device, dtype=dtype)

    return GaussianParams(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 3))


class NeuralScene:
    """A decomposed set of neural Gaussian components (see module doc)."""

    def __init__(self, components: list[Component]):
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {names}")
        self.components = list(components)

    def __len__(self) -> int:
        return len(self.components)

    @property
    def num_points(self) -> int:
        return sum(len(c) for c in self.components)

    @property
    def has_actors(self) -> bool:
        """True when some component is an actor (renders then depend on the stamp)."""
        return any(c.kind == "actor" for c in self.components)

    @property
    def device(self) -> torch.device:
        return self.components[0].state.device if self.components else torch.device("cpu")

    def counts(self) -> dict:
        """Number of Gaussians per kind (JSON ready)."""
        out = {k: 0 for k in COMPONENT_KINDS}
        for c in self.components:
            out[c.kind] += len(c)
        out["total"] = self.num_points
        out["actors"] = sum(1 for c in self.components if c.kind == "actor")
        return out

    def states(self) -> list[torch.Tensor]:
        return [c.state for c in self.components]

    def with_states(self, states: list[torch.Tensor]) -> NeuralScene:
        """The same components (names, kinds, tracks) with new states (same point counts)."""
        states = list(states)
        if len(states) != len(self.components):
            raise ValueError(f"expected {len(self.components)} states, got {len(states)}")
        return NeuralScene([dataclasses.replace(c, state=s) for c, s in zip(self.components, states)])

    def to(self, device) -> NeuralScene:
        return self.with_states([s.to(device) for s in self.states()])

    def detach(self) -> NeuralScene:
        return self.with_states([s.detach() for s in self.states()])

    def _active(self, stamp: float | None) -> list[Component]:
        return [c for c in self.components if not (c.kind == "actor" and stamp is None)]

    def layout(self, stamp: float | None) -> list[tuple[str, int, int]]:
        """(name, start, stop) rows of each component in :meth:`params_at`'s output."""
        rows, start = [], 0
        for c in self._active(stamp):
            rows.append((c.name, start, start + len(c)))
            start += len(c)
        return rows

    def params_at(self, decoders: Mapping[str, Decoder], stamp: float | None) -> GaussianParams:
        """Decode every component and place it in the world frame at ``stamp`` (seconds).

        decoders: kind → decoder (e.g. :func:`g3r_ros.gaussians.make_decoders`). Actors are
        decoded in box-local coordinates and placed by ``track.pose_at(stamp)``; with
        ``stamp=None`` actors are left out (a static map). Rows follow :meth:`layout`.
        """
        parts = []
        for c in self._active(stamp):
            if c.kind not in decoders:
                raise ValueError(f"no decoder for component kind {c.kind!r} (have {sorted(decoders)})")
            p = decoders[c.kind](c.state)
            if c.kind == "actor":
                p = place_params(p, c.track.pose_at(float(stamp)))
            parts.append(p)
        if not parts:
            return _empty_params(self.device)
        return GaussianParams.cat(parts) if len(parts) > 1 else parts[0]
