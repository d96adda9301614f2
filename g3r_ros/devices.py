"""Torch device selection shared by every entry point."""

from __future__ import annotations

import torch


def resolve_device(device) -> torch.device:
    """'auto' → CUDA when available, else CPU; any torch device spec otherwise ('cpu', 'cuda',
    'cuda:1', a ``torch.device``). Asking for CUDA without CUDA is a ``ValueError``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return dev
