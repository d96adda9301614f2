"""Trainable Gaussians: leaf parameters, their Adam optimizer and densification statistics.

The three edits 3DGS makes to its point set keep all of these aligned, as graphdeco's
``cat_tensors_to_optimizer`` / ``_prune_optimizer`` / ``replace_tensor_to_optimizer`` do:

- :meth:`TrainableGaussians.append`: new rows get zero Adam moments;
- :meth:`TrainableGaussians.keep`: rows are masked in the parameters, the moments and the stats;
- :meth:`TrainableGaussians.replace`: one parameter gets new values and zeroed moments.

Each edit installs a new ``nn.Parameter`` (with no ``.grad``) in the optimizer, so an
``optimizer.step()`` right after an edit skips that parameter, exactly as in graphdeco,
where densification runs between ``backward()`` and ``step()``.
"""

from __future__ import annotations

import torch

from ..render.types import GaussianParams

# Parameter groups, named after the GaussianParams fields. Row i of each is Gaussian i.
PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "rgb")
_ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


class TrainableGaussians:
    """Per-Gaussian leaf tensors + Adam + statistics (all rows aligned, N Gaussians).

    params: name -> nn.Parameter (means (N,3) world, quats (N,4) w,x,y,z, log_scales (N,3),
    opacity_logits (N,), rgb (N,3)). grad_accum, denom, max_radii: (N,) densification stats
    (summed NDC gradient norm, number of views it was visible in, max screen radius px).
    """

    def __init__(self, init: GaussianParams, lrs: dict[str, float], eps: float = 1e-15, device="cpu"):
        self.params: dict[str, torch.nn.Parameter] = {}
        for name in PARAM_NAMES:
            t = getattr(init, name).detach().to(device=device, dtype=torch.float32).clone()
            self.params[name] = torch.nn.Parameter(t)
        groups = [{"params": [self.params[n]], "lr": float(lrs[n]), "name": n} for n in PARAM_NAMES]
        self.optimizer = torch.optim.Adam(groups, lr=0.0, eps=eps)
        self.reset_stats()

    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def reset_stats(self) -> None:
        """Zero the densification statistics (graphdeco's ``densification_postfix``)."""
        n = len(self)
        self.grad_accum = torch.zeros(n, device=self.device)
        self.denom = torch.zeros(n, device=self.device)
        self.max_radii = torch.zeros(n, device=self.device)

    def set_lr(self, name: str, lr: float) -> None:
        for g in self.optimizer.param_groups:
            if g["name"] == name:
                g["lr"] = float(lr)
                return
        raise KeyError(name)

    def lr(self, name: str) -> float:
        return next(float(g["lr"]) for g in self.optimizer.param_groups if g["name"] == name)

    def gaussians(self) -> GaussianParams:
        """The current parameters as a GaussianParams that shares the leaf tensors."""
        return GaussianParams(**{n: self.params[n] for n in PARAM_NAMES})

    def adam_state(self, name: str) -> dict:
        """The optimizer state of one parameter ({} before the first step)."""
        return self.optimizer.state.get(self.params[name], {})

    # -- edits ---------------------------------------------------------------------------
    def _install(self, name: str, new_value: torch.Tensor, edit_moment) -> None:
        """Swap parameter ``name`` for a new leaf holding ``new_value``; moments via ``edit_moment``."""
        group = next(g for g in self.optimizer.param_groups if g["name"] == name)
        old = group["params"][0]
        state = self.optimizer.state.pop(old, None)
        new = torch.nn.Parameter(new_value.detach().contiguous())
        group["params"][0] = new
        if state is not None:
            for key in _ADAM_MOMENTS:
                if key in state:
                    state[key] = edit_moment(state[key])
            self.optimizer.state[new] = state
        self.params[name] = new

    @torch.no_grad()
    def append(self, new_rows: dict[str, torch.Tensor], max_radii: torch.Tensor | None = None) -> None:
        """Append rows (one tensor per parameter name, M rows each) with zero Adam moments.

        ``max_radii`` (M,) are the new rows' screen radii (zeros when None).
        """
        m = {int(new_rows[n].shape[0]) for n in PARAM_NAMES}
        if len(m) != 1:
            raise ValueError(f"append: row counts differ between parameters: {m}")
        m = m.pop()
        for name in PARAM_NAMES:
            rows = new_rows[name].detach().to(self.params[name])
            self._install(name, torch.cat([self.params[name].detach(), rows], 0),
                          lambda mom, rows=rows: torch.cat([mom, torch.zeros_like(rows)], 0))
        z = torch.zeros(m, device=self.device)
        self.grad_accum = torch.cat([self.grad_accum, z])
        self.denom = torch.cat([self.denom, z])
        self.max_radii = torch.cat([self.max_radii, z if max_radii is None else max_radii.to(z)])

    @torch.no_grad()
    def keep(self, mask: torch.Tensor) -> None:
        """Keep the rows where the (N,) bool ``mask`` is True, everywhere."""
        mask = mask.to(device=self.device, dtype=torch.bool)
        if mask.shape != (len(self),):
            raise ValueError(f"keep: mask shape {tuple(mask.shape)} != ({len(self)},)")
        for name in PARAM_NAMES:
            self._install(name, self.params[name].detach()[mask], lambda mom: mom[mask])
        self.grad_accum = self.grad_accum[mask]
        self.denom = self.denom[mask]
        self.max_radii = self.max_radii[mask]

    @torch.no_grad()
    def replace(self, name: str, value: torch.Tensor) -> None:
        """Give parameter ``name`` new values (same shape) and zero its Adam moments."""
        if value.shape != self.params[name].shape:
            raise ValueError(f"replace: {name} shape {tuple(value.shape)} != {tuple(self.params[name].shape)}")
        self._install(name, value.to(self.params[name]).clone(), torch.zeros_like)
