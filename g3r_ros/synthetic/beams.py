"""Beam layouts of spinning LiDARs (elevations in degrees, top beam first).

- ``uniform``: ``lidar_beams`` beams evenly from ``lidar_fov_up_deg`` to ``lidar_fov_down_deg``
  (generator 1.0's sensor);
- ``hdl64e``: the Velodyne HDL-64E of the KITTI car. Its 64 lasers sit in two blocks: the upper
  block's 32 lasers from +2.0 deg down to -8.33 deg in steps of 1/3 deg, the lower block's 32
  from -8.83 deg down to -24.33 deg in steps of 1/2 deg (Velodyne's published layout; the
  data sheet rounds the field of view to +2 / -24.8 deg). In KITTI's 10 Hz scans each laser
  returns about 2000 points per turn, i.e. an azimuth step of about 0.18 deg (measured on
  sequence 04: median step 0.178-0.183 deg per ring), hence ``lidar_azimuth_steps: 2000``
  in the KITTI preset.
"""

from __future__ import annotations

import numpy as np

HDL64E_UPPER = (2.0, -8.33)
HDL64E_LOWER = (-8.83, -24.33)


def hdl64e_elevations_deg() -> np.ndarray:
    """(64,) HDL-64E beam elevations in degrees, descending."""
    return np.concatenate([np.linspace(*HDL64E_UPPER, 32), np.linspace(*HDL64E_LOWER, 32)])


def beam_elevations_deg(pattern: str, beams: int, fov_up_deg: float, fov_down_deg: float) -> np.ndarray:
    """Elevations (degrees, strictly descending) of a LiDAR ``pattern``."""
    if pattern == "hdl64e":
        return hdl64e_elevations_deg()
    if pattern != "uniform":
        raise ValueError(f"unknown LiDAR pattern {pattern!r}")
    if beams == 1:
        return np.array([fov_up_deg], dtype=np.float64)
    return np.linspace(fov_up_deg, fov_down_deg, beams)
