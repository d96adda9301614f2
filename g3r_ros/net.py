"""G3R-Net: G_theta(S, grad S, t) -> Delta S, a residual sparse U-Net over voxelized Gaussians.

Per point the input is ``[state', normalized grad]`` (2 x 46 channels), where ``state'`` is
the state with its position channels replaced by the point's offset inside its voxel (in
voxel units), so that the network is translation invariant and well scaled at any world
offset. Points are mean-pooled into voxels (plus a log point-count channel), run through
:class:`~g3r_ros.sparse.SparseResUNet` with a sinusoidal step embedding added at the
bottleneck, gathered back to the points, concatenated with a per-point MLP of the input
(so points sharing a voxel get different updates), and mapped by a small head to
``output_scale * tanh(.)``. The last layer starts near zero: an untrained network leaves
the state nearly unchanged. See docs/NETWORK.md.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import config_path, load_config
from .gaussians import COMPONENT_KINDS, STATE_CHANNELS
from .sparse import SparseResUNet, SparseTensor, local_offsets, voxel_mean, voxel_to_points, voxelize

log = logging.getLogger(__name__)

# Metres per voxel when a component's config leaves voxel_size unset (see docs/NETWORK.md). The
# distant value only serves a direct call without ``voxel_size=``: the reconstruction loop always
# passes the size it measures on the scene's sphere (``reconstruct.distant_voxel_size``).
DEFAULT_VOXEL_SIZE = {"background": 0.4, "actor": 0.15, "distant": 20.0}


@dataclass
class NetConfig:
    """Architecture of one G3R-Net.

    voxel_size: metres per level-1 voxel; None takes the component default
    (:data:`DEFAULT_VOXEL_SIZE`). channels: U-Net widths per level (len L+1: L stride-2
    levels). blocks: residual blocks per level. position_channels: [start, stop) of the
    state's position channels, replaced in the network input by the voxel-local offset of
    ``points_xyz`` (None: use the state as is). count_channel: append log(1 + points per
    voxel) to the pooled features. time_embed_dim: sinusoidal step embedding width
    (multiple of 4). point_channels: width of the per-point skip MLP. head_channels:
    hidden width of the per-point head. output_scale: initial per-channel scale after tanh;
    learned when learn_output_scale. head_init_std: std of the last layer's initial weights.
    gradient_skip: add a learned per-channel linear path from the normalized gradient to the
    update, delta += -gain * grad (gain initialized to gradient_skip_init): a fresh network
    then starts as preconditioned gradient descent, which the U-Net refines; it makes short
    (CPU-budget) training converge much faster.
    """

    voxel_size: float | None = None
    channels: tuple[int, ...] = (32, 64, 96)
    blocks: int = 1
    kernel_size: int = 3
    state_channels: int = STATE_CHANNELS
    position_channels: tuple[int, int] | None = (0, 3)
    count_channel: bool = True
    time_embed_dim: int = 64
    point_channels: int = 32
    head_channels: int = 64
    output_scale: float = 1.0
    learn_output_scale: bool = True
    head_init_std: float = 1e-3
    gradient_skip: bool = True
    gradient_skip_init: float = 0.01

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.position_channels is not None:
            self.position_channels = tuple(int(c) for c in self.position_channels)

    def validate(self) -> None:
        if self.voxel_size is not None and not (0 < float(self.voxel_size) < float("inf")):
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive ints, got {self.channels}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.state_channels < 1:
            raise ValueError(f"state_channels must be >= 1, got {self.state_channels}")
        if self.position_channels is not None:
            if len(self.position_channels) != 2:
                raise ValueError(f"position_channels must be [start, stop], got {self.position_channels}")
            a, b = self.position_channels
            if not (0 <= a and b - a == 3 and b <= self.state_channels):
                raise ValueError(f"position_channels must be 3 channels inside the state, got {self.position_channels}")
        if self.time_embed_dim < 4 or self.time_embed_dim % 4:
            raise ValueError(f"time_embed_dim must be a positive multiple of 4, got {self.time_embed_dim}")
        if self.point_channels < 1 or self.head_channels < 1:
            raise ValueError("point_channels and head_channels must be >= 1")
        if not self.output_scale > 0:
            raise ValueError(f"output_scale must be positive, got {self.output_scale}")
        if self.head_init_std < 0:
            raise ValueError(f"head_init_std must be >= 0, got {self.head_init_std}")

    def resolved(self, component: str) -> NetConfig:
        """Copy with voxel_size filled from the component default when unset."""
        if component not in DEFAULT_VOXEL_SIZE:
            raise ValueError(f"unknown component {component!r}; expected one of {COMPONENT_KINDS}")
        vs = DEFAULT_VOXEL_SIZE[component] if self.voxel_size is None else float(self.voxel_size)
        return dataclasses.replace(self, voxel_size=vs)


@dataclass
class NetSetConfig:
    """One :class:`NetConfig` per component (the actor network is shared by all actors)."""

    background: NetConfig = field(default_factory=NetConfig)
    actor: NetConfig = field(default_factory=NetConfig)
    distant: NetConfig = field(default_factory=NetConfig)

    def validate(self) -> None:
        for name in COMPONENT_KINDS:
            getattr(self, name).validate()

    def resolved(self) -> NetSetConfig:
        return NetSetConfig(**{name: getattr(self, name).resolved(name) for name in COMPONENT_KINDS})


def load_net_config(path=None) -> NetSetConfig:
    """NetSetConfig from a YAML file (default: the shipped ``config/net.yaml``), voxel sizes resolved.

    The distant network's voxel is always measured per scene (see
    ``g3r_ros.reconstruct.distant_voxel_size``), so a ``distant.voxel_size`` here is refused."""
    cfg = load_config(NetSetConfig, path if path is not None else config_path("net.yaml"))
    check_distant_voxel_unset(cfg)
    return cfg.resolved()


def check_distant_voxel_unset(cfg: NetSetConfig) -> None:
    """Refuse a configured distant voxel size: the reconstruction loop measures it per scene."""
    if cfg.distant.voxel_size is not None:
        raise ValueError(f"distant.voxel_size ({cfg.distant.voxel_size}) cannot be set: the distant network's "
                         "voxel is measured per scene (2x the sphere's median grid spacing)")


# ---------------------------------------------------------------------------------------
# Step embedding and gradient normalization
# ---------------------------------------------------------------------------------------
def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """x: (B,) float -> (B, dim): [cos(x f_i), sin(x f_i)], f_i = max_period^(-i/(dim/2))."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=x.dtype, device=x.device) / half)
    args = x[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


def step_embedding(step: int, total_steps: int, dim: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """(dim,) embedding of the step index t and the schedule length T.

    Half the channels encode t (max period 1000), half the progress 1000 * t / T (max period
    10000), so the same t in a 12-step (turbo) and a 24-step schedule embed differently.
    """
    t = torch.tensor([float(step)], dtype=dtype, device=device)
    progress = t * (1000.0 / float(total_steps))
    return torch.cat([sinusoidal_embedding(t, dim // 2, 1000.0),
                      sinusoidal_embedding(progress, dim // 2, 10000.0)], 1)[0]


def normalize_gradient(grad: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-channel normalization by the max |value| over points: grad (N,C) -> (N,C) in [-1,1].

    Channels whose max is below ``eps`` become zero. G3RNet.forward expects its ``grad``
    input normalized this way (the loop decides over which set of points)."""
    if grad.ndim != 2:
        raise ValueError(f"grad must be (N,C), got {tuple(grad.shape)}")
    if grad.shape[0] == 0:
        return grad.clone()
    m = grad.abs().amax(0, keepdim=True)
    return torch.where(m > eps, grad / m.clamp_min(eps), torch.zeros_like(grad))


# ---------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------
class G3RNet(nn.Module):
    """G_theta for one component. forward(points_xyz (N,3) metres, state (N,C), grad (N,C)
    normalized, step, total_steps, batch=None) -> delta (N,C) = output_scale * tanh(.)."""

    def __init__(self, config: NetConfig | None = None, component: str = "background"):
        super().__init__()
        config = (config or NetConfig()).resolved(component)
        config.validate()
        self.config = config
        self.component = component
        C = config.state_channels
        point_in = 2 * C
        voxel_in = point_in + (1 if config.count_channel else 0)
        self.unet = SparseResUNet(voxel_in, config.channels, config.blocks, config.kernel_size)
        D = config.time_embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, self.unet.bottleneck_channels))
        P = config.point_channels
        self.point_mlp = nn.Sequential(nn.Linear(point_in, P), nn.LayerNorm(P), nn.ReLU())
        H = config.head_channels
        self.head = nn.Sequential(nn.Linear(config.channels[0] + P, H), nn.ReLU())
        self.out = nn.Linear(H, C)
        nn.init.normal_(self.out.weight, std=config.head_init_std)
        nn.init.zeros_(self.out.bias)
        scale = torch.full((C,), float(config.output_scale))
        if config.learn_output_scale:
            self.output_scale = nn.Parameter(scale)
        else:
            self.register_buffer("output_scale", scale)
        if config.gradient_skip:
            self.gradient_gain = nn.Parameter(torch.full((C,), float(config.gradient_skip_init)))
        else:
            self.gradient_gain = None

    @property
    def voxel_size(self) -> float:
        return float(self.config.voxel_size)

    def _check_inputs(self, points_xyz, state, grad, step, total_steps, batch):
        C = self.config.state_channels
        for name, t in (("points_xyz", points_xyz), ("state", state), ("grad", grad)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")  # noqa: TRY004
        if points_xyz.ndim != 2 or points_xyz.shape[1] != 3:
            raise ValueError(f"points_xyz must be (N,3), got {tuple(points_xyz.shape)}")
        N = points_xyz.shape[0]
        if state.shape != (N, C):
            raise ValueError(f"state must be ({N}, {C}), got {tuple(state.shape)}")
        if grad.shape != (N, C):
            raise ValueError(f"grad must be ({N}, {C}), got {tuple(grad.shape)}")
        dtype = self.out.weight.dtype
        if state.dtype != dtype or grad.dtype != dtype or points_xyz.dtype != dtype:
            raise ValueError(f"inputs must be {dtype} like the network, got points {points_xyz.dtype}, "
                             f"state {state.dtype}, grad {grad.dtype}")
        if isinstance(step, bool) or isinstance(total_steps, bool):
            raise ValueError("step and total_steps must be ints")  # noqa: TRY004
        if int(total_steps) != total_steps or int(step) != step:
            raise ValueError(f"step and total_steps must be integers, got {step}, {total_steps}")
        if not (total_steps >= 1 and 0 <= step < total_steps):
            raise ValueError(f"need 0 <= step < total_steps, got step={step}, total_steps={total_steps}")
        if N and not (bool(torch.isfinite(state).all()) and bool(torch.isfinite(grad).all())):
            raise ValueError("state or grad contains NaN or infinite values")
        if batch is not None and (not isinstance(batch, torch.Tensor) or batch.shape != (N,)):
            raise ValueError(f"batch must be a ({N},) integer tensor")

    def input_features(self, points_xyz: torch.Tensor, state: torch.Tensor, grad: torch.Tensor,
                       voxel_size: float | None = None) -> torch.Tensor:
        """(N, 2C) per-point input: state with positions replaced by voxel-local offsets, grad."""
        pc = self.config.position_channels
        if pc is not None:
            a, b = pc
            vs = self.voxel_size if voxel_size is None else voxel_size
            state = torch.cat([state[:, :a], local_offsets(points_xyz, vs), state[:, b:]], 1)
        return torch.cat([state, grad], 1)

    def forward(self, points_xyz: torch.Tensor, state: torch.Tensor, grad: torch.Tensor, step: int,
                total_steps: int, batch: torch.Tensor | None = None,
                voxel_size: float | None = None) -> torch.Tensor:
        """points_xyz (N,3) metres (world for background/distant, box-local for actors);
        state (N,C); grad (N,C) normalized per channel; 0 <= step < total_steps; batch:
        optional (N,) int in [0,512) to run several independent point sets (e.g. actors)
        at once; voxel_size: override of the configured voxel size (metres). Returns
        delta (N,C)."""
        self._check_inputs(points_xyz, state, grad, step, total_steps, batch)
        if voxel_size is not None and not (0 < float(voxel_size) < float("inf")):
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        vs = self.voxel_size if voxel_size is None else float(voxel_size)
        C = self.config.state_channels
        if points_xyz.shape[0] == 0:
            # Keep the result attached to the parameters so that a backward() still works.
            return state.new_zeros((0, C)) + 0.0 * self.out.weight.sum()
        vox = voxelize(points_xyz, vs, batch)
        feats = self.input_features(points_xyz, state, grad, vs)
        vfeats = voxel_mean(feats, vox)
        if self.config.count_channel:
            vfeats = torch.cat([vfeats, torch.log1p(vox.counts).to(vfeats.dtype).unsqueeze(1)], 1)
        emb = step_embedding(step, total_steps, self.config.time_embed_dim, dtype=state.dtype, device=state.device)
        cond = self.time_mlp(emb)
        h = self.unet(SparseTensor(vfeats, 1, vox.manager), cond).feats
        z = torch.cat([voxel_to_points(h, vox), self.point_mlp(feats)], 1)
        delta = torch.tanh(self.out(self.head(z))) * self.output_scale
        if self.gradient_gain is not None:
            delta = delta - self.gradient_gain * grad
        return delta


class G3RNetSet(nn.Module):
    """The three networks: "background", "actor" (shared by all actors) and "distant".

    config: a :class:`NetSetConfig`, or one :class:`NetConfig` used for all three (each
    component then takes its own default voxel size unless ``voxel_size`` is set)."""

    def __init__(self, config: NetSetConfig | NetConfig | None = None):
        super().__init__()
        if isinstance(config, NetConfig):
            config = NetSetConfig(**{name: dataclasses.replace(config) for name in COMPONENT_KINDS})
        elif config is not None and not isinstance(config, NetSetConfig):
            raise ValueError(f"config must be a NetSetConfig or NetConfig, got {type(config).__name__}")
        config = (config or NetSetConfig()).resolved()
        config.validate()
        self.config = config
        self.nets = nn.ModuleDict({name: G3RNet(getattr(config, name), name) for name in COMPONENT_KINDS})

    def __getitem__(self, component: str) -> G3RNet:
        if component not in self.nets:
            raise ValueError(f"unknown component {component!r}; expected one of {COMPONENT_KINDS}")
        return self.nets[component]

    def forward(self, component: str, *args, **kwargs) -> torch.Tensor:
        return self[component](*args, **kwargs)
