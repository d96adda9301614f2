"""Pictures and files a person looks at: view triplets, contact sheets, PSNR-vs-time plots.

All writers are atomic (temp file + rename), so an interrupted run never leaves a
half-written PNG or JSON behind.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_path, atomic_write_text


def write_png(path, image: np.ndarray) -> Path:
    """Write (H,W,3) uint8 (or float in [0,1]) atomically."""
    path = Path(path)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def json_safe(x):
    """``x`` with NaN/inf floats replaced by None and NumPy scalars by Python ones, so that
    ``json.dumps`` writes valid JSON (``null``, never ``NaN``)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return json_safe(x.item())
    return x


def write_json(path, data) -> Path:
    """Write JSON atomically (NaN/inf written as null)."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2) + "\n")


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def contact_sheet(rows: list[list[np.ndarray]], row_labels: list[str], col_labels: list[str], path,
                  title: str | None = None) -> Path:
    """A grid of uint8 images with labels (rows × columns) saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    h, w = rows[0][0].shape[:2]
    scale = 3.2 / max(w / h, 1e-3)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, scale * n_rows / 1.0 + 0.4), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j])
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=9)
            if j == 0 and i < len(row_labels):
                ax.text(-0.02, 0.5, row_labels[i], transform=ax.transAxes, ha="right", va="center", fontsize=8,
                        rotation=90)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def psnr_vs_time_plot(curves: dict[str, tuple[list[float], list[float]]], path, *, title: str,
                      markers: dict[str, tuple[float, float]] | None = None, log_x: bool = True) -> Path:
    """Plot PSNR against wall time for several methods.

    curves: label → (times_s, psnr_db). markers: label → (time_s, psnr_db) single points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, (ts, ps) in curves.items():
        if len(ts):
            ax.plot(ts, ps, marker="." if len(ts) < 60 else None, label=label)
    for label, (t, p) in (markers or {}).items():
        ax.plot([t], [p], marker="*", markersize=12, linestyle="none", label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("wall time [s]")
    ax.set_ylabel("held-out PSNR [dB]")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
