"""The G3R loop: T learned, gradient-guided updates of 3D neural Gaussians.

At every step t (docs/METHOD.md, "Gradient lifting" and "Update"):

1. render the current state into every source view (in chunks);
2. L = Σ_views ‖I_src − render‖² ;
3. ∂L/∂h for every Gaussian of every component, accumulated chunk by chunk, so memory
   does not grow with the number of source views;
4. normalize each component's gradient per channel by its max |value|;
5. Δ = G3R-Net_kind(h, ∇h, t);
6. h ← h + γ(t)·Δ with a cosine step-size schedule γ.

``reconstruct`` runs the loop for inference; ``lift_gradients`` and ``apply_update`` are
also used by the trainer, which differentiates through ``apply_update``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .devices import resolve_device
from .gaussians import POS
from .initialization import InitConfig, init_scene
from .metrics import psnr_from_mse
from .model import G3RModel
from .net import normalize_gradient
from .progress import progress_bar as tqdm
from .render.types import GaussianParams
from .scene import NeuralScene
from .views import ViewChunk, make_chunks, photometric_l2, render_chunk
from .window import SceneWindow

LOG = logging.getLogger(__name__)


@dataclass
class ReconstructConfig:
    """Settings of the G3R loop (mirrored by the ``reconstruct`` section of config YAMLs)."""

    steps: int = 24
    turbo: bool = False
    turbo_steps: int = 12
    turbo_point_fraction: float = 0.5
    device: str = "auto"          # auto | cpu | cuda
    backend: str = "auto"         # renderer backend: auto | torch | gsplat
    view_chunk: int = 4           # source views rendered per backward pass
    gamma_max: float = 1.0        # step size at t = 0
    gamma_min: float = 0.1        # step size at t = T-1
    background: tuple = (0.0, 0.0, 0.0)
    seed: int = 0

    def validate(self):
        if self.steps < 1 or self.turbo_steps < 1:
            raise ValueError("reconstruct.steps and turbo_steps must be >= 1")
        if not 0 < self.turbo_point_fraction <= 1:
            raise ValueError("reconstruct.turbo_point_fraction must be in (0, 1]")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"reconstruct.device must be auto, cpu or cuda, got {self.device!r}")
        if self.view_chunk < 1:
            raise ValueError("reconstruct.view_chunk must be >= 1")

    @property
    def num_steps(self) -> int:
        return self.turbo_steps if self.turbo else self.steps


def step_size(t: int, total: int, gamma_max: float, gamma_min: float) -> float:
    """Cosine schedule γ(t): gamma_max at t=0 down to gamma_min at t=total-1."""
    if total <= 1:
        return gamma_max
    u = t / (total - 1)
    return gamma_min + 0.5 * (gamma_max - gamma_min) * (1.0 + math.cos(math.pi * u))


def distant_voxel_size(points: torch.Tensor, factor: float = 2.0, sample: int = 512) -> float:
    """Voxel size for the distant network: ``factor`` x the median nearest-neighbour spacing of
    the sphere's Gaussians (its radius depends on the scene, so it is measured, not fixed).

    points: (N,3) world.
    """
    n = points.shape[0]
    if n < 2:
        return 1.0
    idx = torch.linspace(0, n - 1, min(sample, n), device=points.device).long()
    d = torch.cdist(points[idx], points)
    d[torch.arange(len(idx), device=points.device), idx] = float("inf")
    return float(factor * d.amin(dim=1).median().clamp_min(1e-3))


@dataclass
class LiftedGradients:
    """∂L/∂h per component (list aligned with ``scene.components``) and the loss terms."""

    grads: list[torch.Tensor]
    sse: float
    num_values: int
    render_s: float
    backward_s: float

    @property
    def mse(self) -> float:
        return self.sse / max(self.num_values, 1)


def lift_gradients(model: G3RModel, scene: NeuralScene, chunks: list[ViewChunk], *, background=None,
                   backend="auto") -> LiftedGradients:
    """Render ``scene`` into the source ``chunks`` and backpropagate L2 to every state.

    The states are treated as leaves (detached): gradients are inputs to the network,
    not a path for training it. Memory is bounded by one chunk.
    """
    leaves = [c.state.detach().requires_grad_(True) for c in scene.components]
    leaf_scene = scene.with_states(leaves)
    grads = [torch.zeros_like(x) for x in leaves]
    sse, count, t_render, t_back = 0.0, 0, 0.0, 0.0
    for chunk in chunks:
        t0 = time.perf_counter()
        params = leaf_scene.params_at(model.decoders, chunk.stamp)
        out = render_chunk(params, chunk, background=background, backend=backend)
        loss = photometric_l2(out.rgb, chunk.images)
        t1 = time.perf_counter()
        parts = torch.autograd.grad(loss, leaves, allow_unused=True)
        t2 = time.perf_counter()
        for g, p in zip(grads, parts):
            if p is not None:
                g.add_(p)
        sse += float(loss.detach())
        count += chunk.images.numel()
        t_render += t1 - t0
        t_back += t2 - t1
    return LiftedGradients(grads, sse, count, t_render, t_back)


def apply_update(model: G3RModel, scene: NeuralScene, grads: list[torch.Tensor], step: int, total: int,
                 gamma: float) -> list[torch.Tensor]:
    """New states h + γ·G_θ(h, ∇h, t) per component (differentiable w.r.t. the network)."""
    new_states = []
    for comp, grad in zip(scene.components, grads):
        state = comp.state.detach()
        if state.shape[0] == 0:
            new_states.append(state)
            continue
        net = model.nets[comp.kind]
        kw = {"voxel_size": distant_voxel_size(state[:, POS])} if comp.kind == "distant" else {}
        delta = net(state[:, POS], state, normalize_gradient(grad), step, total, **kw)
        new_states.append(state + gamma * delta)
    return new_states


def subsample_scene(scene: NeuralScene, fraction: float, seed: int) -> NeuralScene:
    """Keep a random ``fraction`` of every component's points (turbo mode)."""
    if fraction >= 1.0:
        return scene
    gen = torch.Generator().manual_seed(seed)
    states = []
    for comp in scene.components:
        n = comp.state.shape[0]
        keep = max(1, int(round(n * fraction))) if n else 0
        idx = torch.randperm(n, generator=gen)[:keep].to(comp.state.device)
        states.append(comp.state[idx])
    return scene.with_states(states)


@dataclass
class ReconstructionResult:
    """The reconstructed scene and its per-step log."""

    scene: NeuralScene
    model: G3RModel
    log: list[dict]
    device: str
    init_s: float
    total_s: float
    extras: dict = field(default_factory=dict)

    @torch.no_grad()
    def params_at(self, stamp: float | None = None) -> GaussianParams:
        """Decoded, renderable Gaussians of all components in world at ``stamp`` (detached)."""
        return self.scene.params_at(self.model.decoders, stamp).detach()


class Cancelled(RuntimeError):
    """The reconstruction was cancelled through its ``cancel`` event."""


def reconstruct(window: SceneWindow, model: G3RModel, config: ReconstructConfig | None = None, *,
                init_config: InitConfig | None = None, scene: NeuralScene | None = None,
                on_step: Callable[[int, NeuralScene, dict], None] | None = None,
                cancel: threading.Event | None = None, progress: bool = True) -> ReconstructionResult:
    """Reconstruct ``window`` with T learned steps.

    on_step(step, scene, log_entry): called after each step, outside the timed region
    (benchmarks evaluate held-out views there). cancel: set it to stop early (raises
    ``Cancelled``; already-finished work is discarded by the caller's choice).
    """
    config = config or ReconstructConfig()
    config.validate()
    window.validate()
    device = resolve_device(config.device)
    model = model.to(device).eval()
    background = torch.tensor(config.background, dtype=torch.float32, device=device)

    t_start = time.perf_counter()
    if scene is None:
        scene = init_scene(window, init_config or InitConfig(), device=device)
    scene = scene.to(device)
    if config.turbo:
        scene = subsample_scene(scene, config.turbo_point_fraction, config.seed)
    chunks = make_chunks(window.source_keyframes, chunk_size=config.view_chunk,
                         per_stamp=scene.has_actors, device=device)
    init_s = time.perf_counter() - t_start

    total = config.num_steps
    log: list[dict] = []
    excluded = 0.0  # time spent in callbacks, not part of the reconstruction time
    bar = tqdm(range(total), desc="G3R", unit="step", disable=not progress, leave=False)
    for t in bar:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"reconstruction cancelled at step {t}/{total}")
        lifted = lift_gradients(model, scene, chunks, background=background, backend=config.backend)
        t0 = time.perf_counter()
        gamma = step_size(t, total, config.gamma_max, config.gamma_min)
        with torch.no_grad():
            new_states = apply_update(model, scene, lifted.grads, t, total, gamma)
        scene = scene.with_states(new_states)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_net = time.perf_counter() - t0
        entry = {
            "step": t, "gamma": gamma, "loss_mse": lifted.mse, "psnr_source": psnr_from_mse(lifted.mse),
            "render_s": lifted.render_s, "backward_s": lifted.backward_s, "network_s": t_net,
            "elapsed_s": time.perf_counter() - t_start - excluded,
        }
        log.append(entry)
        bar.set_postfix(psnr=f"{entry['psnr_source']:.2f}")
        LOG.debug("step %d: mse %.5f psnr %.2f (render %.2fs, backward %.2fs, net %.2fs)", t, lifted.mse,
                  entry["psnr_source"], lifted.render_s, lifted.backward_s, t_net)
        if on_step is not None:
            t_cb = time.perf_counter()
            on_step(t, scene, entry)
            excluded += time.perf_counter() - t_cb
    total_s = time.perf_counter() - t_start - excluded
    LOG.info("G3R: %d steps in %.1fs on %s, %d Gaussians, source PSNR %.2f dB (pre-update)", total, total_s,
             device, scene.num_points, log[-1]["psnr_source"] if log else float("nan"))
    return ReconstructionResult(scene, model, log, str(device), init_s, total_s)
