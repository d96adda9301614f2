"""Sparse 3D convolutions in pure PyTorch, with a hand-written backward.

The core op is :func:`sparse_conv`: ``out[o] = Σ_k feats[in(o, k)] @ W[k]`` over the kernel
offsets ``k`` of a :class:`KernelMap`. It runs as one gather and one matrix product: the
map's neighbour table (num_out, K) gathers a (num_out, K·C_in) block (a zero row where an
offset has no input), which multiplies the weights reshaped to (K·C_in, C_out). The
backward does the same with the transposed table for the input gradient, and forms the
weight gradient as gathered blockᵀ @ grad_out. No scatter is needed anywhere: per-offset
``index_add_`` (an earlier design) dominated the training profile on this 2-core CPU. Large
maps are processed in row chunks (``GATHER_BUDGET``) to bound the temporary block.

Modules:
- :class:`SubmanifoldConv3d`: odd k^3 kernel, outputs on the input voxels;
- :class:`SparseDownConv3d`: kernel 2, stride 2 (level s -> 2s);
- :class:`SparseUpConv3d`: transposed kernel 2, stride 2 (level s -> s/2, onto the
  voxels the down conv came from).
Weights are stored as (K, C_in, C_out). For a dense ``conv3d`` weight (C_out, C_in, k, k, k)
the slice is ``W[k] = weight.flatten(2)[:, :, k].T``; for ``conv_transpose3d`` weight
(C_in, C_out, 2, 2, 2) it is ``weight.flatten(2)[:, :, k]``.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .kernel_map import KernelMap
from .tensor import SparseTensor

# Rows of a gathered (rows, K*C) block per chunk: bounds the temporary to ~32 MB (float32).
GATHER_BUDGET = 8_000_000


def _gather_rows(x: torch.Tensor, table: torch.Tensor, rows: slice) -> torch.Tensor:
    """(r, K*C): the rows of ``x`` padded with one zero row, gathered by ``table[rows]``."""
    idx = table[rows]
    return x.index_select(0, idx.reshape(-1)).reshape(idx.shape[0], -1)


def _table_matmul(x: torch.Tensor, table: torch.Tensor, w2d: torch.Tensor) -> torch.Tensor:
    """out[o] = Σ_k x_pad[table[o, k]] @ W[k] as one gather + one matmul per chunk of rows.

    x: (N, C) -> padded (N+1, C) with a zero last row (the table's "none"). table: (M, K).
    w2d: (K*C, C_out). Returns (M, C_out)."""
    x_pad = torch.cat([x, x.new_zeros((1, x.shape[1]))])
    M, K = table.shape
    step = max(1, GATHER_BUDGET // max(1, K * x.shape[1]))
    if step >= M:
        return _gather_rows(x_pad, table, slice(0, M)) @ w2d
    out = x.new_empty((M, w2d.shape[1]))
    for r in range(0, M, step):
        sl = slice(r, min(M, r + step))
        torch.mm(_gather_rows(x_pad, table, sl), w2d, out=out[sl])
    return out


def _backward_inputs(ctx, grad_out: torch.Tensor):
    """(feats, weight, kmap, contiguous grad_out, need_x, need_w) of a sparse conv's backward."""
    feats, weight = ctx.saved_tensors
    return feats, weight, ctx.kmap, grad_out.contiguous(), ctx.needs_input_grad[0], ctx.needs_input_grad[1]


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        ctx.kmap = kmap
        ctx.save_for_backward(feats, weight)
        if kmap.num_out == 0 or not (kmap.pairs or kmap.center is not None):
            return feats.new_zeros((kmap.num_out, weight.shape[2]))
        out_table, _ = kmap.tables
        return _table_matmul(feats, out_table, weight.reshape(-1, weight.shape[2]))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight, kmap, grad_out, need_x, need_w = _backward_inputs(ctx, grad_out)
        grad_x = grad_w = None
        if kmap.num_out == 0 or not (kmap.pairs or kmap.center is not None):
            return (feats.new_zeros(feats.shape) if need_x else None,
                    torch.zeros_like(weight) if need_w else None, None)
        out_table, in_table = kmap.tables
        K, C_in, C_out = weight.shape
        if need_x:  # grad_x[i] = Σ_k grad_out[in_table[i, k]] @ W[k]^T
            grad_x = _table_matmul(grad_out, in_table, weight.transpose(1, 2).reshape(K * C_out, C_in))
        if need_w:  # grad_W = gathered(feats)^T @ grad_out, accumulated over row chunks
            x_pad = torch.cat([feats, feats.new_zeros((1, C_in))])
            M = out_table.shape[0]
            step = max(1, GATHER_BUDGET // max(1, K * C_in))
            gw = feats.new_zeros((K * C_in, C_out))
            for r in range(0, M, step):
                sl = slice(r, min(M, r + step))
                gw.addmm_(_gather_rows(x_pad, out_table, sl).t(), grad_out[sl])
            grad_w = gw.reshape(K, C_in, C_out)
        return grad_x, grad_w, None


class _ScatterConvFunction(torch.autograd.Function):
    """The earlier algorithm, kept as the measured baseline of ``g3r bench train``: per kernel
    offset gather → matmul → ``index_add_`` (forward and input gradient)."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        ctx.kmap = kmap
        ctx.save_for_backward(feats, weight)
        if kmap.center is not None:
            out = feats @ weight[kmap.center]
        else:
            out = feats.new_zeros((kmap.num_out, weight.shape[2]))
        for k, out_idx, in_idx in kmap.pairs:
            out.index_add_(0, out_idx, feats.index_select(0, in_idx) @ weight[k])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight, kmap, grad_out, need_x, need_w = _backward_inputs(ctx, grad_out)
        grad_x = grad_w = None
        if need_x:
            if kmap.center is not None:
                grad_x = grad_out @ weight[kmap.center].t()
            else:
                grad_x = feats.new_zeros(feats.shape)
        if need_w:
            grad_w = torch.zeros_like(weight)
            if kmap.center is not None:
                torch.mm(feats.t(), grad_out, out=grad_w[kmap.center])
        for k, out_idx, in_idx in kmap.pairs:
            g = grad_out.index_select(0, out_idx)
            if need_x:
                grad_x.index_add_(0, in_idx, g @ weight[k].t())
            if need_w:
                torch.mm(feats.index_select(0, in_idx).t(), g, out=grad_w[k])
        return grad_x, grad_w, None


_ALGORITHMS = {"table": _SparseConvFunction, "scatter": _ScatterConvFunction}
_algorithm = ["table"]


@contextlib.contextmanager
def conv_algorithm(name: str):
    """Run the enclosed sparse convolutions with another algorithm ("table", the default, or
    "scatter", the earlier one) — for side-by-side benchmarks."""
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown sparse conv algorithm {name!r}; expected one of {sorted(_ALGORITHMS)}")
    previous = _algorithm[0]
    _algorithm[0] = name
    try:
        yield
    finally:
        _algorithm[0] = previous


def sparse_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Apply a kernel map. feats: (num_in, C_in); weight: (K, C_in, C_out) -> (num_out, C_out)."""
    if feats.ndim != 2 or feats.shape[0] != kmap.num_in:
        raise ValueError(f"feats must be ({kmap.num_in}, C_in), got {tuple(feats.shape)}")
    if weight.ndim != 3 or weight.shape[0] != kmap.kernel_volume or weight.shape[1] != feats.shape[1]:
        raise ValueError(f"weight must be ({kmap.kernel_volume}, {feats.shape[1]}, C_out), got {tuple(weight.shape)}")
    if weight.dtype != feats.dtype or weight.device != feats.device:
        raise ValueError(f"feats ({feats.dtype}, {feats.device}) and weight ({weight.dtype}, {weight.device}) differ")
    return _ALGORITHMS[_algorithm[0]].apply(feats.contiguous(), weight, kmap)


def sparse_conv_reference(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """The same op in plain autograd (out-of-place ``index_add``): a reference for tests and
    benchmarks, several times slower in backward on CPU."""
    if kmap.center is not None:
        out = feats @ weight[kmap.center]
    else:
        out = feats.new_zeros((kmap.num_out, weight.shape[2]))
    for k, out_idx, in_idx in kmap.pairs:
        out = out.index_add(0, out_idx, feats.index_select(0, in_idx) @ weight[k])
    return out


class _SparseConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_volume: int, bias: bool):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got {in_channels} -> {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(kernel_volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # Kaiming-uniform for ReLU over fan_in = K * C_in.
        bound = math.sqrt(6.0 / (self.weight.shape[0] * self.in_channels))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _apply_map(self, x: SparseTensor, kmap: KernelMap, stride: int) -> SparseTensor:
        if x.channels != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected {self.in_channels} channels, got {x.channels}")
        out = sparse_conv(x.feats, self.weight, kmap)
        if self.bias is not None:
            out = out + self.bias
        return SparseTensor(out, stride, x.manager)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"


class SubmanifoldConv3d(_SparseConvBase):
    """k^3 submanifold convolution: outputs only on the input's active voxels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        super().__init__(in_channels, out_channels, kernel_size ** 3, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._apply_map(x, x.manager.submanifold(x.stride, self.kernel_size), x.stride)


class SparseDownConv3d(_SparseConvBase):
    """Kernel-2, stride-2 convolution: level ``s`` -> level ``2s``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False):
        super().__init__(in_channels, out_channels, 8, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._apply_map(x, x.manager.down(x.stride), 2 * x.stride)


class SparseUpConv3d(_SparseConvBase):
    """Transposed kernel-2, stride-2 convolution: level ``s`` -> the voxels of level ``s/2``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False):
        super().__init__(in_channels, out_channels, 8, bias)

    def reset_parameters(self):
        # Each output voxel receives exactly one term: fan_in = C_in.
        bound = math.sqrt(6.0 / self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._apply_map(x, x.manager.up(x.stride), x.stride // 2)
