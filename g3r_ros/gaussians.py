"""3D neural Gaussians: the per-point state layout and the decoder to renderable Gaussians.

Each Gaussian carries a state vector ``h`` of :data:`STATE_CHANNELS` = 46 channels
(G3R; see docs/METHOD.md, "Representation"):

========== ======== ================================================================
channels   name     meaning (in the component's local frame)
========== ======== ================================================================
0:3        POS      position, metres
3:6        LOG_SCALE  natural log of the three standard deviations, metres
6:10       QUAT     rotation quaternion (w, x, y, z), not necessarily unit
10:13      RGB      colour, linear RGB in [0, 1] (no spherical harmonics)
13:14      OPACITY  opacity logit (pre-sigmoid)
14:46      LATENT   32 free latent channels, read only by the decoder / network
========== ======== ================================================================

The decoder is one linear layer (46 → 14) and a tanh, added residually to the 14 explicit
channels, with a fixed per-channel output scale so that the residual lives in sensible
units (:data:`DEFAULT_OUTPUT_SCALE`). After the residual:

- quaternions are normalized (a zero quaternion falls back to identity);
- scales are ``exp(log_scale)``, hence always positive (the renderer takes log-scales);
- colours are clamped to [0, 1] with a *straight-through* gradient: the forward value is
  clamped, the backward pass is the identity. A plain clamp would give zero gradient to
  every out-of-range colour, and gradient lifting (∂L/∂h) would then never tell the network
  to bring it back;
- opacity stays a logit (the renderer applies the sigmoid).

The linear layer does not see the position channels (a fixed input mask zeroes them): a
decoder must not change a Gaussian's colour or shape because the scene sits elsewhere in
the world frame, and world coordinates (hundreds of metres for the distant sphere) would
swamp every other input. The weight keeps its (14,46) shape; the masked columns stay zero.
The weights start near zero (N(0, 1e-3²), bias 0), so a fresh decoder is almost the
identity on the explicit channels while still passing gradient to the latents.
"""

from __future__ import annotations

import torch
from torch import nn

from .render.types import GaussianParams

POS = slice(0, 3)
LOG_SCALE = slice(3, 6)
QUAT = slice(6, 10)
RGB = slice(10, 13)
OPACITY = slice(13, 14)
LATENT = slice(14, 46)

EXPLICIT_CHANNELS = 14
LATENT_CHANNELS = 32
STATE_CHANNELS = EXPLICIT_CHANNELS + LATENT_CHANNELS

# Maximum magnitude of the decoder residual per explicit channel (tanh output × scale).
# position: ±0.1 m; log-scale: ±0.5 (a factor e^0.5 ≈ 1.65); quaternion components: ±0.2
# (about ±23° for a unit quaternion); colour: ±0.25; opacity logit: ±2.
DEFAULT_OUTPUT_SCALE = {"pos": 0.1, "log_scale": 0.5, "quat": 0.2, "rgb": 0.25, "opacity": 2.0}

# Initial standard deviation of the decoder's linear weights (bias starts at zero).
DECODER_INIT_STD = 1e-3


def output_scale_vector(scales: dict | None = None) -> torch.Tensor:
    """Per-channel residual scale (14,) from a dict with keys pos, log_scale, quat, rgb, opacity."""
    s = dict(DEFAULT_OUTPUT_SCALE)
    if scales:
        unknown = sorted(set(scales) - set(s))
        if unknown:
            raise ValueError(f"unknown decoder output-scale key(s) {unknown}; valid: {sorted(s)}")
        s.update(scales)
    vec = torch.empty(EXPLICIT_CHANNELS)
    vec[POS] = float(s["pos"])
    vec[LOG_SCALE] = float(s["log_scale"])
    vec[QUAT] = float(s["quat"])
    vec[RGB] = float(s["rgb"])
    vec[OPACITY] = float(s["opacity"])
    if not torch.isfinite(vec).all() or (vec < 0).any():
        raise ValueError(f"decoder output scales must be finite and >= 0, got {s}")
    return vec


def _check_state(state: torch.Tensor) -> None:
    if not isinstance(state, torch.Tensor) or state.dim() != 2 or state.shape[1] != STATE_CHANNELS:
        shape = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"Gaussian state must be a (N,{STATE_CHANNELS}) tensor, got {shape}")


def clamp_straight_through(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Clamp in the forward pass, identity gradient in the backward pass."""
    return x + (x.clamp(lo, hi) - x).detach()


def normalize_quats(q: torch.Tensor) -> torch.Tensor:
    """(N,4) w,x,y,z → unit quaternions; (near-)zero rows become the identity (1,0,0,0)."""
    norm = q.norm(dim=-1, keepdim=True)
    ident = torch.zeros_like(q)
    ident[:, 0] = 1.0
    ok = norm > 1e-8
    return torch.where(ok, q / norm.clamp_min(1e-8), ident)


def params_from_explicit(explicit: torch.Tensor) -> GaussianParams:
    """(N,14) explicit channels → :class:`GaussianParams` (normalized quats, rgb clamped
    straight-through to [0,1]). The frame is whatever frame the channels are in."""
    if explicit.dim() != 2 or explicit.shape[1] < EXPLICIT_CHANNELS:
        raise ValueError(f"explicit channels must be (N,{EXPLICIT_CHANNELS}), got {tuple(explicit.shape)}")
    return GaussianParams(
        means=explicit[:, POS],
        quats=normalize_quats(explicit[:, QUAT]),
        log_scales=explicit[:, LOG_SCALE],
        opacity_logits=explicit[:, OPACITY].squeeze(-1),
        rgb=clamp_straight_through(explicit[:, RGB], 0.0, 1.0),
    )


def state_from_params(params: GaussianParams, latent: torch.Tensor | None = None) -> torch.Tensor:
    """Pack renderable Gaussians and latents into a state (N,46).

    params: N Gaussians (any frame; the state is in that frame). latent: (N,32) or None
    for zeros. Quaternions are stored as given (not normalized).
    """
    n = len(params)
    if latent is None:
        latent = params.means.new_zeros((n, LATENT_CHANNELS))
    if latent.shape != (n, LATENT_CHANNELS):
        raise ValueError(f"latent must be ({n},{LATENT_CHANNELS}), got {tuple(latent.shape)}")
    for name, t, width in (("means", params.means, 3), ("log_scales", params.log_scales, 3),
                           ("quats", params.quats, 4), ("rgb", params.rgb, 3)):
        if t.shape != (n, width):
            raise ValueError(f"params.{name} must be ({n},{width}), got {tuple(t.shape)}")
    if params.opacity_logits.reshape(-1).shape[0] != n:
        raise ValueError(f"params.opacity_logits must have {n} entries, got {tuple(params.opacity_logits.shape)}")
    return torch.cat([params.means, params.log_scales, params.quats, params.rgb,
                      params.opacity_logits.reshape(n, 1), latent.to(params.means)], dim=1)


class GaussianDecoder(nn.Module):
    """h (N,46) → renderable Gaussians, in the same (component-local) frame as the state.

    ``decoded_explicit = h[:, :14] + output_scale * tanh(W (m ⊙ h) + b)``, then
    :func:`params_from_explicit`, where the input mask ``m`` is 0 on the position channels
    and 1 elsewhere. ``output_scale`` and ``input_mask`` are buffers (saved with the weights).
    """

    def __init__(self, output_scale: dict | None = None, init_std: float = DECODER_INIT_STD):
        super().__init__()
        self.linear = nn.Linear(STATE_CHANNELS, EXPLICIT_CHANNELS)
        mask = torch.ones(STATE_CHANNELS)
        mask[POS] = 0.0
        with torch.no_grad():
            nn.init.normal_(self.linear.weight, std=init_std)
            self.linear.weight.mul_(mask)
            nn.init.zeros_(self.linear.bias)
        self.register_buffer("output_scale", output_scale_vector(output_scale))
        self.register_buffer("input_mask", mask)

    def residual(self, state: torch.Tensor) -> torch.Tensor:
        """The bounded residual (N,14) added to the explicit channels."""
        _check_state(state)
        return self.output_scale * torch.tanh(self.linear(state * self.input_mask))

    def decode_explicit(self, state: torch.Tensor) -> torch.Tensor:
        """Decoded explicit channels (N,14), before quaternion normalization and rgb clamp."""
        return state[:, :EXPLICIT_CHANNELS] + self.residual(state)

    def forward(self, state: torch.Tensor) -> GaussianParams:
        return params_from_explicit(self.decode_explicit(state))


COMPONENT_KINDS = ("background", "actor", "distant")


def make_decoders(output_scale: dict | None = None) -> nn.ModuleDict:
    """One decoder per component kind (background, actor, distant), as G3R uses separate
    networks per kind."""
    return nn.ModuleDict({k: GaussianDecoder(output_scale) for k in COMPONENT_KINDS})
