"""Front-to-back alpha compositing of padded tiles, with a hand-written backward.

One call composites ``T`` tiles of ``P`` pixels (P = tile_size^2) against ``K`` depth-sorted
Gaussians per tile (padded). Per (tile, pixel, Gaussian) the log-alpha is a quadratic in
the tile-local pixel coordinates (u, v), so all exponents come from one batched matmul::

    E[t,p,k] = monomials[p,:] @ coef[t,:,k],   monomials = [1, u, v, u^2, uv, v^2]

with log-opacity folded into the constant term. Then, as in gsplat 1.5.3's CUDA kernel:

- alpha = min(ALPHA_MAX, exp(E)); alpha < ALPHA_MIN contributes nothing;
- T_k = prod_{j<k} (1 - alpha_j); the pixel stops (excluding k) at the first k with
  T_k (1 - alpha_k) <= TRANSMITTANCE_MIN;
- w_k = alpha_k T_k, out[f] = sum_k w_k feat[f,k], and T_final = prod over the kept ones.

Backward (``L`` the loss, ``g_f = dL/dout_f``, ``g_T = dL/dT_final``, ``G_k = sum_f g_f feat_fk``,
kept Gaussians only; the stop mask is piecewise constant and treated as such)::

    dL/dalpha_k = T_k G_k - (sum_{j>k} w_j G_j + g_T T_final) / (1 - alpha_k)
    dL/dE_k     = w_k G_k - alpha_k / (1 - alpha_k) * (sum_{j>k} w_j G_j + g_T T_final)

and 0 where alpha was capped at ALPHA_MAX (d min / dE = 0) or dropped. The suffix sum is
``S_total - cumsum_k(w G)`` with ``S_total = sum_k w_k G_k + g_T T_final``.
"""

from __future__ import annotations

import torch

from .types import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN

# exp() is very slow on inputs below about -87 (denormals) and on -inf; any alpha below
# exp(-30) ~ 1e-13 is dropped anyway (< ALPHA_MIN), so clamping there is exact.
EXP_FLOOR = -30.0


def tile_monomials(tile_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(P,6) monomials [1,u,v,u^2,uv,v^2] of the pixel centres of one tile, row-major.

    Coordinates are relative to the tile centre: the pixel at local column j has
    u = j + 0.5 - tile_size/2 (so u lies in [-(ts-1)/2, (ts-1)/2]); v likewise for rows.
    """
    r = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - tile_size / 2.0
    v, u = torch.meshgrid(r, r, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], -1)


def _forward(monomials: torch.Tensor, coef: torch.Tensor, feat: torch.Tensor, need_grad: bool):
    """Shared forward. monomials (P,6), coef (T,6,K), feat (T,F,K) → out (T,P,F), T_final (T,P)."""
    alpha = torch.matmul(monomials, coef)  # (T,P,K) log-alpha
    alpha.clamp_(min=EXP_FLOOR).exp_().clamp_(max=ALPHA_MAX)
    alpha.masked_fill_(alpha < ALPHA_MIN, 0.0)
    buf = torch.sub(1.0, alpha)  # 1 - alpha
    t_incl = torch.cumprod(buf, dim=-1)  # T after each Gaussian (before the stop rule)
    keep = t_incl > TRANSMITTANCE_MIN  # a prefix along K: T_incl never increases
    alpha.mul_(keep)
    n_keep = keep.sum(-1, keepdim=True)  # (T,P,1)
    t_final = torch.gather(t_incl, -1, (n_keep - 1).clamp_min(0)).squeeze(-1)
    t_final = torch.where(n_keep.squeeze(-1) > 0, t_final, torch.ones_like(t_final))
    # Exclusive transmittance T_k into the 1 - alpha buffer, then w = alpha * T_k in place.
    buf[..., 0] = 1.0
    buf[..., 1:] = t_incl[..., :-1]
    del t_incl, keep
    w = buf.mul_(alpha)
    out = torch.matmul(w, feat.transpose(1, 2))  # (T,P,F)
    if not need_grad:
        return out, t_final, None, None
    return out, t_final, alpha, w


class CompositeTiles(torch.autograd.Function):
    """Differentiable tile compositing: (monomials, coef, feat) → (out, T_final)."""

    @staticmethod
    def forward(ctx, monomials, coef, feat):
        need = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        out, t_final, alpha, w = _forward(monomials, coef, feat, need)
        if need:
            ctx.save_for_backward(monomials, feat, alpha, w, t_final)
        return out, t_final

    @staticmethod
    def backward(ctx, g_out, g_t):
        monomials, feat, alpha, w, t_final = ctx.saved_tensors
        if g_out is None:
            g_out = torch.zeros(w.shape[0], w.shape[1], feat.shape[1], dtype=w.dtype, device=w.device)
        g_out = g_out.contiguous()
        wg = torch.matmul(g_out, feat)  # G (T,P,K)
        wg.mul_(w)  # w_k G_k
        s_total = wg.sum(-1, keepdim=True)
        if g_t is not None:
            s_total = s_total + (g_t * t_final).unsqueeze(-1)
        suffix = torch.cumsum(wg, dim=-1)
        suffix.neg_().add_(s_total)  # sum_{j>k} w_j G_j + g_T T_final
        ratio = torch.sub(1.0, alpha)
        torch.div(alpha, ratio, out=ratio)
        suffix.mul_(ratio)
        del ratio
        d_e = wg.sub_(suffix)
        del suffix
        d_e.masked_fill_(alpha >= ALPHA_MAX, 0.0)
        g_coef = torch.matmul(monomials.transpose(0, 1), d_e) if ctx.needs_input_grad[1] else None
        g_feat = torch.matmul(g_out.transpose(1, 2), w) if ctx.needs_input_grad[2] else None
        return None, g_coef, g_feat


def composite_tiles(monomials: torch.Tensor, coef: torch.Tensor, feat: torch.Tensor):
    """Composite padded tiles.

    monomials: (P,6) from :func:`tile_monomials`. coef: (T,6,K) quadratic coefficients of
    log-alpha per Gaussian slot (padding slots: a constant <= EXP_FLOOR). feat: (T,F,K)
    per-slot features (colour, depth...). Returns out (T,P,F) = sum_k w_k feat_k and
    T_final (T,P), the transmittance left after the last composited Gaussian.
    """
    if torch.is_grad_enabled() and (coef.requires_grad or feat.requires_grad):
        return CompositeTiles.apply(monomials, coef, feat)
    out, t_final, _, _ = _forward(monomials, coef, feat, False)
    return out, t_final
