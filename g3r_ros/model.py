"""The learned G3R model: per-component decoders + G3R-Nets, and its safe file format.

A model file is a plain dict saved with ``torch.save`` and loaded with
``torch.load(..., weights_only=True)``, so a file that carries pickled code is refused.
Its header names the format, a version and the network configuration; a file from
another architecture, a truncated file or a config mismatch gives a clear ``ModelFileError``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn

from .atomic import atomic_path
from .config import from_dict, share_dir
from .gaussians import COMPONENT_KINDS, GaussianDecoder
from .net import G3RNetSet, NetSetConfig, load_net_config

LOG = logging.getLogger(__name__)

MODEL_FORMAT = "g3r_ros.model"
MODEL_VERSION = 1


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be used (missing, corrupt, foreign, mismatched)."""


class G3RModel(nn.Module):
    """Decoders (one per component kind) and the G3R-Net set."""

    def __init__(self, net_config: NetSetConfig | None = None):
        super().__init__()
        self.net_config = (net_config or load_net_config()).resolved()
        self.decoders = nn.ModuleDict({k: GaussianDecoder() for k in COMPONENT_KINDS})
        self.nets = G3RNetSet(self.net_config)

    def header(self) -> dict:
        return {"format": MODEL_FORMAT, "version": MODEL_VERSION,
                "net_config": dataclasses.asdict(self.net_config)}


def default_model_path() -> Path:
    return share_dir() / "models" / "g3r_net.pt"


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: never a partial file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_model(model: G3RModel, path, extra: dict | None = None) -> None:
    """Write ``model`` (weights + header [+ extra metadata]) atomically."""
    blob = {**model.header(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if extra:
        blob["extra"] = extra
    atomic_torch_save(blob, path)


def safe_torch_load(path) -> dict:
    """``torch.load(weights_only=True)`` with clear errors for missing/corrupt/unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise ModelFileError(f"{path}: refused, the file carries pickled code/objects ({msg})") from None
        raise ModelFileError(f"{path}: not a readable model file (truncated or corrupt?): {msg}") from None
    if not isinstance(blob, dict):
        raise ModelFileError(f"{path}: not a g3r_ros model file (top level is {type(blob).__name__})")
    return blob


def model_from_blob(blob: dict, where: str = "model") -> G3RModel:
    """Build a ``G3RModel`` from a loaded dict, checking format, version and config."""
    if blob.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{where}: not a g3r_ros model (format={blob.get('format')!r})")
    if blob.get("version") != MODEL_VERSION:
        raise ModelFileError(f"{where}: model version {blob.get('version')} is not supported "
                             f"(this g3r_ros reads version {MODEL_VERSION})")
    try:
        cfg = from_dict(NetSetConfig, blob.get("net_config") or {}, where=f"{where}:net_config")
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: network config does not match this g3r_ros: {e}") from None
    model = G3RModel(cfg)
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise ModelFileError(f"{where}: no state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ModelFileError(f"{where}: weights do not match the architecture in its config: {first}") from None
    return model


def load_model(path=None, device="cpu") -> G3RModel:
    """Load a model file (default: the shipped ``models/g3r_net.pt``) onto ``device``."""
    path = Path(path) if path is not None else default_model_path()
    model = model_from_blob(safe_torch_load(path), where=str(path))
    LOG.info("loaded G3R model %s", path)
    return model.to(device).eval()
