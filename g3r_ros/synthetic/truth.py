"""Exact ground truth: the image (and depth) a pinhole camera sees from ANY pose.

``render_truth`` is what the bag's images are made of. Two versions of every view:

- *clean* (the default): radiance through the deterministic camera response (white balance,
  exposure at the stamp, vignetting, tone curve; ``photometric.develop``). Use it as the ground
  truth of novel views (lane shifts): it holds no random sensor noise.
- *as recorded* (``recorded=True``): the clean image plus the seeded sensor noise and JPEG
  compression of camera ``camera_index`` at ``stamp`` (``photometric.record``). At a recorded
  pose and stamp it equals the bag's image bit for bit.
"""

from __future__ import annotations

import numpy as np

from ..geometry import PinholeCamera
from .photometric import develop, record
from .raycast import PinholeGrid, cast_grid
from .scene import SyntheticScene
from .shading import shade


def _grid(scene: SyntheticScene, camera: PinholeCamera, ss: int) -> PinholeGrid:
    if not isinstance(camera, PinholeCamera):
        raise ValueError(f"camera must be a PinholeCamera, got {type(camera).__name__}")  # noqa: TRY004
    T_road_cam = scene.T_road_map @ camera.T_world_cam
    return PinholeGrid(camera.K, camera.width, camera.height, T_road_cam, ss)


def render_radiance(scene: SyntheticScene, camera: PinholeCamera, stamp: float | None = None, *,
                    supersample: int | None = None, shadows: bool = True) -> np.ndarray:
    """(H,W,3) float64 radiance of ``camera`` (pose ``T_world_cam`` in ``map``), before the camera
    response: rays through the centres of an SxS subdivision of each pixel (S = ``supersample``,
    default the scene config's), averaged. Moving actors are placed at ``stamp`` (seconds);
    ``stamp=None`` renders the static street only."""
    ss = int(scene.config.supersample if supersample is None else supersample)
    if ss < 1:
        raise ValueError(f"supersample must be >= 1, got {ss}")
    grid = _grid(scene, camera, ss)
    posed = scene.posed(stamp)
    t, hit = cast_grid(grid, scene.geometry, scene.layout.terrain, posed)
    rgb = shade(scene, grid.origin, grid.dirs.reshape(-1, 3), t.reshape(-1), hit.reshape(-1), posed, shadows)
    return rgb.reshape(camera.height, ss, camera.width, ss, 3).mean(axis=(1, 3))


def render_truth(scene: SyntheticScene, camera: PinholeCamera, stamp: float | None = None, *,
                 supersample: int | None = None, shadows: bool = True, recorded: bool = False,
                 camera_index: int = 0) -> np.ndarray:
    """The exact (H,W,3) uint8 RGB image of ``camera`` (pose ``T_world_cam`` in ``map``).

    Moving actors are placed, and the exposure drift evaluated, at ``stamp`` (seconds);
    ``stamp=None`` renders the static street with the drive's mean exposure. ``recorded=False``
    gives the clean image, ``recorded=True`` the image as camera ``camera_index`` records it
    (noise and JPEG seeded by the scene seed, ``camera_index`` and ``stamp``): the bag's image
    when camera and stamp are a recorded frame's.
    """
    rad = render_radiance(scene, camera, stamp, supersample=supersample, shadows=shadows)
    tau = None if stamp is None else scene.tau(stamp)
    if recorded:
        return record(scene.response, rad, tau, int(camera_index))
    return develop(scene.response, rad, tau)


def render_truth_depth(scene: SyntheticScene, camera: PinholeCamera, stamp: float | None = None) -> np.ndarray:
    """(H,W) float32 depth along the optical axis through the pixel centres (inf for sky)."""
    grid = _grid(scene, camera, 1)
    t, _ = cast_grid(grid, scene.geometry, scene.layout.terrain, scene.posed(stamp))
    return t.astype(np.float32)


def render_truth_labels(scene: SyntheticScene, camera: PinholeCamera, stamp: float | None = None) -> np.ndarray:
    """(H,W) int32 per pixel centre: -1 sky, 0 ground, 1 static object, 2+k moving actor k."""
    grid = _grid(scene, camera, 1)
    _, hit = cast_grid(grid, scene.geometry, scene.layout.terrain, scene.posed(stamp))
    out = np.where(hit == -1, -1, 0).astype(np.int32)
    parts = hit >= 0
    if parts.any():
        gi = scene.geometry.group[hit[parts]]
        actor = np.array([g.actor for g in scene.geometry.groups])[gi]
        out[parts] = np.where(actor >= 0, 2 + actor, 1)
    return out


def lane_shifted_camera(camera: PinholeCamera, meters: float) -> PinholeCamera:
    """The same camera moved ``meters`` sideways in the horizontal plane: along the camera's
    left direction (-x of the optical frame, projected onto the world xy plane). Positive is
    to the left (REP-103 +y), negative to the right. Orientation and intrinsics are kept."""
    if not np.isfinite(meters):
        raise ValueError(f"lane shift must be finite, got {meters}")
    left = -camera.T_world_cam[:3, 0].copy()
    left[2] = 0.0
    n = np.linalg.norm(left)
    if n < 1e-9:
        raise ValueError("camera x axis is vertical: no horizontal lateral direction")
    T = camera.T_world_cam.copy()
    T[:3, 3] += float(meters) * left / n
    return camera.with_pose(T)
