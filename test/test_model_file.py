"""Model files: safe loading, clear refusals for missing/corrupt/foreign/mismatched files."""

from __future__ import annotations

import pytest
import torch

from g3r_ros.config import from_dict
from g3r_ros.model import (
    COMPONENT_KINDS,
    G3RModel,
    ModelFileError,
    default_model_path,
    load_model,
    model_from_blob,
    save_model,
)
from g3r_ros.net import NetSetConfig

TINY = {"channels": [8, 16], "time_embed_dim": 16, "point_channels": 8, "head_channels": 16}


def tiny():
    torch.manual_seed(0)
    return G3RModel(from_dict(NetSetConfig, {k: TINY for k in COMPONENT_KINDS}))


def test_round_trip_is_exact(tmp_path):
    m = tiny()
    save_model(m, tmp_path / "m.pt", extra={"note": "x"})
    back = load_model(tmp_path / "m.pt")
    for (ka, a), (kb, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    assert back.net_config == m.net_config


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    save_model(tiny(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(tmp_path / "t.pt")


def test_garbage_file(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"definitely not a model")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "g.pt")


class Payload:
    """An arbitrary class: unpickling it would run code, so weights_only must refuse it."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"format": "g3r_ros.model", "version": 1, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="pickled"):
        load_model(tmp_path / "evil.pt")


def test_foreign_and_mismatched_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelFileError, match="not a g3r_ros model"):
        load_model(tmp_path / "foreign.pt")
    m = tiny()
    blob = {**m.header(), "state_dict": m.state_dict()}
    with pytest.raises(ModelFileError, match="version"):
        model_from_blob({**blob, "version": 99})
    # weights of another architecture under this config
    other = {**blob, "net_config": {k: {**TINY, "channels": [8, 24]} for k in COMPONENT_KINDS}}
    with pytest.raises(ModelFileError, match="do not match"):
        model_from_blob(other)
    # a config key this version does not know
    bad_cfg = {**blob, "net_config": {"background": {"warp_drive": 1}}}
    with pytest.raises(ModelFileError, match="config"):
        model_from_blob(bad_cfg)


def test_shipped_model_loads_when_present():
    path = default_model_path()
    if not path.exists():
        pytest.skip(f"no shipped model at {path}")
    assert path.stat().st_size < 30 * 1024 * 1024
    model = load_model(path)
    assert set(model.nets.nets.keys()) == set(COMPONENT_KINDS)
