"""A contact sheet of a synthetic drive: camera frames, lane-shifted views, a depth map and a
bird's-eye view of the map (road, buildings, trees, parked and moving cars, ego trajectory,
LiDAR points). Rendered with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..geometry import transform_points
from .lidar import lidar_scan
from .primitives import box_corners
from .scene import SyntheticScene
from .truth import lane_shifted_camera, render_truth, render_truth_depth


def _road_to_map(scene: SyntheticScene, xy: np.ndarray) -> np.ndarray:
    p = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
    return transform_points(scene.T_map_road, p)[:, :2]


def _footprint(scene: SyntheticScene, bounds: np.ndarray, T=None) -> np.ndarray:
    """The (4,2) map-frame footprint of a local AABB posed by T (road frame, None: identity)."""
    c = box_corners(bounds)[[0, 1, 3, 2], :]
    if T is not None:
        c = c @ T[:3, :3].T + T[:3, 3]
    return transform_points(scene.T_map_road, c)[:, :2]


def draw_birdseye(ax, scene: SyntheticScene, lidar_frames=(0,), margin: float = 25.0) -> None:
    """Draw the map-frame bird's-eye view of ``scene`` on a matplotlib axis."""
    from matplotlib.patches import Circle, Polygon

    lay, geom = scene.layout, scene.geometry
    ego = np.stack([scene.ego_pose(s)[:2, 3] for s in scene.stamps])
    se = scene.street_coords(np.concatenate([ego, np.zeros((len(ego), 1))], axis=1))[:, 0]
    ahead = np.linspace(se.min() - margin, se.max() + 3 * margin, 50)
    view = _road_to_map(scene, np.stack(lay.plan.centre.to_world(ahead, np.zeros_like(ahead)), 1))
    x_lo, x_hi = view[:, 0].min(), view[:, 0].max()
    ax.set_facecolor(np.clip(lay.yard * 0.9 + 0.1, 0, 1))
    plan = lay.plan
    walk = (lay.sidewalk_left, lay.sidewalk_right)
    s = np.linspace(lay.x_lo, lay.x_hi, 400)

    def band(d0, d1):
        x0, y0 = plan.centre.to_world(s, np.full_like(s, d0))
        x1, y1 = plan.centre.to_world(s[::-1], np.full_like(s, d1))
        return np.concatenate([np.stack([x0, y0], 1), np.stack([x1, y1], 1)])

    for y0, y1, col in ((lay.y_right - walk[1], lay.y_left + walk[0], lay.paving),
                        (lay.y_right, lay.y_left, lay.asphalt)):
        ax.add_patch(Polygon(_road_to_map(scene, band(y0, y1)), closed=True, color=np.clip(col, 0, 1), lw=0))
    for c in plan.crossings:
        T = plan.centre.frame(c.s)
        for arm in c.sides:
            for w, col in ((c.half_width + c.walk, lay.paving), (c.half_width, lay.asphalt)):
                q = np.array([[-w, 0.0], [w, 0.0], [w, arm * 90.0], [-w, arm * 90.0]])
                xy = q @ T[:2, :2].T + T[:2, 3]
                ax.add_patch(Polygon(_road_to_map(scene, xy), closed=True, color=np.clip(col, 0, 1), lw=0))
    n = lay.lanes_per_dir
    lines = [(0.0, "y", "-")] + [(sg * k * lay.lane_width, "w", "--" if k < n else "-")
                                 for sg in (-1, 1) for k in range(1, n + 1)]
    for y, colour, style in lines:
        line = _road_to_map(scene, np.stack(plan.centre.to_world(s, np.full_like(s, y)), 1))
        ax.plot(line[:, 0], line[:, 1], color=colour, lw=0.6, ls=style)
    for g in geom.groups:
        if g.actor >= 0:
            continue
        prm = geom.params[g.start]
        if g.label == "building":
            ax.add_patch(Polygon(_footprint(scene, g.bounds, g.pose), closed=True, fc=np.clip(prm[:3], 0, 1), ec="k",
                                 lw=0.3))
        elif g.label == "parked_car":
            ax.add_patch(Polygon(_footprint(scene, g.bounds, g.pose), closed=True, fc=np.clip(prm[:3], 0, 1),
                                 ec="k", lw=0.3))
        else:
            c = _footprint(scene, g.bounds, g.pose).mean(axis=0)
            if g.label == "tree":
                r = (g.bounds[3] - g.bounds[0]) / 2
                ax.add_patch(Circle(c, r, fc=(0.2, 0.5, 0.2, 0.7), ec="darkgreen", lw=0.3))
            else:
                ax.plot(c[0], c[1], "k.", ms=2)
    pts = []
    for i in lidar_frames:
        scan = lidar_scan(scene, scene.stamps[i], i)
        pts.append(transform_points(scene.lidar_pose(scene.stamps[i]), scan.points.astype(np.float64)))
    if pts:
        P = np.concatenate(pts)
        P = P[P[:, 2] > 0.3]          # above the kerbs: objects, not the ground
        ax.scatter(P[:, 0], P[:, 1], c=P[:, 2], s=0.6, cmap="turbo", vmin=0.0, vmax=8.0, lw=0, alpha=0.9,
                   label="LiDAR returns above 0.3 m")
    for a in scene.actors:
        track = np.stack([scene.actor_pose(a.actor_id, s)[:2, 3] for s in scene.stamps])
        ax.plot(track[:, 0], track[:, 1], "-", color="orange", lw=1.0)
        for s in (scene.stamps[0], scene.stamps[-1]):
            T = scene.T_road_map @ scene.actor_pose(a.actor_id, s)
            b = np.concatenate([-a.size / 2, a.size / 2])
            ax.add_patch(Polygon(_footprint(scene, b, T), closed=True, fc=np.clip(a.paint, 0, 1), ec="orange", lw=0.8))
        ax.annotate(f"actor {a.actor_id}", track[-1], color="orange", fontsize=6)
    ax.plot(ego[:, 0], ego[:, 1], "r-", lw=1.5, label="ego (base_link)")
    ax.plot(ego[0, 0], ego[0, 1], "ro", ms=3)
    ax.set_xlim(x_lo, x_hi)
    yc = 0.5 * (view[:, 1].min() + view[:, 1].max())
    half = max((x_hi - x_lo) * 0.14, 0.5 * np.ptp(view[:, 1]) + 15.0, 22.0)
    ax.set_ylim(yc - half, yc + half)
    ax.set_aspect("equal")
    ax.set_title("bird's-eye view (map frame): street, objects, actor tracks (orange), LiDAR by height", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(loc="upper left", fontsize=6)


def write_preview(scene: SyntheticScene, path, shift_m: float = 2.0) -> Path:
    """Write the contact sheet PNG to ``path`` (atomically) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    F = len(scene.stamps)
    picks = sorted({0, F // 2, F - 1})
    mid = scene.stamps[F // 2]
    panels = [(f"cam0 frame {i}", render_truth(scene, scene.camera(0, scene.stamps[i]), scene.stamps[i]))
              for i in picks]
    cam = scene.camera(0, mid)
    for m in (shift_m, -shift_m):
        side = "left" if m > 0 else "right"
        panels.append((f"lane shift {abs(m):g} m {side} (frame {F // 2})",
                       render_truth(scene, lane_shifted_camera(cam, m), mid)))
    for c in range(1, len(scene.cameras)):
        panels.append((f"cam{c} frame {F // 2}", render_truth(scene, scene.camera(c, mid), mid)))
    depth = render_truth_depth(scene, cam, mid)
    panels.append((f"depth cam0 frame {F // 2} (m, log)", depth))
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    aspect = scene.cameras[0].height / scene.cameras[0].width
    fig = plt.figure(figsize=(12, 4.0 * rows * aspect + 4.2), dpi=110)
    gs = fig.add_gridspec(rows + 1, cols, height_ratios=[4.0 * aspect] * rows + [4.0])
    for k, (title, img) in enumerate(panels):
        ax = fig.add_subplot(gs[k // cols, k % cols])
        if img.ndim == 2:
            d = np.where(np.isfinite(img), img, np.nan)
            ax.imshow(np.log10(np.clip(d, 0.5, None)), cmap="magma_r")
        else:
            ax.imshow(img)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(gs[rows, :])
    draw_birdseye(ax, scene, lidar_frames=picks)
    d = scene.describe()
    fig.suptitle(f"synthetic drive: seed {scene.seed}, {d['lanes_per_direction']} lane(s)/direction, "
                 f"ego {d['ego_speed_mps']} m/s, sun {d['sun_elevation_deg']} deg, {d['colour_temperature_k']:.0f} K, "
                 f"{len(scene.actors)} moving actors", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path
