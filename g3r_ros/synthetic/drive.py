"""``generate_drive``: a whole synthetic drive (scene, images, LiDAR, tracks) into a rosbag2."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..progress import progress_bar as tqdm
from .bagout import write_frame, write_static
from .config import SynthConfig
from .lidar import lidar_scan
from .scene import make_scene
from .truth import render_truth

log = logging.getLogger(__name__)


def generate_drive(out_path, seed: int, config: SynthConfig | None = None, *, progress: bool = True) -> dict:
    """Generate the drive of ``seed`` into a new rosbag2 directory ``out_path``.

    The bag appears only when complete (it is written beside ``out_path`` and renamed).
    Returns a JSON-ready summary. Raises ``ValueError`` (a ``FileExistsError`` too) if
    ``out_path`` exists.
    """
    from ..bag import BagExistsError, DriveBagWriter

    cfg = config or SynthConfig()
    out = Path(out_path)
    if out.exists():
        raise BagExistsError(f"output path exists already, refusing to overwrite: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    scene = make_scene(seed, cfg)
    # Write the bag under its final name inside a private temporary directory, then move it
    # into place: readers never see a partial bag, and the bytes do not depend on the temp name.
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp = tmpdir / out.name
    n_points = 0
    try:
        with DriveBagWriter(tmp, storage=cfg.storage) as w:
            write_static(w, scene)
            for i, stamp in enumerate(tqdm(scene.stamps, desc=f"synth seed {seed}", unit="frame",
                                           disable=not progress, leave=False)):
                images = [render_truth(scene, scene.camera(c, stamp), stamp, recorded=True, camera_index=c)
                          for c in range(len(scene.cameras))]
                scan = lidar_scan(scene, stamp, i) if cfg.lidar else None
                n_points += 0 if scan is None else len(scan.points)
                write_frame(w, scene, stamp, images, scan)
            counts = dict(w.counts)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    log.info("wrote %s: %d frames x %d cameras in %.1f s", out, len(scene.stamps), len(scene.cameras), elapsed)
    return {
        "bag": str(out), "seed": int(seed), "storage": cfg.storage, "frames": len(scene.stamps),
        "cameras": len(scene.cameras), "image_size": [cfg.width, cfg.height],
        "lidar_points": int(n_points), "lidar_points_per_scan": round(n_points / len(scene.stamps), 1),
        "actors": len(scene.actors), "duration_s": round(float(scene.stamps[-1] - scene.stamps[0]), 6),
        "topics": counts, "scene": scene.describe(), "elapsed_s": round(elapsed, 2),
    }
