"""What a streaming session's worker runs on each window (ROS-free).

:class:`G3RReconstructor` is the product path: the shipped (or given) G3R model through
``g3r_ros.reconstruct.reconstruct``. :func:`load_reconstructor` builds it, or a plug-in named
``module:factory`` (``factory(config) -> Reconstructor``; tests and other methods). The
protocol itself is ``g3r_ros.streaming.Reconstructor``.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path

from .window import SceneWindow


@dataclass
class _G3ROutput:
    result: object  # g3r_ros.reconstruct.ReconstructionResult
    metrics: dict

    def params_at(self, stamp: float | None):
        return self.result.params_at(stamp)

    def refinable(self):
        """G3R's scene and the decoders of its states (what ``g3r_ros.refine.refine`` continues from)."""
        return self.result.scene, self.result.model.decoders


class G3RReconstructor:
    """G3R on each window with the model at ``model_path``.

    ``settings_file``: optional YAML with ``init`` and ``reconstruct`` sections (as
    ``config/offline_*.yaml``; default: the package's ``config/init.yaml``); ``steps``, ``turbo``
    and ``device`` override it. The model is loaded here, so a missing or corrupt model or an
    unavailable device fails at construction with a clear ``ValueError``.
    """

    def __init__(self, model_path, *, steps: int = 24, turbo: bool = False, device: str = "auto",
                 settings_file: str | Path | None = None):
        from .config import config_path, from_dict, load_yaml
        from .devices import resolve_device
        from .initialization import InitConfig
        from .model import load_model
        from .reconstruct import ReconstructConfig

        sections: dict = {}
        if settings_file:
            sections = load_yaml(settings_file)
        elif config_path("init.yaml").is_file():
            sections = {"init": load_yaml(config_path("init.yaml"))}
        rdict = dict(sections.get("reconstruct") or {})
        rdict.update(steps=steps, turbo=turbo, device=device)
        self.config = from_dict(ReconstructConfig, rdict, where="reconstruct")
        self.init_config = from_dict(InitConfig, sections.get("init") or {}, where="init")
        self.device = resolve_device(self.config.device)  # 'cuda' without CUDA → ValueError
        self.model = load_model(model_path, device=self.device)

    def configure(self, *, steps: int | None = None, turbo: bool | None = None) -> None:
        """Change the number of steps or turbo mode from the next window on."""
        changes = {k: v for k, v in (("steps", steps), ("turbo", turbo)) if v is not None}
        self.config = dataclasses.replace(self.config, **changes)

    def __call__(self, window: SceneWindow, cancel: threading.Event) -> _G3ROutput:
        from .reconstruct import reconstruct

        result = reconstruct(window, self.model, self.config, init_config=self.init_config, cancel=cancel,
                             progress=False)
        last = result.log[-1] if result.log else {}
        metrics = {"time_s": result.total_s, "init_s": result.init_s, "device": result.device,
                   "steps": len(result.log), "gaussians": int(result.scene.num_points),
                   "psnr_source_last_step": last.get("psnr_source", float("nan"))}
        return _G3ROutput(result, metrics)


def load_reconstructor(implementation: str, config, **g3r_kwargs):
    """``implementation`` '' → :class:`G3RReconstructor` (``**g3r_kwargs``: ``model_path``, ``steps``,
    ``turbo``, ``device``, ``settings_file``); ``'module:factory'`` → ``factory(config)``. Raises
    ``ValueError`` when it cannot be built."""
    if not implementation:
        return G3RReconstructor(**g3r_kwargs)
    module, _, name = implementation.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reconstructor {implementation!r} cannot be imported: {e}") from None
    return factory(config)
