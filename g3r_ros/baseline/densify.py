"""Adaptive density control of 3DGS: gradient statistics, clone, split, prune, opacity reset.

Semantics follow graphdeco's ``GaussianModel`` (``add_densification_stats``,
``densify_and_clone``, ``densify_and_split``, ``densify_and_prune``, ``reset_opacity``);
differences are listed in docs/BASELINE.md.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from ..geometry import quat_to_rotmat_torch
from .config import Baseline3DGSConfig
from .state import PARAM_NAMES, TrainableGaussians

LOG = logging.getLogger(__name__)


@torch.no_grad()
def add_densification_stats(state: TrainableGaussians, means2d_grad: torch.Tensor, radii: torch.Tensor,
                            width: int, height: int) -> None:
    """Accumulate view-space gradient norms for the Gaussians visible in each camera.

    means2d_grad: (C,N,2) dL/d(projected centre) in pixels. radii: (C,N) screen radius px,
    0 = not rendered. The pixel gradient is converted to graphdeco's NDC units
    (x * width/2, y * height/2) and multiplied by C, because the loss is a mean over the C
    views of the batch (gsplat's ``DefaultStrategy`` does the same); the 2e-4 threshold is
    defined in those units.
    """
    if means2d_grad.dim() != 3 or means2d_grad.shape[:2] != radii.shape or means2d_grad.shape[1] != len(state):
        raise ValueError(f"means2d grad {tuple(means2d_grad.shape)} / radii {tuple(radii.shape)} do not match "
                         f"{len(state)} Gaussians")
    c = means2d_grad.shape[0]
    scale = torch.tensor([width / 2.0 * c, height / 2.0 * c], device=means2d_grad.device,
                         dtype=means2d_grad.dtype)
    norms = (means2d_grad * scale).norm(dim=-1)                       # (C,N)
    visible = radii > 0
    state.grad_accum += torch.where(visible, norms, torch.zeros_like(norms)).sum(0).to(state.grad_accum)
    state.denom += visible.sum(0).to(state.denom)
    r = torch.where(visible, radii.to(state.max_radii.dtype), torch.zeros_like(state.max_radii))
    state.max_radii = torch.maximum(state.max_radii, r.max(0).values)


@dataclass
class DensifyReport:
    """What one densify-and-prune call did (counts of Gaussians)."""

    n_before: int
    cloned: int
    split: int
    pruned: int
    n_after: int

    def as_dict(self) -> dict:
        return asdict(self)


def _cap_selection(grads: torch.Tensor, clone: torch.Tensor, split: torch.Tensor, budget: int,
                   split_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Limit the selection to at most ``budget`` added Gaussians, highest gradient first."""
    cand = (clone | split).nonzero().squeeze(1)
    cost = torch.where(split[cand], split_n - 1, 1)
    order = torch.argsort(grads[cand], descending=True, stable=True)
    ok = torch.cumsum(cost[order], 0) <= max(budget, 0)
    kept = torch.zeros_like(clone)
    kept[cand[order[ok]]] = True
    return clone & kept, split & kept


@torch.no_grad()
def densify_and_prune(state: TrainableGaussians, cfg: Baseline3DGSConfig, extent: float,
                      size_threshold: float | None, generator: torch.Generator | None = None) -> DensifyReport:
    """One graphdeco densification step on ``state`` (in place); statistics are reset after.

    Gaussians whose mean NDC gradient is >= ``cfg.densify_grad_threshold`` are cloned when
    their largest scale is <= ``percent_dense * extent`` and split into ``split_n`` samples
    (scale / (0.8 * split_n)) otherwise. Then Gaussians with opacity < ``min_opacity`` are
    pruned and, when ``size_threshold`` is given (after the first opacity reset), those with
    a world scale > ``max_world_size * extent`` (and, if ``cfg.screen_size_prune``, a screen
    radius > ``size_threshold`` px). Order of rows: survivors, clones, split children.
    """
    n0 = len(state)
    p = state.params
    grads = state.grad_accum / state.denom
    grads = torch.nan_to_num(grads, nan=0.0)
    max_scale = p["log_scales"].exp().max(dim=1).values
    candidates = grads >= cfg.densify_grad_threshold
    big = max_scale > cfg.percent_dense * extent
    clone, split = candidates & ~big, candidates & big
    if cfg.max_gaussians > 0:
        clone, split = _cap_selection(grads, clone, split, cfg.max_gaussians - n0, cfg.split_n)
    n_clone, n_split = int(clone.sum()), int(split.sum())

    # Clone: exact copies of the selected small Gaussians.
    radii0 = state.max_radii
    state.append({n: p[n].detach()[clone] for n in PARAM_NAMES}, max_radii=radii0[clone])

    # Split: split_n samples from each selected large Gaussian, which is then removed.
    n = cfg.split_n
    p = state.params
    src = {name: p[name].detach()[:n0][split] for name in PARAM_NAMES}
    stds = src["log_scales"].exp().repeat(n, 1)
    samples = torch.normal(torch.zeros_like(stds), stds, generator=generator)
    rots = quat_to_rotmat_torch(src["quats"]).repeat(n, 1, 1)
    children = {
        "means": (rots @ samples.unsqueeze(-1)).squeeze(-1) + src["means"].repeat(n, 1),
        "log_scales": torch.log(stds / (cfg.split_scale_divisor * n)),
        "quats": src["quats"].repeat(n, 1),
        "opacity_logits": src["opacity_logits"].repeat(n),
        "rgb": src["rgb"].repeat(n, 1),
    }
    state.append(children, max_radii=radii0[split].repeat(n))
    drop = torch.zeros(len(state), dtype=torch.bool, device=state.device)
    drop[:n0] = split
    state.keep(~drop)

    # Prune.
    p = state.params
    prune = torch.sigmoid(p["opacity_logits"].detach()) < cfg.min_opacity
    if size_threshold:
        prune |= p["log_scales"].detach().exp().max(dim=1).values > cfg.max_world_size * extent
        if cfg.screen_size_prune:
            prune |= state.max_radii > size_threshold
    n_pruned = int(prune.sum())
    state.keep(~prune)
    state.reset_stats()
    report = DensifyReport(n0, n_clone, n_split, n_pruned, len(state))
    LOG.debug("densify: %s", report)
    return report


@torch.no_grad()
def reset_opacity(state: TrainableGaussians, value: float = 0.01) -> None:
    """Set every opacity to min(opacity, ``value``) and zero its Adam moments."""
    # min in logit space (sigmoid is monotone): same result, no log(0) for tiny opacities.
    logits = state.params["opacity_logits"].detach()
    cap = torch.logit(torch.tensor(float(value), dtype=torch.float64)).item()
    state.replace("opacity_logits", torch.clamp(logits, max=cap))
