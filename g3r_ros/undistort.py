"""Lens undistortion of camera images (plumb_bob and rational_polynomial, the ROS models).

Pure NumPy, no rclpy. The calibration comes from :func:`g3r_ros.messages.decode_camera_info`
(:class:`~g3r_ros.messages.CameraInfoData`); errors are :class:`~g3r_ros.messages.MessageDecodeError`
(a ``ValueError``), so the window builder records them as skipped input like any decode error.
Pixel centres are at integer coordinates here, as in OpenCV.
"""

from __future__ import annotations

import functools

import numpy as np

from .messages import CameraInfoData, MessageDecodeError

# Supported models → number of coefficients used (shorter D is zero-padded).
_DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8}


def _check_model(info: CameraInfoData) -> np.ndarray:
    """Distortion coefficients padded to the model's full length, or MessageDecodeError."""
    model = info.distortion_model
    if model not in _DISTORTION_MODELS:
        raise MessageDecodeError(f"unsupported distortion model '{model}' with non-zero D {info.D.tolist()}"
                                 f" (supported: {sorted(_DISTORTION_MODELS)})")
    n = _DISTORTION_MODELS[model]
    if info.D.size > n:
        raise MessageDecodeError(f"{model} takes at most {n} coefficients, got {info.D.size}")
    return np.concatenate([info.D, np.zeros(n - info.D.size)])


def distort_normalized(x: np.ndarray, y: np.ndarray, model: str, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the lens model to ideal normalized coordinates (x=X/Z, y=Y/Z) → distorted ones.

    plumb_bob D = (k1,k2,p1,p2,k3); rational_polynomial D = (k1,k2,p1,p2,k3,k4,k5,k6)
    (the OpenCV / ROS image_geometry definitions).
    """
    d = np.zeros(8)
    d[: min(D.size, 8)] = D[:8]
    k1, k2, p1, p2, k3, k4, k5, k6 = d
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if model == "rational_polynomial":
        radial = radial / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xy = x * y
    xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy
    return xd, yd


def undistort_points(uv: np.ndarray, info: CameraInfoData, iterations: int = 20) -> np.ndarray:
    """Distorted pixels (N,2) → ideal pinhole pixels (N,2) with the same K.

    The inverse lens model by fixed-point iteration (as OpenCV's undistortPoints); accurate
    to well below a pixel inside the calibrated field of view.
    """
    D = _check_model(info)
    K = info.K
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    yd = (uv[:, 1] - K[1, 2]) / K[1, 1]
    xd = (uv[:, 0] - K[0, 2] - K[0, 1] * yd) / K[0, 0]
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        ex, ey = distort_normalized(x, y, info.distortion_model, D)
        x, y = x - (ex - xd), y - (ey - yd)
    return np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1)


@functools.lru_cache(maxsize=8)
def _undistort_map(key) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear lookup for each ideal pixel: (flat top-left index into the raw image padded by one
    black pixel on each side (H*W,), weights of the 4 neighbours (4, H*W, 1) float32)."""
    K_flat, D_t, model, width, height = key
    K = np.asarray(K_flat).reshape(3, 3)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    with np.errstate(all="ignore"):
        xd, yd = distort_normalized(x, y, model, np.asarray(D_t))
        us = K[0, 0] * xd + K[0, 1] * yd + K[0, 2]
        vs = K[1, 1] * yd + K[1, 2]
    # Pixel centres are at integer coordinates. Sources outside (-1, W) x (-1, H) (or
    # non-finite, e.g. at a rational model's pole) read the black border with weight 1.
    inside = (us > -1) & (us < width) & (vs > -1) & (vs < height)
    us, vs = np.where(inside, us, -1.0), np.where(inside, vs, -1.0)
    u0, v0 = np.floor(us), np.floor(vs)
    fu, fv = (us - u0).reshape(-1, 1), (vs - v0).reshape(-1, 1)
    index = ((v0.astype(np.int64) + 1) * (width + 2) + u0.astype(np.int64) + 1).reshape(-1)
    weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv]).astype(np.float32)
    return index, weights


def _remap_bilinear(image: np.ndarray, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sample (H,W,3) uint8 through a map from :func:`_undistort_map`."""
    H, W = image.shape[:2]
    padded = np.zeros((H + 2, W + 2, 3), np.uint8)
    padded[1:-1, 1:-1] = image
    flat = padded.reshape(-1, 3)
    out = np.zeros((H * W, 3), np.float32)
    for w, offset in zip(weights, (0, 1, W + 2, W + 3)):
        out += w * flat[index + offset]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(H, W, 3)


def undistort_image(image: np.ndarray, info: CameraInfoData) -> tuple[np.ndarray, np.ndarray]:
    """Undistort a raw (H,W,3) uint8 image → (ideal pinhole image (H,W,3) uint8, K (3,3)).

    The output keeps the input K and size (like ``cv2.undistort`` without a new camera
    matrix); the camera's optical frame is unchanged (R is not applied). Each output pixel
    looks up its source through the lens model (the map is cached per calibration) and is
    sampled bilinearly; pixels that map outside the raw image are black. An undistorted
    ``info`` returns a copy. Unsupported models raise :class:`MessageDecodeError`.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MessageDecodeError(f"undistort_image needs an (H,W,3) uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != (info.height, info.width):
        raise MessageDecodeError(f"image is {image.shape[1]}x{image.shape[0]} but camera info says "
                                 f"{info.width}x{info.height}")
    if not info.is_distorted:
        return image.copy(), info.K.copy()
    D = _check_model(info)
    key = (tuple(info.K.reshape(-1).tolist()), tuple(D.tolist()), info.distortion_model, info.width, info.height)
    index, weights = _undistort_map(key)
    return _remap_bilinear(image, index, weights), info.K.copy()
