"""The reconstruction seam of ``reconstruct_node``: what the worker thread calls on a window.

:class:`Reconstructor` is the protocol (window + cancel event → an output whose
``params_at(stamp)`` gives the Gaussians); :class:`G3RReconstructor` is the product path (the
shipped or configured G3R model); ``reconstruction.implementation = 'module:factory'`` swaps in
another one (tests, other methods). ROS-free: importable without rclpy.
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass
from typing import Protocol

from ..render.types import GaussianParams
from ..window import SceneWindow
from .params import NodeConfig


class ReconstructionOutput(Protocol):
    """What a reconstructor returns: renderable Gaussians (world) at a stamp, and metrics
    (JSON-ready: e.g. ``time_s``, ``device``, ``steps``)."""

    metrics: dict

    def params_at(self, stamp: float | None) -> GaussianParams: ...


class Reconstructor(Protocol):
    """Reconstruct ``window``; return early (raise) when ``cancel`` is set."""

    def __call__(self, window: SceneWindow, cancel: threading.Event) -> ReconstructionOutput: ...


@dataclass
class _G3ROutput:
    result: object  # g3r_ros.reconstruct.ReconstructionResult
    metrics: dict

    def params_at(self, stamp: float | None) -> GaussianParams:
        return self.result.params_at(stamp)


class G3RReconstructor:
    """The product path: the shipped (or configured) G3R model, ``g3r_ros.reconstruct.reconstruct``.

    The model is loaded at construction, so a missing/corrupt model or an unavailable device
    fails at node startup with a clear ``ValueError``.
    """

    def __init__(self, config: NodeConfig):
        from ..config import config_path, from_dict, load_yaml
        from ..initialization import InitConfig
        from ..model import load_model
        from ..reconstruct import ReconstructConfig, resolve_device

        sections: dict = {}
        if config.reconstruction_settings_file:
            sections = load_yaml(config.reconstruction_settings_file)
        elif config_path("init.yaml").is_file():
            sections = {"init": load_yaml(config_path("init.yaml"))}
        rdict = dict(sections.get("reconstruct") or {})
        rdict.update(steps=config.reconstruction_steps, turbo=config.reconstruction_turbo,
                     device=config.reconstruction_device)
        self.config = from_dict(ReconstructConfig, rdict, where="reconstruct")
        self.init_config = from_dict(InitConfig, sections.get("init") or {}, where="init")
        self.device = resolve_device(self.config.device)  # 'cuda' without CUDA → ValueError
        self.model = load_model(config.model_path(), device=self.device)

    def __call__(self, window: SceneWindow, cancel: threading.Event) -> ReconstructionOutput:
        from ..reconstruct import reconstruct

        result = reconstruct(window, self.model, self.config, init_config=self.init_config, cancel=cancel,
                             progress=False)
        last = result.log[-1] if result.log else {}
        metrics = {"time_s": result.total_s, "init_s": result.init_s, "device": result.device,
                   "steps": len(result.log), "gaussians": int(result.scene.num_points),
                   "psnr_source_last_step": last.get("psnr_source", float("nan"))}
        return _G3ROutput(result, metrics)


def torch_threads() -> int:
    """torch's CPU thread count, or 0 when torch is not loaded (a custom reconstructor)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


def load_reconstructor(config: NodeConfig) -> Reconstructor:
    """The configured reconstructor: G3R, or ``reconstruction.implementation`` = ``module:factory``
    where ``factory(config) -> Reconstructor``. Raises ``ValueError`` when it cannot be built."""
    spec = config.reconstruction_implementation
    if not spec:
        return G3RReconstructor(config)
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"parameter 'reconstruction.implementation': cannot import {spec!r}: {e}") from None
    return factory(config)
