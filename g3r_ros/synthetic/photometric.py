"""The camera's photometric pipeline: from rendered radiance to the recorded 8-bit image.

Two stages, both pure functions of the seed, the stamp and the pixel position:

- :func:`develop` (deterministic, the *clean* image): optical blur (a Gaussian point spread
  function, standing in for lens, demosaicing and rectification blur), white balance, exposure (a per-drive
  offset plus a smooth per-frame drift, a function of the stamp), vignetting and a tone curve
  (a power law about mid grey applied to luma: ``contrast`` > 1 darkens shadows and brightens
  highlights until they clip, as a linear camera in strong sun does);
- :func:`record` (what a bag holds): the same, plus sensor noise (shot + read, drawn from a
  generator seeded by the scene seed, the camera index and the stamp) and JPEG compression at
  a quality drawn the same way.

With every setting off (``PRESETS["plain"]``) both reduce to generator 1.0's
``clip(rint(255 * radiance))``. Radiance (H,W,3) is the shader's linear display value (1.0 =
white) before any of this.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from .config import SynthConfig
from .noise import sub_rng

PIVOT = 0.35       # mid grey of the tone curve (display value)


@dataclass
class CameraResponse:
    """One drive's camera response (drawn per seed by :func:`make_response`).

    ev: exposure offset (stops); blur: PSF std (pixels); drift_*: (3,) amplitude-weighted sinusoids of the per-frame
    drift (stops, Hz, radians); wb: (3,) channel gains; vignette: light lost in the corners;
    contrast: tone-curve exponent about ``PIVOT``; noise_read / noise_shot: 8-bit levels;
    jpeg: (lo, hi) quality range (0, 0 = none); seed: for the per-frame random draws."""

    ev: float
    blur: float
    drift_amp: np.ndarray
    drift_hz: np.ndarray
    drift_phase: np.ndarray
    wb: np.ndarray
    vignette: float
    contrast: float
    noise_read: float
    noise_shot: float
    jpeg: tuple[int, int]
    seed: int

    @property
    def identity(self) -> bool:
        """True when develop() is generator 1.0's plain rounding."""
        return (self.ev == 0.0 and self.blur == 0.0 and not np.any(self.drift_amp) and np.all(self.wb == 1.0)
                and self.vignette == 0.0
                and self.contrast == 1.0)

    def frame_ev(self, tau: float | None) -> float:
        """Exposure offset (stops) at ``tau`` seconds since the first frame (None: the drive's)."""
        if tau is None or not np.any(self.drift_amp):
            return self.ev
        return float(self.ev + np.sum(self.drift_amp * np.sin(2.0 * np.pi * self.drift_hz * tau + self.drift_phase)))


def make_response(seed: int, cfg: SynthConfig) -> CameraResponse:
    """Draw the camera response of ``seed`` from the ranges of ``cfg`` (its own random stream:
    switching a photometric setting never moves the street)."""
    rng = sub_rng(seed, "camresp")
    ev = rng.uniform(cfg.exposure_ev_min, cfg.exposure_ev_max)
    w = rng.uniform(0.5, 1.0, 3)
    amp = cfg.exposure_frame_ev * w / np.sqrt((w * w).sum())        # the drift's rms is ~amp/sqrt(2)
    hz = rng.uniform(0.05, 0.5, 3)
    phase = rng.uniform(0.0, 2.0 * np.pi, 3)
    lr, lb = rng.uniform(-cfg.white_balance, cfg.white_balance, 2)
    vig = rng.uniform(cfg.vignetting_min, cfg.vignetting_max)
    con = rng.uniform(cfg.contrast_min, cfg.contrast_max)
    k = rng.uniform(0.6, 1.4)
    blur = rng.uniform(cfg.blur_px_min, cfg.blur_px_max)
    return CameraResponse(
        ev=float(ev), blur=float(blur), drift_amp=amp, drift_hz=hz, drift_phase=phase,
        wb=np.exp(np.array([lr, 0.0, lb])),
        vignette=float(vig), contrast=float(con), noise_read=float(cfg.noise_read * k),
        noise_shot=float(cfg.noise_shot * k), jpeg=(int(cfg.jpeg_quality_min), int(cfg.jpeg_quality_max)),
        seed=int(seed))


def vignette_gain(width: int, height: int, strength: float) -> np.ndarray:
    """(H,W) gain 1 - strength * r^2 with r = 1 in the image corners (a smooth radial falloff)."""
    v = (np.arange(height) + 0.5 - height / 2.0) / (height / 2.0)
    u = (np.arange(width) + 0.5 - width / 2.0) / (width / 2.0)
    r2 = (u[None, :] ** 2 + v[:, None] ** 2) / 2.0
    return 1.0 - strength * r2


def develop_float(resp: CameraResponse, radiance: np.ndarray, tau: float | None) -> np.ndarray:
    """(H,W,3) radiance → (H,W,3) display values (float, clipped to [0,1]) of the clean image."""
    if resp.identity:
        return np.clip(radiance, 0.0, 1.0)
    if resp.blur > 0:
        from scipy.ndimage import gaussian_filter

        radiance = gaussian_filter(radiance, sigma=(resp.blur, resp.blur, 0.0), mode="nearest", truncate=3.0)
    x = radiance * (resp.wb * 2.0 ** resp.frame_ev(tau))[None, None, :]
    if resp.vignette > 0:
        x = x * vignette_gain(x.shape[1], x.shape[0], resp.vignette)[..., None]
    x = np.maximum(x, 0.0)
    if resp.contrast != 1.0:
        # the curve acts on luma; colours keep their ratios (no saturation shift) until they clip
        Y = x[..., 0] * 0.2126 + x[..., 1] * 0.7152 + x[..., 2] * 0.0722
        Yc = PIVOT * (Y / PIVOT) ** resp.contrast
        x = x * (Yc / np.maximum(Y, 1e-9))[..., None]
    return np.clip(x, 0.0, 1.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def develop(resp: CameraResponse, radiance: np.ndarray, tau: float | None) -> np.ndarray:
    """The clean (H,W,3) uint8 image: the deterministic part of the pipeline only."""
    return to_uint8(develop_float(resp, radiance, tau))


def _frame_rng(resp: CameraResponse, camera_index: int, tau: float | None) -> np.random.Generator:
    us = -1 if tau is None else int(round(tau * 1e6))
    return np.random.default_rng([resp.seed & 0xFFFFFFFF, 0x53454E53, int(camera_index), us & 0xFFFFFFFFFFFF])


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H,W,3) uint8 as baseline JPEG (4:2:0) at ``quality`` and decode it again."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(img, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    buf.seek(0)
    with PILImage.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def record(resp: CameraResponse, radiance: np.ndarray, tau: float | None, camera_index: int = 0) -> np.ndarray:
    """The recorded (H,W,3) uint8 image: :func:`develop` plus sensor noise and JPEG compression,
    drawn from a generator seeded by (seed, ``camera_index``, ``tau`` in whole microseconds)."""
    x = develop_float(resp, radiance, tau)
    noisy = resp.noise_read > 0 or resp.noise_shot > 0
    lo, hi = resp.jpeg
    if not noisy and hi == 0:
        return to_uint8(x)
    rng = _frame_rng(resp, camera_index, tau)
    if noisy:
        sigma = np.sqrt(resp.noise_read ** 2 + resp.noise_shot ** 2 * x) / 255.0
        x = x + sigma * rng.standard_normal(x.shape)
    img = to_uint8(x)
    if hi > 0:
        img = jpeg_roundtrip(img, int(rng.integers(lo, hi + 1)))
    return img
