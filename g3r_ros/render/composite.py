"""Front-to-back alpha compositing of padded tiles, with a hand-written backward.

One call composites ``T`` tiles of ``P`` pixels (P = tile_size^2) against up to ``K``
depth-sorted Gaussians per tile (padded; ``counts`` gives each tile's real number). Per
(tile, pixel, Gaussian) the log-alpha is a quadratic in the tile-local pixel coordinates
(u, v), so all exponents come from one batched matmul::

    E[t,p,k] = monomials[p,:] @ coef[t,:,k],   monomials = [1, u, v, u^2, uv, v^2]

with log-opacity folded into the constant term. Then, as in gsplat 1.5.3's CUDA kernel:

- alpha = min(ALPHA_MAX, exp(E)); alpha < ALPHA_MIN contributes nothing;
- T_k = prod_{j<k} (1 - alpha_j); the pixel stops (excluding k) at the first k with
  T_k (1 - alpha_k) <= TRANSMITTANCE_MIN;
- w_k = alpha_k T_k, out[f] = sum_k w_k feat[f,k], and T_final = prod over the kept ones.

The K axis is processed in blocks of ``K_BLOCK`` Gaussians, front to back; after each
block, tiles whose pixels have all stopped (or that have no more Gaussians) drop out,
like the CUDA kernel's per-tile early exit. This is a loop over a few blocks, not over
Gaussians: each block is one batch over all still-active tiles.

Backward (``g_f = dL/dout_f``, ``g_T = dL/dT_final``, ``G_k = sum_f g_f feat_fk``; the stop
mask is piecewise constant and treated as such)::

    dL/dalpha_k = T_k G_k - (sum_{j>k} w_j G_j + g_T T_final) / (1 - alpha_k)
    dL/dE_k     = w_k G_k - r_k (sum_{j>k} w_j G_j + g_T T_final),  r_k = alpha_k / (1 - alpha_k)

for kept Gaussians, and 0 where alpha was capped at ALPHA_MAX (d min / dE = 0) or dropped
(r_k = w_k = 0 there). Blocks are visited back to front, carrying the suffix sum per pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .types import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN

# Log-alphas below ln(ALPHA_MIN) are replaced by this value before exp(): the alpha it gives
# (~1e-35 in float32, 1 - it == 1 exactly) is negligible, and exp() stays fast (it is 5-40x
# slower on denormal results and on -inf).
DROP_LOG_ALPHA = {torch.float64: -700.0}
DROP_LOG_ALPHA_DEFAULT = -80.0
LOG_ALPHA_MIN = math.log(ALPHA_MIN)
LOG_ALPHA_MAX = math.log(ALPHA_MAX)
# Gaussians per block along K (early exit granularity; see TILE_SIZE in torch_backend).
K_BLOCK = 256


def tile_monomials(tile_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(P,6) monomials [1,u,v,u^2,uv,v^2] of the pixel centres of one tile, row-major.

    Coordinates are relative to the tile centre: the pixel at local column j has
    u = j + 0.5 - tile_size/2 (so u lies in [-(ts-1)/2, (ts-1)/2]); v likewise for rows.
    """
    r = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - tile_size / 2.0
    v, u = torch.meshgrid(r, r, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], -1)


def _block_forward(mono, coef_b, feat1_b, t_run, may_cap: bool, need_grad: bool):
    """One K-block for the active tiles.

    mono (P,6); coef_b (A,6,B); feat1_b (A,F+1,B) features with a last row of ones;
    t_run (A,P) transmittance entering the block (0 for pixels that already stopped).
    Returns out (A,P,F+1) (last column = sum of weights), t_last (A,P) transmittance after
    the block ignoring the stop rule, and (r, w, capped) for the backward when ``need_grad``.
    """
    alpha = torch.matmul(mono, coef_b)  # (A,P,B) log-alpha
    F.threshold(alpha, LOG_ALPHA_MIN, DROP_LOG_ALPHA.get(alpha.dtype, DROP_LOG_ALPHA_DEFAULT), inplace=True)
    alpha.exp_()
    capped = None
    if may_cap:
        if need_grad:
            capped = alpha >= ALPHA_MAX
        alpha.clamp_(max=ALPHA_MAX)
    om = torch.rsub(alpha, 1.0)  # 1 - alpha
    om[..., 0] *= t_run  # fold the entering transmittance into the product
    t_incl = torch.cumprod(om, dim=-1)
    t_last = t_incl[..., -1].clone()
    if bool((t_last <= TRANSMITTANCE_MIN).any()):
        # Some pixel stops in this block (or stopped before: t_run = 0): T_incl only decreases,
        # so the kept Gaussians are the prefix with T_incl > TRANSMITTANCE_MIN. (A float mask:
        # bool masks and torch.where are several times slower here.)
        keep = torch.empty_like(alpha)
        torch.gt(t_incl, TRANSMITTANCE_MIN, out=keep)
        alpha.mul_(keep)
        del keep
    r = None
    if need_grad:
        r = torch.div(alpha, om)  # alpha / (1 - alpha), 0 where dropped; column 0 fixed below
        a0 = alpha[..., 0]
        r[..., 0] = a0 / (1.0 - a0)
    # Exclusive transmittance T_k, then w = alpha * T_k.
    om[..., 0] = t_run
    om[..., 1:] = t_incl[..., :-1]
    del t_incl
    w = om.mul_(alpha)
    del alpha
    out = torch.matmul(w, feat1_b.transpose(1, 2))  # (A,P,F+1)
    return out, t_last, (r, w, capped) if need_grad else None


def _composite_forward(mono, coef, feat, counts, need_grad: bool, k_block: int, may_cap: bool):
    """Blocked forward over K. Returns out (T,P,F), T_final (T,P), and the saved blocks."""
    T, _, K = coef.shape
    P = mono.shape[0]
    nf = feat.shape[1]
    dt, dev = coef.dtype, coef.device
    ones = torch.ones(T, 1, K, dtype=dt, device=dev)
    feat1 = torch.cat([feat, ones], 1)  # (T,F+1,K)
    out = torch.zeros(T, P, nf + 1, dtype=dt, device=dev)
    t_out = torch.ones(T, P, dtype=dt, device=dev)  # transmittance for the output
    t_run = torch.ones(T, P, dtype=dt, device=dev)  # 0 once a pixel stopped
    active = torch.arange(T, device=dev)
    saved = []
    for k0 in range(0, K, k_block):
        k1 = min(K, k0 + k_block)
        if active.numel() == 0:
            break
        full = active.numel() == T
        cb = coef[:, :, k0:k1] if full else coef[active, :, k0:k1]
        fb = feat1[:, :, k0:k1] if full else feat1[active, :, k0:k1]
        tr = t_run if full else t_run[active]
        o, t_last, sv = _block_forward(mono, cb, fb, tr, may_cap, need_grad)
        if need_grad:
            saved.append((active, k0, k1) + sv)
        stopped = t_last <= TRANSMITTANCE_MIN  # stopped in this block or before (tr = 0)
        prev_out = t_out if full else t_out[active]
        new_out = torch.where(stopped, torch.where(tr > 0, tr - o[..., nf], prev_out), t_last)
        new_run = torch.where(stopped, torch.zeros_like(t_last), t_last)
        if full:
            out += o
            t_out, t_run = new_out, new_run
        else:
            out.index_add_(0, active, o)
            t_out = t_out.index_copy(0, active, new_out)
            t_run = t_run.index_copy(0, active, new_run)
        keep = (new_run > 0).any(-1) & (counts[active] > k1)
        active = active[keep]
    return out[..., :nf], t_out, saved


def pair_coefficients(q: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Log-alpha quadratic coefficients per (tile, slot).

    q: (T,K,6) per-slot [mean_x, mean_y, conic_xx, conic_xy, conic_yy, log_opacity] (pixels);
    origin: (T,2) tile centres (pixels). Returns (T,6,K) coefficients of [1,u,v,u^2,uv,v^2] of
    log alpha = log_opacity - (a dx^2 / 2 + b dx dy + c dy^2 / 2), dx = u - (mean_x - origin_x).

    Formed in float64: for long thin Gaussians far from their centre, a mx^2 and b mx my are
    large and cancel; the float32 matmul then only sums well-conditioned terms.
    """
    cdt = torch.float64 if q.dtype != torch.float64 else q.dtype
    q = q.to(cdt)
    mx = q[..., 0] - origin[:, 0:1].to(cdt)
    my = q[..., 1] - origin[:, 1:2].to(cdt)
    a, b, c, logop = q[..., 2], q[..., 3], q[..., 4], q[..., 5]
    bx, by = b * mx, b * my
    c1 = a * mx + by
    c2 = c * my + bx
    c0 = logop - 0.5 * (mx * c1 + my * c2)  # = logop - (a mx^2/2 + b mx my + c my^2/2)
    return torch.stack([c0, c1, c2, -0.5 * a, -b, -0.5 * c], 1)


def pair_coefficient_grads(q: torch.Tensor, origin: torch.Tensor, g_coef: torch.Tensor) -> torch.Tensor:
    """Chain rule through :func:`pair_coefficients`: g_coef (T,6,K) → (T,K,6) grads of q."""
    cdt = torch.float64 if q.dtype != torch.float64 else q.dtype
    q = q.to(cdt)
    g = g_coef.to(cdt)
    mx = q[..., 0] - origin[:, 0:1].to(cdt)
    my = q[..., 1] - origin[:, 1:2].to(cdt)
    a, b, c = q[..., 2], q[..., 3], q[..., 4]
    g0, g1, g2, g3, g4, g5 = g.unbind(1)
    c1 = a * mx + b * my
    c2 = b * mx + c * my
    d_mx = g1 * a + g2 * b - g0 * c1
    d_my = g1 * b + g2 * c - g0 * c2
    d_a = mx * (g1 - 0.5 * g0 * mx) - 0.5 * g3
    d_b = g1 * my + g2 * mx - g0 * mx * my - g4
    d_c = my * (g2 - 0.5 * g0 * my) - 0.5 * g5
    return torch.stack([d_mx, d_my, d_a, d_b, d_c, g0], -1).to(g_coef.dtype)


def _gather(table, idx):
    """table (E+1,D), idx (T,K) → (T,K,D)."""
    return table[idx.reshape(-1)].reshape(idx.shape + (table.shape[1],))


class CompositeTiles(torch.autograd.Function):
    """Differentiable tile compositing of per-entry parameters.

    Inputs: monomials (P,6); table (E+1, 6+F) per-entry [mean_x, mean_y, conic_xx, conic_xy,
    conic_yy, log_opacity, features...] (last row: padding); idx (T,K) table rows per tile slot;
    origin (T,2) tile centres; counts (T,). Outputs (out (T,P,F), T_final (T,P)). The gradient
    w.r.t. ``table`` is accumulated per pair with ``index_add_`` (hand-written chain rule).
    """

    @staticmethod
    def forward(ctx, monomials, table, idx, origin, counts, may_cap, k_block):
        g = _gather(table, idx)
        coef = pair_coefficients(g[..., :6], origin).to(table.dtype)
        feat = g[..., 6:].transpose(1, 2)
        del g
        out, t_final, saved = _composite_forward(monomials, coef, feat, counts, True, k_block, may_cap)
        # save_for_backward (not ctx attributes) so the blocks are freed right after backward.
        tensors = [monomials, table, idx, origin, t_final]
        ctx.block_layout = []
        for active, k0, k1, r, w, capped in saved:
            ctx.block_layout.append((k0, k1, capped is not None))
            tensors += [active, r, w] + ([capped] if capped is not None else [])
        ctx.save_for_backward(*tensors)
        return out, t_final

    @staticmethod
    def backward(ctx, g_out, g_t):
        monomials, table, idx, origin, t_final, *rest = ctx.saved_tensors
        blocks, i = [], 0
        for k0, k1, has_cap in ctx.block_layout:
            active, r, w = rest[i:i + 3]
            capped = rest[i + 3] if has_cap else None
            i += 4 if has_cap else 3
            blocks.append((active, k0, k1, r, w, capped))
        del rest
        T = idx.shape[0]
        P = monomials.shape[0]
        nf = table.shape[1] - 6
        dt, dev = table.dtype, table.device
        if g_out is None:
            g_out = torch.zeros(T, P, nf, dtype=dt, device=dev)
        g_out = g_out.contiguous()
        carry = (g_t * t_final) if g_t is not None else torch.zeros(T, P, dtype=dt, device=dev)
        g_table = torch.zeros_like(table)
        mono_t = monomials.transpose(0, 1)
        for active, k0, k1, r, w, capped in reversed(blocks):
            full = active.numel() == T
            go = g_out if full else g_out[active]
            ib = idx[:, k0:k1] if full else idx[active, k0:k1]
            gq = _gather(table, ib)  # (A,B,6+F)
            fb = gq[..., 6:].transpose(1, 2)
            wg = torch.matmul(go, fb)  # G (A,P,B)
            wg.mul_(w)  # w_k G_k
            suffix = torch.cumsum(wg, dim=-1)
            total = suffix[..., -1].clone()
            c = carry if full else carry[active]
            torch.sub((c + total).unsqueeze(-1), suffix, out=suffix)  # sum_{j>k} w_j G_j + g_T T_final
            suffix.mul_(r)
            d_e = wg.sub_(suffix)
            del suffix
            if capped is not None:
                d_e.masked_fill_(capped, 0.0)
            g_coef = torch.matmul(mono_t, d_e)  # (A,6,B)
            g_feat = torch.matmul(go.transpose(1, 2), w)  # (A,F,B) (w^T @ go is ~8x slower)
            del d_e, wg
            o = origin if full else origin[active]
            g_pair = torch.cat([pair_coefficient_grads(gq[..., :6], o, g_coef), g_feat.transpose(1, 2)], -1)
            g_table.index_add_(0, ib.reshape(-1), g_pair.reshape(-1, g_pair.shape[-1]))
            carry = carry + total if full else carry.index_add(0, active, total)
        return None, g_table, None, None, None, None, None


def composite_tiles(monomials: torch.Tensor, table: torch.Tensor, idx: torch.Tensor, origin: torch.Tensor,
                    counts: torch.Tensor, may_cap: bool = True, k_block: int = K_BLOCK):
    """Composite padded tiles.

    monomials: (P,6) from :func:`tile_monomials`. table: (E+1, 6+F) per-entry
    [mean_x, mean_y, conic_xx, conic_xy, conic_yy, log_opacity, features...] with a padding last
    row (log-opacity far below ln ALPHA_MIN). idx: (T,K) long table rows per tile slot, depth
    sorted (padding slots point at the last row). origin: (T,2) tile centres in pixels.
    counts: (T,) long real slots per tile. may_cap: False when no opacity reaches ALPHA_MAX.
    Returns out (T,P,F) = sum_k w_k feat_k and T_final (T,P), the transmittance left after the
    last composited Gaussian.
    """
    if torch.is_grad_enabled() and table.requires_grad:
        return CompositeTiles.apply(monomials, table, idx, origin, counts, may_cap, k_block)
    g = _gather(table, idx)
    coef = pair_coefficients(g[..., :6], origin).to(table.dtype)
    feat = g[..., 6:].transpose(1, 2)
    out, t_final, _ = _composite_forward(monomials, coef, feat, counts, False, k_block, may_cap)
    return out, t_final
