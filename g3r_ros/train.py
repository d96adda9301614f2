"""Training G3R-Net across scenes, with novel-view supervision (docs/METHOD.md, "Training").

One scene iteration:
1. draw a window (real with probability ``real_fraction``), cut a random sub-window from it
   and initialize its Gaussians;
2. lift the source-view gradients of the initial state;
3. for t in 0..T-1: apply the network update h' = h + γ(t)·G_θ(h, ∇h, t), render h' into
   source AND held-out target views, loss = MSE + λ_ssim·(1 − SSIM) + w_flat·flatness,
   backpropagate into θ and take an Adam step (the network is updated at every step). The
   same source renders give ∇h' for step t+1 (``autograd.grad`` of their L2 w.r.t. h'), so
   the sources are rendered once per step, not twice;
4. h ← h' detached.

Backpropagation is truncated to one step: gradients do not flow from step t+1's loss into
the network's output at step t. Full backprop through 24 steps would multiply activation
memory by T, and each step's loss already supervises its own update; the state entering a
step is a constant for that step's loss (as the gradient inputs are in the paper).

LPIPS is not available here (its pretrained weights cannot be fetched), so its 0.01·LPIPS
term is replaced by λ_ssim·(1 − SSIM); recorded in the model card.

Runs on one process, or under ``torchrun`` with DistributedDataParallel (NCCL on GPUs,
gloo on CPU); each rank draws its own windows and gradients are averaged by DDP.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import from_dict, load_yaml
from .evaluate import evaluate_keyframes, mean_psnr
from .gaussians import LOG_SCALE
from .initialization import InitConfig, init_scene
from .metrics import psnr_from_mse, ssim
from .model import (
    MODEL_FORMAT,
    MODEL_VERSION,
    G3RModel,
    ModelFileError,
    atomic_torch_save,
    model_from_blob,
    safe_torch_load,
    save_model,
)
from .net import NetSetConfig, check_distant_voxel_unset
from .progress import progress_bar as tqdm
from .real_split import RealSplit, range_window
from .reconstruct import ReconstructConfig, apply_update, lift_gradients, reconstruct, step_size
from .scene import NeuralScene
from .subwindow import SubWindowConfig, sample_subwindow
from .views import make_chunks, render_chunk
from .window import SceneWindow
from .window_builder import WindowConfig, window_from_bag

LOG = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "g3r_ros.checkpoint"


@dataclass
class SynthPool:
    """Extra synthetic training scenes with their own generator settings (e.g. a 3-camera rig)."""

    seeds: tuple = (1100, 1108)                # [start, stop)
    synth: dict = field(default_factory=dict)  # SynthConfig overrides
    window: dict = field(default_factory=dict)  # WindowConfig overrides


@dataclass
class DataConfig:
    """Where training windows come from.

    Synthetic: the main pool (``synth_train_seeds`` with ``synth`` / ``window``) plus
    ``synth_extra`` pools; validation on ``synth_val_seeds``. Real: the frame ranges of
    ``real`` (:class:`~g3r_ros.real_split.RealSplit`; training windows are drawn inside
    ``real.train_frames`` with both cameras, validation on ``real.val_frames`` with the left
    one), or the windows of a ``window_cache`` file built by ``g3r train-cache``. Each
    iteration draws a real window with probability ``real_fraction`` (when there is real
    data), and every window goes through a random sub-window (``subwindow`` for synthetic,
    ``real_subwindow`` for real windows).
    """

    synth_train_seeds: tuple = (1000, 1016)   # [start, stop): generator seeds used for training
    synth_val_seeds: tuple = (2000, 2002)     # [start, stop): validation (never trained on)
    synth: dict = field(default_factory=dict)  # SynthConfig overrides (size, frames, cameras, actors)
    window: dict = field(default_factory=dict)  # WindowConfig for synthetic bags
    synth_extra: list = field(default_factory=list)  # SynthPool mappings
    real: dict = field(default_factory=dict)   # RealSplit; empty or sequence "" = no real data
    real_fraction: float = 0.5
    window_cache: str = ""                     # real windows from `g3r train-cache` instead of the sequence
    subwindow: dict = field(default_factory=lambda: {"enabled": False})   # SubWindowConfig for synthetic windows
    real_subwindow: dict = field(default_factory=dict)                    # SubWindowConfig for real windows
    cache_dir: str = "runs/cache"              # generated bags are cached here

    def real_split(self) -> RealSplit:
        split = from_dict(RealSplit, self.real, where="data.real")
        split.validate()
        return split


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    init: dict = field(default_factory=dict)   # InitConfig
    net: dict = field(default_factory=dict)    # NetConfig
    steps: int = 24                 # T at the end of the warm-up
    steps_start: int = 4            # T at iteration 0 (warm-up of the step count)
    warmup_iters: int = 200         # iterations over which T grows linearly to `steps`
    gamma_max: float = 1.0
    gamma_min: float = 0.1
    lr: float = 1e-4
    grad_clip: float = 1.0
    lambda_ssim: float = 0.2        # substitute for the paper's 0.01·LPIPS
    flatness_weight: float = 0.01
    flatness_eps: float = 0.02      # metres: the smallest scale is pushed below this
    iterations: int = 1000
    checkpoint_every: int = 10
    val_every: int = 50
    view_chunk: int = 4
    seed: int = 0
    device: str = "auto"
    init_model: str = ""            # start from these weights ("shipped": models/g3r_net.pt; "" = random)

    def validate(self):
        if self.iterations < 1 or self.steps < 1 or self.steps_start < 1:
            raise ValueError("iterations, steps and steps_start must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if not 0 <= self.data.real_fraction <= 1:
            raise ValueError(f"data.real_fraction must be in [0, 1], got {self.data.real_fraction}")
        self.data.real_split()  # the split is checked before any data is read


def load_train_config(path) -> TrainConfig:
    return from_dict(TrainConfig, load_yaml(path), where=str(path))


def steps_at(cfg: TrainConfig, iteration: int) -> int:
    """Warm-up of the number of steps: steps_start → steps over warmup_iters."""
    if cfg.warmup_iters <= 0 or iteration >= cfg.warmup_iters:
        return cfg.steps
    u = iteration / cfg.warmup_iters
    return int(round(cfg.steps_start + u * (cfg.steps - cfg.steps_start)))


def flatness_loss(log_scales: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean over Gaussians of relu(smallest scale − eps): log_scales (N,3)."""
    if log_scales.numel() == 0:
        return log_scales.sum()
    return torch.relu(log_scales.exp().amin(dim=1) - eps).mean()


# ---------------------------------------------------------------------------------------
# Data pool
# ---------------------------------------------------------------------------------------
def synth_bag(seed: int, data: DataConfig, synth: dict | None = None) -> Path:
    """Generate (once) and return the cached synthetic bag for ``seed`` (settings ``synth``,
    default ``data.synth``). The cache tag includes the generator version."""
    from .synthetic import GENERATOR_VERSION, SynthConfig, generate_drive

    synth = data.synth if synth is None else synth
    cfg = from_dict(SynthConfig, synth, where="data.synth")
    tag = f"synth_v{GENERATOR_VERSION}_{seed}_" + "_".join(f"{k}{v}" for k, v in sorted(synth.items()))
    path = Path(data.cache_dir) / tag.replace("/", "-").replace(" ", "")
    if not (path / "metadata.yaml").exists():
        if path.exists():
            import shutil

            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_drive(path, seed, cfg)
    return path


def load_pool(data: DataConfig, seeds: range, *, synth: dict | None = None, window: dict | None = None,
              progress=True) -> list[SceneWindow]:
    """Windows of the synthetic ``seeds`` (generated once and cached)."""
    window = data.window if window is None else window
    wcfg = from_dict(WindowConfig, window, where="data.window") if window else None
    windows = []
    for seed in tqdm(seeds, desc="scenes", disable=not progress, leave=False):
        w = window_from_bag(synth_bag(seed, data, synth), wcfg)
        w.name = f"synth-{seed}"
        w.validate()
        windows.append(w)
    return windows


def load_real_windows(data: DataConfig) -> tuple[list[SceneWindow], list[SceneWindow], dict]:
    """(training windows, validation windows, split record) of the real data, or empty lists.

    From ``data.window_cache`` when set (its header records the split), else converted from
    the sequence of ``data.real``."""
    if data.window_cache:
        from .window_cache import load_windows, read_header

        header = read_header(data.window_cache)
        record = header.get("meta", {}).get("real_split", {})
        windows = load_windows(data.window_cache)
        train = [w for w in windows if w.name.startswith("train:")]
        val = [w for w in windows if w.name.startswith("val:")]
        return train, val, record
    split = data.real_split()
    if not split.enabled:
        return [], [], {}
    train = [range_window(split, split.train_frames, cameras="both", name=f"train:{_frames_tag(split.train_frames)}")]
    val = [stereo_validation_window(range_window(split, split.val_frames, cameras="both",
                                                 name=f"val:{_frames_tag(split.val_frames)}"))]
    return train, val, split.to_record()


def stereo_validation_window(window: SceneWindow) -> SceneWindow:
    """Sources: the left camera's source keyframes; held out: the left camera's held-out keyframes
    and every right-camera keyframe (real views 0.54 m beside the path). Two left targets alone
    make a noisy validation score; the right camera adds a dozen real novel views."""
    import dataclasses

    kfs = [dataclasses.replace(k, held_out=True) if k.camera_name.endswith("right") else k for k in window.keyframes]
    return dataclasses.replace(window, keyframes=kfs)


def _frames_tag(frames) -> str:
    return f"kitti-{int(frames[0])}-{int(frames[1])}"


# ---------------------------------------------------------------------------------------
# One step of training (DDP wraps this module so gradients are averaged across ranks)
# ---------------------------------------------------------------------------------------
class TrainStep(nn.Module):
    """One training step: update the states with the network, render source + target views,
    return the loss — and the lifted source-view gradient of the updated states for the next
    step, taken from the same renders (a separate lifting pass would render the sources again).
    """

    def __init__(self, model: G3RModel, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, scene: NeuralScene, grads, step: int, total: int, gamma: float, src_chunks, tgt_chunks,
                lift_next: bool = True):
        """→ (loss, new_states, mse (detached), next_grads | None).

        next_grads = ∂(Σ_src ‖I − render‖²)/∂h' for the new states h' — exactly what
        :func:`~g3r_ros.reconstruct.lift_gradients` returns for h' — computed with
        ``autograd.grad`` on the source renders (it does not touch the network's gradients)."""
        new_states = apply_update(self.model, scene, grads, step, total, gamma)
        new_scene = scene.with_states(new_states)
        mse_sum, ssim_sum, n_views = 0.0, 0.0, 0
        l2_src = None
        for chunk in [*src_chunks, *tgt_chunks]:
            params = new_scene.params_at(self.model.decoders, chunk.stamp)
            out = render_chunk(params, chunk)
            c = chunk.images.shape[0]
            sq = (out.rgb - chunk.images).square()
            mse_sum = mse_sum + sq.mean() * c
            ssim_sum = ssim_sum + ssim(out.rgb.clamp(0, 1), chunk.images).sum()  # (C,) per view
            n_views += c
            if lift_next and any(chunk is x for x in src_chunks):
                l2_src = sq.sum() if l2_src is None else l2_src + sq.sum()
        flat = flatness_loss(torch.cat([s[:, LOG_SCALE] for s in new_states]), self.cfg.flatness_eps)
        mse = mse_sum / n_views
        loss = mse + self.cfg.lambda_ssim * (1.0 - ssim_sum / n_views) + self.cfg.flatness_weight * flat
        next_grads = None
        if lift_next and l2_src is not None:
            parts = torch.autograd.grad(l2_src, new_states, retain_graph=True, allow_unused=True)
            next_grads = [torch.zeros_like(s) if g is None else g.detach() for s, g in zip(new_states, parts)]
        return loss, new_states, mse.detach(), next_grads


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------
def save_checkpoint(path, model: G3RModel, optimizer, iteration: int, cfg: TrainConfig) -> None:
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "version": MODEL_VERSION, "iteration": iteration,
        "model": {**model.header(), "state_dict": model.state_dict()},
        "optimizer": optimizer.state_dict(),
        "train_config": json.dumps(dataclasses.asdict(cfg)),
    }, path)


def load_checkpoint(path, device="cpu"):
    """→ (model, optimizer_state, iteration, train_config_json). Raises ModelFileError."""
    blob = safe_torch_load(path)
    if blob.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not a g3r_ros training checkpoint (format={blob.get('format')!r})")
    model = model_from_blob(blob.get("model") or {}, where=str(path)).to(device)
    return model, blob["optimizer"], int(blob["iteration"]), blob.get("train_config")


# ---------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------
def _dist_info():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed(device: torch.device) -> bool:
    """Initialize the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir, *, resume: bool = False, progress: bool = True):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        from .reconstruct import resolve_device

        self.device = resolve_device(cfg.device)
        self.distributed = setup_distributed(self.device)
        self.rank, self.world = _dist_info()
        if self.device.type == "cuda" and self.distributed:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        self.init_cfg = from_dict(InitConfig, cfg.init, where="init")
        torch.manual_seed(cfg.seed)
        self.start_iteration = 0
        if resume and self.ckpt_path.exists():
            model, opt_state, it, _ = load_checkpoint(self.ckpt_path, self.device)
            self.model = model
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
            self.optimizer.load_state_dict(opt_state)
            for group in self.optimizer.param_groups:  # the config's learning rate wins over the checkpoint's
                group["lr"] = cfg.lr
            self.start_iteration = it
            LOG.info("resumed from %s at iteration %d", self.ckpt_path, it)
        else:
            if resume:
                LOG.warning("--resume: no checkpoint at %s, starting fresh", self.ckpt_path)
            if cfg.init_model:
                from .model import load_model

                path = None if cfg.init_model == "shipped" else cfg.init_model
                self.model = load_model(path, device=self.device)
                LOG.info("initial weights from %s", cfg.init_model)
            else:
                net_cfg = from_dict(NetSetConfig, cfg.net, where="net") if cfg.net else None
                if net_cfg is not None:
                    check_distant_voxel_unset(net_cfg)
                self.model = G3RModel(net_cfg).to(self.device)
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.step_module = TrainStep(self.model, cfg)
        if self.distributed:
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module, find_unused_parameters=True)
        self._scene_cache: dict[int, NeuralScene] = {}

    # -- data ------------------------------------------------------------------------------
    def load_data(self):
        d = self.cfg.data
        self.synth_windows = load_pool(d, range(*d.synth_train_seeds), progress=self.progress)
        for i, extra in enumerate(d.synth_extra):
            pool = from_dict(SynthPool, extra, where=f"data.synth_extra[{i}]")
            window = {**d.window, **pool.window}
            self.synth_windows += load_pool(d, range(*pool.seeds), synth={**d.synth, **pool.synth}, window=window,
                                            progress=self.progress)
        self.val_windows = load_pool(d, range(*d.synth_val_seeds), progress=self.progress)
        self.real_windows, self.real_val_windows, self.real_record = load_real_windows(d)
        self.synth_sub = from_dict(SubWindowConfig, d.subwindow, where="data.subwindow")
        self.real_sub = from_dict(SubWindowConfig, d.real_subwindow, where="data.real_subwindow")
        self.synth_sub.validate()
        self.real_sub.validate()
        LOG.info("training pool: %d synthetic + %d real windows (real fraction %.2f); validation: %d synthetic + %d "
                 "real", len(self.synth_windows), len(self.real_windows), d.real_fraction if self.real_windows else 0,
                 len(self.val_windows), len(self.real_val_windows))

    def draw_window(self, rng: np.random.Generator) -> tuple[SceneWindow, bool, int]:
        """(window, is_real, pool index) for one iteration: real with probability real_fraction."""
        real = bool(self.real_windows) and rng.uniform() < self.cfg.data.real_fraction
        pool = self.real_windows if real else self.synth_windows
        idx = int(rng.integers(len(pool)))
        return pool[idx], real, idx

    def initial_scene(self, window: SceneWindow, key, seed: int) -> NeuralScene:
        """Initialize ``window``; whole windows (no sub-window) are cached on CPU under ``key``."""
        if key is not None and key in self._scene_cache:
            return self._scene_cache[key].to(self.device)
        torch.manual_seed(seed)
        scene = init_scene(window, self.init_cfg, device="cpu")
        if key is not None:
            self._scene_cache[key] = scene
        return scene.to(self.device)

    # -- one scene iteration ----------------------------------------------------------------
    def train_iteration(self, iteration: int, reuse_renders: bool = True) -> dict:
        """One scene iteration (see the module doc). reuse_renders=False lifts the gradient of
        every step with a separate rendering pass (the earlier trainer; ``g3r bench train``
        measures it side by side)."""
        rng = np.random.default_rng([self.cfg.seed, iteration, self.rank])
        t0 = time.perf_counter()
        window, real, idx = self.draw_window(rng)
        sub = self.real_sub if real else self.synth_sub
        if sub.enabled:
            window = sample_subwindow(window, sub, rng)
            scene = self.initial_scene(window, None, int(rng.integers(2**31)))
        else:
            scene = self.initial_scene(window, ("real" if real else "synth", idx), self.cfg.seed * 100003 + idx)
        t_data = time.perf_counter() - t0
        total = steps_at(self.cfg, iteration)
        src = make_chunks(window.source_keyframes, chunk_size=self.cfg.view_chunk, per_stamp=scene.has_actors,
                          device=self.device)
        tgt = make_chunks(window.target_keyframes, chunk_size=self.cfg.view_chunk, per_stamp=scene.has_actors,
                          device=self.device)
        self.model.train()
        losses, mses = [], []
        grads = lift_gradients(self.model, scene, src).grads  # later steps reuse the training renders
        for t in range(total):
            gamma = step_size(t, total, self.cfg.gamma_max, self.cfg.gamma_min)
            if not reuse_renders and t > 0:
                grads = lift_gradients(self.model, scene, src).grads
            loss, new_states, mse, grads = self.step_module(scene, grads, t, total, gamma, src, tgt,
                                                            lift_next=reuse_renders and t + 1 < total)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            scene = scene.with_states([s.detach() for s in new_states])
            losses.append(float(loss.detach()))
            mses.append(float(mse))
        size = window.keyframes[0].camera
        return {"iteration": iteration, "window": window.name, "real": real, "steps": total,
                "views": [len(window.source_keyframes), len(window.target_keyframes)],
                "image": [size.width, size.height],
                "points": scene.num_points, "loss_first": losses[0], "loss_last": losses[-1],
                "psnr_first": psnr_from_mse(mses[0]), "psnr_last": psnr_from_mse(mses[-1]), "data_s": t_data,
                "time_s": time.perf_counter() - t0, "unix_time": time.time()}

    @torch.no_grad()
    def _validate_windows(self, windows: list[SceneWindow], seed0: int) -> tuple[float, float]:
        from .offline import identity_decoders

        rcfg = ReconstructConfig(steps=self.cfg.steps, device=str(self.device.type), view_chunk=self.cfg.view_chunk,
                                 gamma_max=self.cfg.gamma_max, gamma_min=self.cfg.gamma_min)
        init_p, final_p = [], []
        for i, w in enumerate(windows):
            torch.manual_seed(seed0 + i)
            scene = init_scene(w, self.init_cfg, device=self.device)
            init_params = scene.params_at(identity_decoders(self.device), None)
            init_p.append(mean_psnr(evaluate_keyframes(lambda s, p=init_params: p, w.target_keyframes,
                                                       keep_renders=False)))
            with torch.enable_grad():
                res = reconstruct(w, self.model, rcfg, scene=scene, progress=False)
            final_p.append(mean_psnr(evaluate_keyframes(res.params_at, w.target_keyframes, keep_renders=False)))
        return float(np.mean(init_p)), float(np.mean(final_p))

    def validate(self) -> dict:
        """Held-out PSNR after T steps vs the init alone, on the synthetic validation seeds and the
        real validation window. ``val_score`` (the checkpoint choice) is the mean G3R PSNR over
        the two (synthetic only without real data)."""
        self.model.eval()
        out = {}
        out["val_init_psnr"], out["val_g3r_psnr"] = self._validate_windows(self.val_windows, 10_000)
        scores = [out["val_g3r_psnr"]]
        if self.real_val_windows:
            out["val_real_init_psnr"], out["val_real_g3r_psnr"] = self._validate_windows(self.real_val_windows, 20_000)
            scores.append(out["val_real_g3r_psnr"])
        out["val_score"] = float(np.mean(scores))
        self.model.train()
        return out

    # -- the loop ----------------------------------------------------------------------------
    def model_record(self, iterations: int) -> dict:
        """Metadata saved with the weights: iterations, the training config, the real split."""
        return {"iterations": iterations, "train_config": json.dumps(dataclasses.asdict(self.cfg)),
                "real_split": json.dumps(self.real_record or {})}

    def fit(self, max_minutes: float | None = None) -> Path:
        """Train until ``cfg.iterations`` (or ``max_minutes`` of wall time, then validate and
        checkpoint at once). Returns the path of the last model file."""
        self.load_data()
        log_path = self.run_dir / "train_log.jsonl"
        if self.start_iteration == 0 and self.rank == 0 and log_path.exists():
            log_path.unlink()
        deadline = time.monotonic() + 60.0 * max_minutes if max_minutes else None
        bar = tqdm(range(self.start_iteration, self.cfg.iterations), desc="train", unit="scene",
                   disable=not self.progress or self.rank != 0, initial=self.start_iteration,
                   total=self.cfg.iterations)
        for it in bar:
            entry = self.train_iteration(it)
            done = it + 1
            last = done == self.cfg.iterations or (deadline is not None and time.monotonic() >= deadline)
            if self.distributed and deadline is not None:  # every rank stops at the same iteration
                flag = torch.tensor([1.0 if last else 0.0], device=self.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                last = bool(flag.item() > 0)
            if self.rank == 0:
                if self.cfg.val_every > 0 and (done % self.cfg.val_every == 0 or last):
                    entry.update(self.validate())
                    if entry["val_score"] > best_validation(log_path):
                        save_model(self.model, self.run_dir / "g3r_net_best.pt",
                                   extra={**self.model_record(done), "val_score": entry["val_score"]})
                        LOG.info("new best validation score %.2f dB at iteration %d", entry["val_score"], done)
                with open(log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                bar.set_postfix(steps=entry["steps"], psnr=f"{entry['psnr_last']:.2f}")
                if done % self.cfg.checkpoint_every == 0 or last:
                    save_checkpoint(self.ckpt_path, self.model, self.optimizer, done, self.cfg)
                    save_model(self.model, self.run_dir / "g3r_net.pt", extra=self.model_record(done))
                    plot_training_curves(log_path, self.run_dir / "training_curves.png")
                    write_model_card(self.run_dir, self.cfg, self.device, self.world, self.real_record)
            if last:
                if done < self.cfg.iterations:
                    LOG.info("stopping after %d iterations: %.1f minutes reached", done, max_minutes)
                break
        if self.distributed:
            dist.barrier()
        return self.run_dir / "g3r_net.pt"


def best_validation(log_path) -> float:
    """Best validation PSNR recorded so far in a training log (-inf when none)."""
    path = Path(log_path)
    if not path.exists():
        return float("-inf")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    vals = [r.get("val_score", r.get("val_g3r_psnr")) for r in rows]
    return max((v for v in vals if v is not None), default=float("-inf"))


def _frame_range(frames) -> str:
    """[first, end) → 'first–last' (inclusive, as people count frames)."""
    return f"{int(frames[0])}–{int(frames[1]) - 1}" if frames else "?"


def write_model_card(run_dir, cfg: TrainConfig, device, world_size: int = 1, real_record: dict | None = None,
                     config_path: str | None = None) -> Path:
    """RUN_DIR/MODEL_CARD.md from the config and the training log (regenerated at every checkpoint)."""
    import platform

    from .atomic import atomic_write_text
    from .synthetic import GENERATOR_VERSION

    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    val = [r for r in rows if "val_g3r_psnr" in r]
    d = cfg.data
    train_time = sum(r["time_s"] for r in rows)
    n_real = sum(1 for r in rows if r.get("real"))
    recent = rows[-20:]
    s_per_it = float(np.mean([r["time_s"] for r in recent])) if recent else float("nan")
    shipped = None
    if (run_dir / "g3r_net.pt").exists():
        shipped = (safe_torch_load(run_dir / "g3r_net.pt").get("extra") or {}).get("iterations")
    size = (run_dir / "g3r_net.pt").stat().st_size if (run_dir / "g3r_net.pt").exists() else 0
    extra_pools = "; ".join(f"seeds {p.get('seeds')} with {json.dumps(p.get('synth', {}))}" for p in d.synth_extra)
    real = real_record or {}
    has_real = bool(real)
    val_header = "| iteration | synthetic init [dB] | synthetic G3R [dB] |" + (
        " real init [dB] | real G3R [dB] |" if has_real else "") + " score |"
    val_rows = [f"| {r['iteration'] + 1} | {r['val_init_psnr']:.2f} | {r['val_g3r_psnr']:.2f} |"
                + (f" {r.get('val_real_init_psnr', np.nan):.2f} | {r.get('val_real_g3r_psnr', np.nan):.2f} |"
                   if has_real else "") + f" {r.get('val_score', r['val_g3r_psnr']):.2f} |" for r in val]
    cfg_arg = config_path or "config/train_cpu.yaml"
    best = max((r for r in val if "val_score" in r), key=lambda r: r["val_score"], default=None)
    lines = [
        "# G3R-Net model card",
        "",
        f"`g3r_net.pt` ({size / 2**20:.1f} MB): G3R-Net (background, actor and distant networks) and the three",
        "Gaussian decoders, trained by `g3r train`. Loaded with `torch.load(weights_only=True)` plus a",
        "format/version/config check (`g3r_ros.model.load_model`).",
        "",
        "## Training data",
        f"- Synthetic street drives from `g3r synth`, generator version {GENERATOR_VERSION}: training seeds"
        f" [{d.synth_train_seeds[0]}, {d.synth_train_seeds[1]}) with {json.dumps(d.synth)}"
        + (f"; plus {extra_pools}" if extra_pools else "") + f"; validation seeds [{d.synth_val_seeds[0]},"
        f" {d.synth_val_seeds[1]}). Benchmark seeds start at 3000 and were never used.",
        "- Real windows: " + (
            f"KITTI odometry {real.get('sequence', '?')}, training frames {_frame_range(real.get('train_frames'))} "
            f"(both colour cameras), validation frames {_frame_range(real.get('val_frames'))} (left camera's "
            "source views; held out: its every 6th keyframe and every right-camera keyframe); benchmark frames "
            f"{_frame_range(real.get('benchmark_frames'))} never used in training or validation (enforced by "
            "`g3r_ros.real_split`). The LiDAR sees parts of the same street across the split, so the real benchmark "
            "measures transfer to real images and sensors, not to a new street." if has_real else "none."),
        f"- Mix: each iteration draws a real window with probability {d.real_fraction if has_real else 0:.2f};"
        f" {n_real} of the {len(rows)} logged iterations were real ({100 * n_real / max(len(rows), 1):.0f} %).",
        f"- Sub-windows: synthetic {json.dumps(d.subwindow)}; real {json.dumps(d.real_subwindow)}"
        " (random views, resolution, LiDAR crop, exposure/white-balance jitter, left-right mirroring).",
        "",
        "## Configuration",
        f"- T = {cfg.steps} steps (warm-up from {cfg.steps_start} over {cfg.warmup_iters} iterations),"
        f" γ cosine {cfg.gamma_max} → {cfg.gamma_min}; initial weights: {cfg.init_model or 'random'}.",
        f"- Adam, lr {cfg.lr}, gradient clip {cfg.grad_clip}; network updated after every step; backprop truncated"
        " to one step.",
        f"- Loss: MSE + {cfg.lambda_ssim}·(1 − SSIM) + {cfg.flatness_weight}·flatness (ε = {cfg.flatness_eps} m)"
        " over source and held-out target views. LPIPS (paper: 0.01·LPIPS) is replaced by the SSIM term:"
        " its pretrained weights cannot be had offline.",
        f"- Init: {json.dumps(cfg.init)}; network: {json.dumps(cfg.net) if cfg.net else 'config/net.yaml'}.",
        "",
        "## Run",
        f"- Scene iterations in g3r_net.pt: {shipped} (of {cfg.iterations} configured; {len(rows)} logged)."
        + (f" Best validation score at iteration {best['iteration'] + 1} ({best['val_score']:.2f}):"
           " `g3r_net_best.pt`, the file to ship." if best else ""),
        f"- Hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores,"
        f" device {device}, {world_size} process(es), torch {torch.__version__}, {torch.get_num_threads()} threads.",
        f"- Time in training iterations: {train_time / 60:.1f} min (validation excluded); the last"
        f" {len(recent)} iterations took {s_per_it:.1f} s each ({3600 / s_per_it:.0f} scene iterations per hour).",
        "",
        "## Validation (held-out views; T steps vs the LiDAR init alone)",
        "",
        val_header,
        "|" + "---|" * (val_header.count("|") - 1),
        *val_rows,
        "",
        "## Reproduce",
        "```",
        f"g3r train --config {cfg_arg} --out {run_dir}   # add --resume to continue",
        f"cp {run_dir}/g3r_net_best.pt models/g3r_net.pt",
        "```",
        "",
    ]
    return atomic_write_text(run_dir / "MODEL_CARD.md", "\n".join(lines))


def plot_training_curves(log_path, out_png) -> None:
    """training_curves.png: per-iteration source PSNR before/after the T steps, and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import save_figure

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for real, tag, mark in ((False, "synthetic", "."), (True, "real", "x")):
        sel = [r for r in rows if bool(r.get("real")) == real]
        if sel:
            axes[0].plot([r["iteration"] for r in sel], [r["psnr_first"] for r in sel], mark, color="C0", alpha=0.4,
                         label=f"{tag}: after step 1")
            axes[0].plot([r["iteration"] for r in sel], [r["psnr_last"] for r in sel], mark, color="C1", alpha=0.6,
                         label=f"{tag}: after last step")
    axes[0].set_xlabel("scene iteration")
    axes[0].set_ylabel("train-view PSNR [dB]")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    val = [r for r in rows if "val_g3r_psnr" in r]
    if val:
        vi = [r["iteration"] for r in val]
        axes[1].plot(vi, [r["val_g3r_psnr"] for r in val], "o-", color="C0", label="synthetic: G3R (T steps)")
        axes[1].plot(vi, [r["val_init_psnr"] for r in val], "s--", color="C0", alpha=0.6, label="synthetic: init")
        if any("val_real_g3r_psnr" in r for r in val):
            axes[1].plot(vi, [r.get("val_real_g3r_psnr", np.nan) for r in val], "o-", color="C3",
                         label="real KITTI: G3R")
            axes[1].plot(vi, [r.get("val_real_init_psnr", np.nan) for r in val], "s--", color="C3", alpha=0.6,
                         label="real KITTI: init")
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("scene iteration")
    axes[1].set_ylabel("validation held-out PSNR [dB]")
    axes[1].grid(alpha=0.3)
    save_figure(fig, out_png)


__all__ = ["TrainConfig", "DataConfig", "Trainer", "load_train_config", "steps_at", "flatness_loss",
           "save_checkpoint", "load_checkpoint", "MODEL_FORMAT"]
