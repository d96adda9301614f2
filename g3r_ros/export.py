"""Gaussian maps out of the package: 3DGS PLY files and PointCloud2 field layouts.

PLY layout (graphdeco-inria ``GaussianModel.save_ply``; the layout is stated here in full), one ``vertex``
element, binary little endian, all properties float32, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

- normals are written as zero;
- ``f_dc = (rgb − 0.5) / C0`` with ``C0 = 0.28209479177387814`` (the degree-0 SH
  constant); we write no ``f_rest_*`` (G3R colours are view-independent);
- ``opacity`` is the logit (pre-sigmoid), ``scale_*`` the natural log of the sigmas (m),
  ``rot_*`` the quaternion (w, x, y, z), not necessarily normalized.

:func:`read_ply` also reads files from other 3DGS tools: properties may come in any order;
``scale_*`` / ``rot_*`` / ``f_dc_*`` are sorted by their numeric suffix; normals may be
absent; ``f_rest_*`` (higher-order SH) are ignored, so colours come from the DC term alone
(``rgb = 0.5 + C0·f_dc``, not clamped; a view-dependent map loses its view dependence);
two scales (2D Gaussian splatting) get a thin third axis. Files without ``f_dc_*`` but with
``red green blue`` use those.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_with
from .render.types import GaussianParams

log = logging.getLogger(__name__)

SH_C0 = 0.28209479177387814
PLY_COLUMNS = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
               "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
# log-scale given to the missing third axis of 2D Gaussian splats (1e-6 m sigma).
_THIN_LOG_SCALE = float(np.log(1e-6))


class PlyFileNotFoundError(FileNotFoundError, ValueError):
    """A PLY path that does not exist (both a FileNotFoundError and a ValueError)."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def params_to_ply_array(params: GaussianParams) -> np.ndarray:
    """GaussianParams (world) → structured float32 array with :data:`PLY_COLUMNS`."""
    n = len(params)
    means, quats, ls, rgb = _np(params.means), _np(params.quats), _np(params.log_scales), _np(params.rgb)
    op = _np(params.opacity_logits).reshape(-1)
    for name, a, w in (("means", means, 3), ("quats", quats, 4), ("log_scales", ls, 3), ("rgb", rgb, 3)):
        if a.shape != (n, w):
            raise ValueError(f"params.{name} must be ({n},{w}), got {a.shape}")
    if op.shape != (n,):
        raise ValueError(f"params.opacity_logits must have {n} entries, got {op.shape}")
    arr = np.zeros(n, dtype=[(c, "<f4") for c in PLY_COLUMNS])
    for i, c in enumerate("xyz"):
        arr[c] = means[:, i]
    for i in range(3):
        arr[f"f_dc_{i}"] = (rgb[:, i] - 0.5) / SH_C0
        arr[f"scale_{i}"] = ls[:, i]
    arr["opacity"] = op
    for i in range(4):
        arr[f"rot_{i}"] = quats[:, i]
    return arr


def write_ply(path, params: GaussianParams) -> Path:
    """Write Gaussians (world frame) as a graphdeco 3DGS PLY, atomically. Returns the path."""
    from plyfile import PlyData, PlyElement

    arr = params_to_ply_array(params)
    data = PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<")
    path = Path(path)
    atomic_write_with(path, data.write, suffix=".tmp")
    log.info("wrote %d Gaussians to %s", len(arr), path)
    return path


def _suffixed(names: list[str], prefix: str) -> list[str]:
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found = [(int(m.group(1)), n) for n in names if (m := pat.match(n))]
    return [n for _, n in sorted(found)]


def read_ply(path, device=None) -> GaussianParams:
    """Read a 3DGS PLY (ours or another tool's; see the module doc) → GaussianParams.

    Raises :class:`PlyFileNotFoundError` (a ValueError) for a missing file and ValueError for
    a corrupt file, a file without a ``vertex`` element, missing or non-finite columns.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise PlyFileNotFoundError(2, "PLY file not found", str(path))
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
        data = vertex.data
        names = list(data.dtype.names or ())
    except KeyError as e:
        raise ValueError(f"{path}: no 'vertex' element in the PLY") from e
    except Exception as e:  # plyfile raises many types on corrupt input
        raise ValueError(f"{path}: not a readable PLY file ({type(e).__name__}: {e})") from e

    def cols(keys: list[str]) -> np.ndarray:
        try:
            return np.stack([np.asarray(data[k], dtype=np.float32) for k in keys], axis=1)
        except Exception as e:
            raise ValueError(f"{path}: cannot read columns {keys} ({e})") from e

    missing = [k for k in ("x", "y", "z", "opacity") if k not in names]
    scales, rots, dc = _suffixed(names, "scale_"), _suffixed(names, "rot_"), _suffixed(names, "f_dc_")
    if len(scales) not in (2, 3):
        missing.append(f"scale_0..2 (found {scales})")
    if len(rots) != 4:
        missing.append(f"rot_0..3 (found {rots})")
    has_rgb = all(k in names for k in ("red", "green", "blue"))
    if len(dc) < 3 and not has_rgb:
        missing.append("f_dc_0..2 (or red, green, blue)")
    if missing:
        raise ValueError(f"{path}: not a 3D Gaussian splatting PLY, missing {missing}; has {names}")

    means = cols(["x", "y", "z"])
    log_scales = cols(scales)
    if log_scales.shape[1] == 2:
        log_scales = np.concatenate([log_scales, np.full((len(log_scales), 1), _THIN_LOG_SCALE, np.float32)], 1)
    quats = cols(rots)
    if len(dc) >= 3:
        rgb = 0.5 + SH_C0 * cols(dc[:3])
    else:
        rgb = cols(["red", "green", "blue"])
        if np.issubdtype(data["red"].dtype, np.integer):
            rgb = rgb / 255.0
    opacity = cols(["opacity"])[:, 0]
    for name, a in (("x/y/z", means), ("scale", log_scales), ("rot", quats), ("colour", rgb), ("opacity", opacity)):
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: non-finite values in {name} ({int((~np.isfinite(a)).sum())} entries)")
    if len(_suffixed(names, "f_rest_")):
        log.info("%s: ignoring %d f_rest_* (higher-order SH) columns; colour = DC term", path,
                 len(_suffixed(names, "f_rest_")))

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    return GaussianParams(means=t(means), quats=t(quats), log_scales=t(log_scales), opacity_logits=t(opacity),
                          rgb=t(rgb))


# ---------------------------------------------------------------------------------------
# PointCloud2 fields
# ---------------------------------------------------------------------------------------
POINTCLOUD_FIELD_NAMES = ("x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2",
                          "rot_0", "rot_1", "rot_2", "rot_3", "rgb")
POINTCLOUD_DTYPE = np.dtype([(n, "<f4") for n in POINTCLOUD_FIELD_NAMES])
# sensor_msgs/PointField datatype code for FLOAT32.
POINTFIELD_FLOAT32 = 7


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N,3) colours in [0,1] → (N,) float32 whose bits are the uint32 0x00RRGGBB (PCL/RViz)."""
    c = np.clip(np.round(np.asarray(rgb, dtype=np.float64) * 255.0), 0, 255).astype(np.uint32)
    packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: (N,) float32 → (N,3) uint8."""
    u = np.asarray(packed, dtype="<f4").view("<u4")
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.uint8)


def pointcloud_fields(params: GaussianParams) -> np.ndarray:
    """Gaussians → structured array for a PointCloud2 (one point per Gaussian).

    Fields, all float32 (PointField datatype 7, count 1), little endian, 48 bytes a point:

    - ``x y z``: centre in the map frame (metres);
    - ``opacity``: in [0, 1] (sigmoid of the logit);
    - ``scale_0 scale_1 scale_2``: standard deviations along the Gaussian's local axes, in
      metres (exp of the log-scales);
    - ``rot_0 rot_1 rot_2 rot_3``: unit quaternion (w, x, y, z) rotating the local axes
      into the map frame;
    - ``rgb``: colour packed as in PCL/RViz: the float32's bits are the uint32 0x00RRGGBB
      (8 bits per channel, colour clamped to [0,1] first).
    """
    n = len(params)
    out = np.zeros(n, dtype=POINTCLOUD_DTYPE)
    means = _np(params.means)
    q = _np(params.quats).astype(np.float64)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    scales = np.exp(_np(params.log_scales).astype(np.float64))
    op = 1.0 / (1.0 + np.exp(-_np(params.opacity_logits).reshape(-1).astype(np.float64)))
    for i, c in enumerate("xyz"):
        out[c] = means[:, i]
    out["opacity"] = op
    for i in range(3):
        out[f"scale_{i}"] = scales[:, i]
    for i in range(4):
        out[f"rot_{i}"] = q[:, i]
    out["rgb"] = pack_rgb(_np(params.rgb))
    return out


def pointcloud_field_layout() -> list[tuple[str, int, int, int]]:
    """(name, byte offset, PointField datatype, count) per field of :func:`pointcloud_fields`;
    the point step is ``POINTCLOUD_DTYPE.itemsize``."""
    return [(n, POINTCLOUD_DTYPE.fields[n][1], POINTFIELD_FLOAT32, 1) for n in POINTCLOUD_FIELD_NAMES]
