"""Configuration: dataclasses mirrored by ``config/*.yaml``.

Each component defines its own dataclass next to its code (``WindowConfig`` in
``window_builder``, ``NetConfig`` in ``net`` ...). This module loads YAML into them with
strict key checking, so a typo in a YAML file is an error, not a silently ignored value.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

T = typing.TypeVar("T")

PACKAGE_ROOT = Path(__file__).resolve().parent
# Source checkout: config/ is beside the package; installed (colcon): share/g3r_ros/config.
_CANDIDATE_SHARE = [PACKAGE_ROOT.parent]


def share_dir() -> Path:
    """Directory holding config/, models/ and launch/ (source tree or ament share)."""
    for c in _CANDIDATE_SHARE:
        if (c / "config").is_dir():
            return c
    try:  # installed with colcon
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        return Path(get_package_share_directory("g3r_ros"))
    except Exception:  # noqa: BLE001 - fall back to the package parent
        return PACKAGE_ROOT.parent


def config_path(name: str) -> Path:
    """Path of a shipped config file, e.g. ``config_path("synth.yaml")``."""
    return share_dir() / "config" / name


def load_yaml(path) -> dict:
    """Read a YAML mapping; an empty file gives ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict | None, *, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; nested dataclass fields recurse.

    Unknown keys raise ``ValueError`` naming the key and the valid ones.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {where or cls.__name__}; valid: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints.get(f.name)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, where=f"{where}.{f.name}" if where else f.name)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj) -> dict:
    """Dataclass → plain dict (YAML/JSON ready)."""
    return dataclasses.asdict(obj)


def load_config(cls: type[T], path=None, section: str | None = None, overrides: dict | None = None) -> T:
    """Load ``cls`` from a YAML file (optionally one top-level ``section``) plus overrides."""
    data = load_yaml(path) if path is not None else {}
    if section is not None:
        data = data.get(section, {}) or {}
    if overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict(cls, data, where=f"{path}:{section}" if section else str(path or cls.__name__))
