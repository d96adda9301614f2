"""A compact, safe file of scene windows: training data that travels without its bags.

``save_windows(path, windows)`` writes one ``.npz`` (``numpy.savez_compressed``, no pickles)
holding, per window, every keyframe's image (PNG-encoded, optionally downscaled), intrinsics,
pose, stamp, camera name and held-out flag, the background LiDAR (float32, optionally
voxel-downsampled), the ego path and the actor tracks with their box-local points.
``load_windows(path)`` reads it back with ``allow_pickle=False``; a file from another format
version, a truncated or a tampered file raises :class:`WindowCacheError`.

Used to carry real training windows to a GPU machine that has no KITTI data and no network
(``g3r train-cache``), and by the trainer as a data source (``data.window_cache``).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .geometry import PinholeCamera
from .window import ActorTrack, Keyframe, SceneWindow

CACHE_FORMAT = "g3r_ros.window_cache"
CACHE_VERSION = 1


class WindowCacheError(ValueError):
    """A window cache file that cannot be read."""


def _png(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _unpng(data: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data.tobytes())).convert("RGB"))


def save_windows(path, windows: list[SceneWindow], *, image_scale: float = 1.0, voxel_size: float | None = None,
                 meta: dict | None = None) -> Path:
    """Write ``windows`` to ``path`` (.npz, atomic). image_scale: resize the images (and K);
    voxel_size: voxel-downsample the background LiDAR (metres; None keeps it). meta: JSON-able
    facts recorded beside (e.g. the real split). Returns the path."""
    from .knn import voxel_downsample
    from .window_builder import resize_image

    arrays: dict[str, np.ndarray] = {}
    index = []
    for w_i, w in enumerate(windows):
        w.validate()
        kf_rows = []
        for k_i, k in enumerate(w.keyframes):
            cam, img = k.camera, k.image
            if image_scale != 1.0:
                cam = cam.scaled(image_scale)
                img = resize_image(img, cam.width, cam.height)
            key = f"w{w_i}_k{k_i}"
            arrays[key + "_png"] = _png(np.ascontiguousarray(img))
            arrays[key + "_K"] = np.asarray(cam.K, dtype=np.float64)
            arrays[key + "_T"] = np.asarray(cam.T_world_cam, dtype=np.float64)
            kf_rows.append({"stamp": float(k.stamp), "camera_name": k.camera_name, "held_out": bool(k.held_out),
                            "index": int(k.index), "width": cam.width, "height": cam.height})
        pts = np.asarray(w.points, dtype=np.float64)
        if voxel_size and len(pts):
            pts, _ = voxel_downsample(pts, voxel_size)
        arrays[f"w{w_i}_points"] = pts.astype(np.float32)
        arrays[f"w{w_i}_ego"] = np.asarray(w.ego_positions, dtype=np.float64).reshape(-1, 3)
        actor_rows = []
        for a_i, a in enumerate(w.actors):
            key = f"w{w_i}_a{a_i}"
            arrays[key + "_stamps"] = np.asarray(a.stamps, dtype=np.float64)
            arrays[key + "_poses"] = np.asarray(a.poses, dtype=np.float64)
            arrays[key + "_points"] = np.asarray(a.points, dtype=np.float32).reshape(-1, 3)
            actor_rows.append({"actor_id": int(a.actor_id), "size": [float(x) for x in a.size]})
        index.append({"name": w.name, "world_frame": w.world_frame, "keyframes": kf_rows, "actors": actor_rows})
    header = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "windows": index, "meta": meta or {}}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def read_header(path) -> dict:
    """The cache's JSON header (format, version, window index, meta)."""
    with _open(path) as z:
        return _header(z, path)


def _open(path):
    try:
        return np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WindowCacheError(f"{path}: not a readable window cache ({e})") from e


def _header(z, path) -> dict:
    try:
        header = json.loads(bytes(z["header"]).decode())
    except (KeyError, ValueError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise WindowCacheError(f"{path}: no valid header ({e})") from e
    if header.get("format") != CACHE_FORMAT:
        raise WindowCacheError(f"{path}: not a g3r_ros window cache (format={header.get('format')!r})")
    if header.get("version") != CACHE_VERSION:
        raise WindowCacheError(f"{path}: window cache version {header.get('version')} (this build reads "
                               f"{CACHE_VERSION}); rebuild it with `g3r train-cache`")
    return header


def load_windows(path) -> list[SceneWindow]:
    """Read every window of a cache written by :func:`save_windows`."""
    with _open(path) as z:
        header = _header(z, path)
        windows = []
        try:
            for w_i, row in enumerate(header["windows"]):
                kfs = []
                for k_i, k in enumerate(row["keyframes"]):
                    key = f"w{w_i}_k{k_i}"
                    cam = PinholeCamera(z[key + "_K"], int(k["width"]), int(k["height"]), z[key + "_T"])
                    img = _unpng(z[key + "_png"])
                    if img.shape[:2] != (cam.height, cam.width):
                        raise WindowCacheError(f"{path}: image {key} is {img.shape[1]}x{img.shape[0]}, "
                                               f"expected {cam.width}x{cam.height}")
                    kfs.append(Keyframe(img, cam, float(k["stamp"]), k["camera_name"], bool(k["held_out"]),
                                        int(k["index"])))
                actors = []
                for a_i, a in enumerate(row["actors"]):
                    key = f"w{w_i}_a{a_i}"
                    actors.append(ActorTrack(int(a["actor_id"]), np.asarray(a["size"], dtype=np.float64),
                                             z[key + "_stamps"], z[key + "_poses"], z[key + "_points"]))
                w = SceneWindow(kfs, z[f"w{w_i}_points"], actors=actors, ego_positions=z[f"w{w_i}_ego"],
                                world_frame=row["world_frame"], name=row["name"])
                w.validate()
                windows.append(w)
        except WindowCacheError:
            raise
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise WindowCacheError(f"{path}: damaged window cache ({type(e).__name__}: {e})") from e
    return windows
