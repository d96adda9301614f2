"""Random training sub-windows and honest augmentation of scene windows.

A training iteration on a large window (a real drive of 23 frames and two cameras, a
multi-camera synthetic street) would cost several times one on a small synthetic window. A
:func:`sample_subwindow` draws a cheaper, varied problem from it:

- a run of consecutive stamps (``span``), and among its keyframes (every camera) a random set
  of ``source_views`` sources and ``target_views`` held-out targets;
- the images rescaled by a random factor in ``image_scale`` (training at mixed resolutions);
- the LiDAR cropped to what the chosen views see (``crop_margin``) — the initializer then
  spends its point budget there;
- photometric jitter: one exposure gain and one white-balance gain per channel for the whole
  sub-window, applied to every image alike (the scene is the same, the camera is not);
- with probability ``mirror_prob`` the whole scene is mirrored left-right: world points,
  poses, actor boxes and images together, so the mirrored window is again a consistent drive.

Everything is NumPy on copies: the source window is never modified.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .geometry import PinholeCamera
from .window import ActorTrack, Keyframe, SceneWindow
from .window_builder import resize_image

# Reflections: world y → −y (REP-103: y is left), optical x → −x, box y → −y.
_M_WORLD = np.diag([1.0, -1.0, 1.0, 1.0])
_M_OPTICAL = np.diag([-1.0, 1.0, 1.0, 1.0])
_M_BOX = _M_WORLD


@dataclass
class SubWindowConfig:
    """How training sub-windows are drawn (see module doc). ``enabled: false`` uses windows whole.

    span: [min, max] consecutive stamps. source_views / target_views: views drawn among the
    keyframes of those stamps (fewer when the span has fewer). image_scale: [min, max]
    factor applied to the stored image size. crop_margin: fraction of the image added on
    each side when cropping the LiDAR to the views. exposure_jitter: the gain is
    exp(U(−x, x)); white_balance_jitter: per-channel gains exp(U(−x, x)). mirror_prob:
    probability of a left-right mirrored scene.
    """

    enabled: bool = True
    span: list = field(default_factory=lambda: [6, 10])
    source_views: int = 6
    target_views: int = 2
    image_scale: list = field(default_factory=lambda: [1.0, 1.0])
    crop_margin: float = 0.1
    exposure_jitter: float = 0.15
    white_balance_jitter: float = 0.05
    mirror_prob: float = 0.5

    def validate(self) -> None:
        if len(self.span) != 2 or not 1 <= self.span[0] <= self.span[1]:
            raise ValueError(f"subwindow.span must be [min, max] with 1 <= min <= max, got {self.span}")
        if self.source_views < 1 or self.target_views < 0:
            raise ValueError("subwindow.source_views must be >= 1 and target_views >= 0")
        if len(self.image_scale) != 2 or not 0 < self.image_scale[0] <= self.image_scale[1]:
            raise ValueError(f"subwindow.image_scale must be [min, max] with 0 < min <= max, got {self.image_scale}")
        if self.crop_margin < 0 or self.exposure_jitter < 0 or self.white_balance_jitter < 0:
            raise ValueError("subwindow.crop_margin and the jitters must be >= 0")
        if not 0 <= self.mirror_prob <= 1:
            raise ValueError(f"subwindow.mirror_prob must be in [0, 1], got {self.mirror_prob}")


def mirror_camera(camera: PinholeCamera) -> PinholeCamera:
    """The camera seeing the mirrored world (y → −y) as the mirror image of what it saw.

    ``T_world_cam' = M_world · T_world_cam · M_optical`` (a proper rotation again) and
    cx' = width − cx (pixel centres at +0.5)."""
    K = camera.K.copy()
    K[0, 2] = camera.width - K[0, 2]
    return PinholeCamera(K, camera.width, camera.height, _M_WORLD @ camera.T_world_cam @ _M_OPTICAL)


def mirror_window(window: SceneWindow) -> SceneWindow:
    """The whole window mirrored left-right (see module doc): images flipped, points, poses,
    actor boxes and their local points reflected consistently."""
    kfs = [dataclasses.replace(k, image=np.ascontiguousarray(k.image[:, ::-1]), camera=mirror_camera(k.camera))
           for k in window.keyframes]
    pts = np.asarray(window.points, dtype=np.float32).copy()
    pts[:, 1] *= -1
    ego = np.asarray(window.ego_positions, dtype=np.float64).copy().reshape(-1, 3)
    ego[:, 1] *= -1
    actors = []
    for a in window.actors:
        local = np.asarray(a.points, dtype=np.float32).copy()
        if len(local):
            local[:, 1] *= -1
        poses = np.einsum("ij,njk,kl->nil", _M_WORLD, np.asarray(a.poses, dtype=np.float64), _M_BOX)
        actors.append(dataclasses.replace(a, poses=poses, points=local))
    return dataclasses.replace(window, keyframes=kfs, points=pts, ego_positions=ego, actors=actors,
                               name=window.name + "-mirrored")


def jitter_photometry(window: SceneWindow, gains: np.ndarray) -> SceneWindow:
    """Every image multiplied by per-channel ``gains`` (3,) and clipped to [0, 255]."""
    g = np.asarray(gains, dtype=np.float32).reshape(1, 1, 3)
    kfs = [dataclasses.replace(k, image=np.clip(k.image.astype(np.float32) * g + 0.5, 0, 255).astype(np.uint8))
           for k in window.keyframes]
    return dataclasses.replace(window, keyframes=kfs)


def _crop_points(points: np.ndarray, keyframes: list[Keyframe], margin: float) -> np.ndarray:
    from .initialization import in_any_view

    if len(points) == 0:
        return points
    return points[in_any_view(points, keyframes, margin)]


def sample_subwindow(window: SceneWindow, cfg: SubWindowConfig, rng: np.random.Generator) -> SceneWindow:
    """A random training sub-window of ``window`` (see module doc); ``window`` is not modified."""
    cfg.validate()
    stamps = np.unique([k.stamp for k in window.keyframes])
    span = int(rng.integers(cfg.span[0], cfg.span[1] + 1))
    span = min(span, len(stamps))
    first = int(rng.integers(0, len(stamps) - span + 1))
    chosen = set(stamps[first:first + span].tolist())
    pool = [k for k in window.keyframes if k.stamp in chosen]
    order = rng.permutation(len(pool))
    n_src = min(cfg.source_views, len(pool))
    n_tgt = min(cfg.target_views, len(pool) - n_src)
    if n_tgt == 0 and cfg.target_views > 0 and n_src > 1:  # keep at least one target when asked
        n_src, n_tgt = n_src - 1, 1
    src_idx, tgt_idx = set(order[:n_src].tolist()), set(order[n_src:n_src + n_tgt].tolist())
    scale = float(rng.uniform(cfg.image_scale[0], cfg.image_scale[1]))
    kfs = []
    for i, k in enumerate(pool):
        if i not in src_idx and i not in tgt_idx:
            continue
        cam, img = k.camera, k.image
        if scale != 1.0:
            cam = cam.scaled(scale)
            img = resize_image(img, cam.width, cam.height)
        kfs.append(dataclasses.replace(k, image=img, camera=cam, held_out=i in tgt_idx))
    kfs.sort(key=lambda k: (k.stamp, k.camera_name))
    for i, k in enumerate(kfs):
        k.index = i
    pts = _crop_points(np.asarray(window.points), [k for k in kfs if not k.held_out], cfg.crop_margin)
    t0, t1 = min(chosen), max(chosen)
    ego = np.asarray(window.ego_positions).reshape(-1, 3)
    actors: list[ActorTrack] = [a for a in window.actors if len(a.stamps) and a.stamps[0] <= t1 and a.stamps[-1] >= t0]
    sub = SceneWindow(kfs, pts, actors=actors, ego_positions=ego, world_frame=window.world_frame,
                      name=f"{window.name}[{first}:{first + span}]")
    gains = np.exp(rng.uniform(-cfg.exposure_jitter, cfg.exposure_jitter)
                   + rng.uniform(-cfg.white_balance_jitter, cfg.white_balance_jitter, 3))
    if cfg.exposure_jitter > 0 or cfg.white_balance_jitter > 0:
        sub = jitter_photometry(sub, gains)
    if rng.uniform() < cfg.mirror_prob:
        sub = mirror_window(sub)
    return sub
