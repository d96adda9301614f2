"""Image and LiDAR statistics that compare a set of synthetic frames with a set of real ones.

Pure numpy functions, used by ``g3r bench synth-gap`` (see docs/DATA.md, "How far the synthetic
streets are from KITTI"). Images are (H,W,3) uint8 RGB; scans are (N,3) float points in the
sensor frame (x forward, y left, z up) with (N,) intensities in [0,1].

Every statistic is computed per image (or per scan) or pooled over a set; the *gap* between
two sets is a distance that is 0 for identical distributions and grows with the difference:
``|mean_a - mean_b|`` for per-image scalars, the 1-D Wasserstein distance for pooled
values, the total-variation distance for histograms.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
QUANTILES = np.linspace(0.0025, 0.9975, 200)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an exact area-average resampling of a 1-D signal."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got {n_in} -> {n_out}")
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H,W,C) or (H,W) image → (height,width[,C]) float64 by area averaging (any scale factor,
    anisotropic allowed). Values keep their units."""
    a = np.asarray(img, dtype=np.float64)
    wy = area_weights(a.shape[0], height)
    wx = area_weights(a.shape[1], width)
    if a.ndim == 2:
        return wy @ a @ wx.T
    return np.einsum("ij,jkc,lk->ilc", wy, a, wx, optimize=True)


def luminance(rgb01: np.ndarray) -> np.ndarray:
    """(H,W,3) display values in [0,1] → (H,W) luma (Rec. 709 weights on the encoded values)."""
    return rgb01[..., 0] * 0.2126 + rgb01[..., 1] * 0.7152 + rgb01[..., 2] * 0.0722


def w1(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein distance between two samples (mean gap between their quantile functions)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if not len(a) or not len(b):
        return float("nan")
    return float(np.mean(np.abs(np.quantile(a, QUANTILES) - np.quantile(b, QUANTILES))))


def tv_distance(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    """Total-variation distance (0..1) between the normalized histograms of two samples."""
    ha, _ = np.histogram(a, bins=bins)
    hb, _ = np.histogram(b, bins=bins)
    if ha.sum() == 0 or hb.sum() == 0:
        return float("nan")
    return float(0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum())


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(x, size=k, mode="reflect")


# ---------------------------------------------------------------------------------------
# Per-image statistics
# ---------------------------------------------------------------------------------------
def spectrum_slope(Y: np.ndarray, f_lo: float = 0.02, f_hi: float = 0.35) -> float:
    """Slope of log10 power vs log10 spatial frequency (cycles/pixel) of luma ``Y`` (H,W),
    Hann-windowed, radially averaged in 24 log-spaced bands of [f_lo, f_hi]. Natural images
    are near -2; smooth (blurry, flat-shaded) images are steeper, noisy ones flatter."""
    H, W = Y.shape
    win = np.hanning(H)[:, None] * np.hanning(W)[None, :]
    P = np.abs(np.fft.fft2((Y - Y.mean()) * win)) ** 2
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.fftfreq(W)[None, :]
    f = np.hypot(fx, fy)
    edges = np.geomspace(f_lo, f_hi, 25)
    idx = np.digitize(f.ravel(), edges) - 1
    ok = (idx >= 0) & (idx < 24)
    sums = np.bincount(idx[ok], weights=P.ravel()[ok], minlength=24)
    counts = np.bincount(idx[ok], minlength=24)
    good = counts > 0
    fc = np.sqrt(edges[:-1] * edges[1:])[good]
    p = sums[good] / counts[good]
    return float(np.polyfit(np.log10(fc), np.log10(p + 1e-20), 1)[0])


def log_gradient(Y: np.ndarray) -> np.ndarray:
    """log10 of the gradient magnitude of luma (forward differences, [0,1] units; floor 1e-3)."""
    gx = np.diff(Y, axis=1)[:-1, :]
    gy = np.diff(Y, axis=0)[:, :-1]
    return np.log10(np.hypot(gx, gy) + 1e-3).ravel()


def saturation(rgb01: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max per pixel (0 for black)."""
    mx = rgb01.max(axis=-1)
    mn = rgb01.min(axis=-1)
    return np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0).ravel()


def band_contrast(Y: np.ndarray, k: int = 5) -> list[float]:
    """Mean local contrast (std of luma in kxk windows) in the top, middle and bottom thirds."""
    m = _box_mean(Y, k)
    s = np.sqrt(np.maximum(_box_mean(Y * Y, k) - m * m, 0.0))
    H = Y.shape[0]
    cuts = [0, H // 3, (2 * H) // 3, H]
    return [float(s[cuts[i]:cuts[i + 1]].mean()) for i in range(3)]


def noise_sigma(Y: np.ndarray) -> float:
    """Immerkaer's (1996) fast estimate of the std of white noise in luma ``Y`` ([0,1] units,
    returned in 8-bit levels): the mean absolute response of a Laplacian-difference kernel
    that cancels linear image structure."""
    from scipy.signal import convolve2d

    k = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    r = convolve2d(Y, k, mode="valid")
    H, W = Y.shape
    return float(np.sqrt(np.pi / 2.0) * np.abs(r).sum() / (6.0 * (W - 2) * (H - 2)) * 255.0)


def blockiness(Y: np.ndarray, block: int = 8) -> float:
    """JPEG blocking: mean |horizontal + vertical luma step| across 8-pixel block borders over
    the mean step elsewhere (1.0: no block structure)."""
    dx = np.abs(np.diff(Y, axis=1))
    dy = np.abs(np.diff(Y, axis=0))
    bx = (np.arange(dx.shape[1]) % block) == block - 1
    by = (np.arange(dy.shape[0]) % block) == block - 1
    on = np.concatenate([dx[:, bx].ravel(), dy[by, :].ravel()])
    off = np.concatenate([dx[:, ~bx].ravel(), dy[~by, :].ravel()])
    return float(on.mean() / max(off.mean(), 1e-9))


def image_features(img: np.ndarray, size: tuple[int, int]) -> dict:
    """Statistics of one uint8 RGB image. Pooled samples (``*_values``) and scalars are computed
    at the common ``size`` (width, height) after area resampling; ``blockiness`` at the native
    size (resampling would hide the 8x8 grid)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H,W,3) uint8 image, got {img.shape} {img.dtype}")
    native_Y = luminance(img.astype(np.float64) / 255.0)
    rgb = resize_area(img, *size) / 255.0
    Y = luminance(rgb)
    return {
        "spectrum_slope": spectrum_slope(Y),
        "noise_sigma": noise_sigma(Y),
        "blockiness": blockiness(native_Y),
        "contrast": band_contrast(Y),
        "mean_rgb": rgb.reshape(-1, 3).mean(0),
        "std_rgb": rgb.reshape(-1, 3).std(0),
        "log_gradient_values": log_gradient(Y),
        "luma_values": Y.ravel(),
        "saturation_values": saturation(rgb),
    }


IMAGE_STATS = ("spectrum_slope", "log_gradient_w1", "luma_w1", "saturation_w1", "colour_mean_dist",
               "colour_std_dist", "contrast_top", "contrast_middle", "contrast_bottom", "noise_sigma",
               "blockiness")


def image_set_summary(feats: list[dict]) -> dict:
    """Set-level values of the per-image statistics (means; pooled samples kept for distances)."""
    if not feats:
        raise ValueError("no images")
    c = np.array([f["contrast"] for f in feats])
    return {
        "n": len(feats),
        "spectrum_slope": float(np.mean([f["spectrum_slope"] for f in feats])),
        "noise_sigma": float(np.mean([f["noise_sigma"] for f in feats])),
        "blockiness": float(np.mean([f["blockiness"] for f in feats])),
        "contrast_top": float(c[:, 0].mean()), "contrast_middle": float(c[:, 1].mean()),
        "contrast_bottom": float(c[:, 2].mean()),
        "mean_rgb": np.mean([f["mean_rgb"] for f in feats], axis=0),
        "std_rgb": np.mean([f["std_rgb"] for f in feats], axis=0),
        "log_gradient_values": np.concatenate([f["log_gradient_values"] for f in feats]),
        "luma_values": np.concatenate([f["luma_values"] for f in feats]),
        "saturation_values": np.concatenate([f["saturation_values"] for f in feats]),
    }


def image_gaps(a: dict, b: dict) -> dict:
    """Distances between two image-set summaries, one per name in ``IMAGE_STATS``."""
    out = {k: abs(a[k] - b[k]) for k in ("spectrum_slope", "noise_sigma", "blockiness", "contrast_top",
                                          "contrast_middle", "contrast_bottom")}
    out["log_gradient_w1"] = w1(a["log_gradient_values"], b["log_gradient_values"])
    out["luma_w1"] = w1(a["luma_values"], b["luma_values"])
    out["saturation_w1"] = w1(a["saturation_values"], b["saturation_values"])
    out["colour_mean_dist"] = float(np.linalg.norm(a["mean_rgb"] - b["mean_rgb"]))
    out["colour_std_dist"] = float(np.linalg.norm(a["std_rgb"] - b["std_rgb"]))
    return {k: float(out[k]) for k in IMAGE_STATS}


def image_spread(feats: list[dict], summary: dict) -> dict:
    """How much the frames of one (real) set differ among themselves, per statistic of
    ``IMAGE_STATS``: the std over frames of per-image scalars, the norm of the per-channel std
    of the colour means/stds, and for pooled values the mean W1 of one frame to the pooled set.
    Gaps divided by these are in units of "real frames' own spread"."""
    c = np.array([f["contrast"] for f in feats])
    out = {k: float(np.std([f[k] for f in feats])) for k in ("spectrum_slope", "noise_sigma", "blockiness")}
    out.update(contrast_top=float(c[:, 0].std()), contrast_middle=float(c[:, 1].std()),
               contrast_bottom=float(c[:, 2].std()))
    out["colour_mean_dist"] = float(np.linalg.norm(np.std([f["mean_rgb"] for f in feats], axis=0)))
    out["colour_std_dist"] = float(np.linalg.norm(np.std([f["std_rgb"] for f in feats], axis=0)))
    for k, v in (("log_gradient_w1", "log_gradient_values"), ("luma_w1", "luma_values"),
                 ("saturation_w1", "saturation_values")):
        out[k] = float(np.mean([w1(f[v], summary[v]) for f in feats]))
    return {k: out[k] for k in IMAGE_STATS}


def image_values(s: dict) -> dict:
    """The JSON-ready scalars of an image-set summary."""
    return {
        "n": s["n"], "spectrum_slope": s["spectrum_slope"], "noise_sigma": s["noise_sigma"],
        "blockiness": s["blockiness"], "contrast_top": s["contrast_top"], "contrast_middle": s["contrast_middle"],
        "contrast_bottom": s["contrast_bottom"], "mean_rgb": [float(v) for v in s["mean_rgb"]],
        "std_rgb": [float(v) for v in s["std_rgb"]],
        "luma_median": float(np.median(s["luma_values"])),
        "luma_dark_fraction": float(np.mean(s["luma_values"] < 0.05)),
        "luma_bright_fraction": float(np.mean(s["luma_values"] > 0.95)),
        "log_gradient_median": float(np.median(s["log_gradient_values"])),
        "saturation_median": float(np.median(s["saturation_values"])),
    }


# ---------------------------------------------------------------------------------------
# LiDAR statistics
# ---------------------------------------------------------------------------------------
ELEV_BINS = np.arange(-27.0, 5.0001, 0.2)
RING_BANDS = ((5.0, 10.0), (10.0, 20.0), (20.0, 30.0))


def ground_ring_spacing(points: np.ndarray, strip: float = 1.0, gap: float = 0.12) -> dict:
    """Spacing of the LiDAR rings on the road ahead: returns in a strip |y| < ``strip`` m ahead
    of the sensor whose height is within 0.25 m of the strip's median ground height are sorted
    by horizontal distance (a ring of a level sensor is a circle on flat ground) and split
    into rings wherever two consecutive returns are more than ``gap`` m apart; the median
    distance between consecutive ring centres is reported per band of distance
    (``RING_BANDS``). A band without two rings gives NaN."""
    p = np.asarray(points, dtype=np.float64)
    sel = (np.abs(p[:, 1]) < strip) & (p[:, 0] > 3.0) & (p[:, 0] < 35.0) & (p[:, 2] < -0.8)
    q = p[sel]
    out = {f"{lo:g}-{hi:g}m": float("nan") for lo, hi in RING_BANDS}
    if len(q) < 20:
        return out
    near = q[q[:, 0] < 12.0]
    z0 = np.median((near if len(near) >= 10 else q)[:, 2])
    q = q[np.abs(q[:, 2] - z0) < 0.25]
    x = np.sort(np.hypot(q[:, 0], q[:, 1]))
    cuts = np.flatnonzero(np.diff(x) > gap) + 1
    centres = np.array([c.mean() for c in np.split(x, cuts) if len(c) >= 2])
    if len(centres) < 2:
        return out
    mid = 0.5 * (centres[1:] + centres[:-1])
    spacing = np.diff(centres)
    for lo, hi in RING_BANDS:
        m = (mid >= lo) & (mid < hi)
        if m.sum() >= 1:
            out[f"{lo:g}-{hi:g}m"] = float(np.median(spacing[m]))
    return out


def ordered_scan_rings(points: np.ndarray, min_points: int = 100) -> tuple[int, float]:
    """For a scan stored laser by laser, each in azimuth order (KITTI's Velodyne ``.bin``
    files): (number of rings, median azimuth step in degrees). Rings are split where the
    azimuth jumps by more than 180 deg; runs under ``min_points`` (partial rings) are ignored."""
    p = np.asarray(points, dtype=np.float64)
    az = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
    cuts = np.flatnonzero(np.abs(np.diff(az)) > 180.0) + 1
    steps = [np.median(np.abs(np.diff(az[r]))) for r in np.split(np.arange(len(p)), cuts) if len(r) >= min_points]
    return len(steps), float(np.median(steps)) if steps else float("nan")


def road_range_residual(points: np.ndarray, strip: float = 1.5) -> float:
    """Range noise on the road: returns ahead (|y| < ``strip`` m, 4-15 m) within 0.3 m of the
    median ground height get a least-squares plane z = a + b x + c y; the robust std
    (1.4826 MAD) of their height residuals divided by |sin(elevation)| is the spread along the
    beams, in metres (range noise plus the road's own roughness). NaN with under 50 returns."""
    p = np.asarray(points, dtype=np.float64)
    sel = (np.abs(p[:, 1]) < strip) & (p[:, 0] > 4.0) & (p[:, 0] < 15.0) & (p[:, 2] < -0.8)
    q = p[sel]
    if len(q) < 50:
        return float("nan")
    q = q[np.abs(q[:, 2] - np.median(q[:, 2])) < 0.3]
    if len(q) < 50:
        return float("nan")
    A = np.stack([np.ones(len(q)), q[:, 0], q[:, 1]], axis=1)
    coef, *_ = np.linalg.lstsq(A, q[:, 2], rcond=None)
    res = q[:, 2] - A @ coef
    sin_el = np.abs(q[:, 2]) / np.linalg.norm(q, axis=1)
    r = res / np.maximum(sin_el, 1e-3)
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def scan_features(points: np.ndarray, intensity: np.ndarray) -> dict:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    r = np.linalg.norm(p, axis=1)
    ok = r > 1e-6
    p, r = p[ok], r[ok]
    return {
        "points": int(len(p)),
        "elevation_values": np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))),
        "log_range_values": np.log10(r),
        "intensity_values": np.asarray(intensity, dtype=np.float64).reshape(-1)[ok],
        "ring_spacing": ground_ring_spacing(p),
        "road_residual": road_range_residual(p),
    }


LIDAR_STATS = ("points_log_ratio", "elevation_w1", "elevation_tv", "log_range_w1", "ring_spacing_log_ratio",
               "road_residual", "intensity_w1")


def lidar_set_summary(feats: list[dict]) -> dict:
    if not feats:
        raise ValueError("no scans")
    bands = list(feats[0]["ring_spacing"])
    return {
        "n": len(feats),
        "points_per_scan": float(np.mean([f["points"] for f in feats])),
        "elevation_values": np.concatenate([f["elevation_values"] for f in feats]),
        "log_range_values": np.concatenate([f["log_range_values"] for f in feats]),
        "intensity_values": np.concatenate([f["intensity_values"] for f in feats]),
        "road_residual": float(np.nanmean([f["road_residual"] for f in feats]))
        if np.isfinite([f["road_residual"] for f in feats]).any() else float("nan"),
        "ring_spacing": {b: float(np.nanmedian([f["ring_spacing"][b] for f in feats]))
                         if np.isfinite([f["ring_spacing"][b] for f in feats]).any() else float("nan")
                         for b in bands},
    }


def lidar_gaps(a: dict, b: dict) -> dict:
    """Distances between two scan-set summaries, one per name in ``LIDAR_STATS``."""
    rs = [abs(np.log(a["ring_spacing"][k] / b["ring_spacing"][k])) for k in a["ring_spacing"]
          if np.isfinite(a["ring_spacing"][k]) and np.isfinite(b["ring_spacing"][k])]
    return {
        "points_log_ratio": float(abs(np.log(max(a["points_per_scan"], 1.0) / max(b["points_per_scan"], 1.0)))),
        "elevation_w1": w1(a["elevation_values"], b["elevation_values"]),
        "elevation_tv": tv_distance(a["elevation_values"], b["elevation_values"], ELEV_BINS),
        "log_range_w1": w1(a["log_range_values"], b["log_range_values"]),
        "ring_spacing_log_ratio": float(np.mean(rs)) if rs else float("nan"),
        "road_residual": float(abs(a["road_residual"] - b["road_residual"])),
        "intensity_w1": w1(a["intensity_values"], b["intensity_values"]),
    }


def lidar_spread(feats: list[dict], summary: dict) -> dict:
    """As :func:`image_spread` for ``LIDAR_STATS`` (per-scan std of log point counts, of the
    road residual and of log ring spacings (mean over bands); mean per-scan W1 to the pool)."""
    out = {"points_log_ratio": float(np.std(np.log([max(f["points"], 1) for f in feats]))),
           "road_residual": float(np.nanstd([f["road_residual"] for f in feats]))}
    for k, v in (("elevation_w1", "elevation_values"), ("log_range_w1", "log_range_values"),
                 ("intensity_w1", "intensity_values")):
        out[k] = float(np.mean([w1(f[v], summary[v]) for f in feats]))
    out["elevation_tv"] = float(np.mean([tv_distance(f["elevation_values"], summary["elevation_values"], ELEV_BINS)
                                         for f in feats]))
    bands = list(feats[0]["ring_spacing"])
    stds = [np.nanstd(np.log([f["ring_spacing"][b] for f in feats])) for b in bands]
    out["ring_spacing_log_ratio"] = float(np.nanmean(stds)) if np.isfinite(stds).any() else float("nan")
    return {k: out[k] for k in LIDAR_STATS}


def relative_gaps(gaps: dict, ref: dict, spread: dict, cap: float = 3.0) -> dict:
    """Each gap against a reference variant's: (gap + spread) / (ref + spread), capped at
    ``cap``. Adding the real set's own spread makes differences smaller than the variation
    among real frames count as no difference; the cap keeps one statistic from dominating."""
    out = {}
    for k, g in gaps.items():
        r, sc = ref.get(k, float("nan")), spread.get(k, float("nan"))
        ok = np.isfinite(g) and np.isfinite(r) and np.isfinite(sc) and r + sc > 0
        out[k] = float(min((g + sc) / (r + sc), cap)) if ok else float("nan")
    return out


def gap_score(rel: dict) -> float:
    """Mean of the relative gaps (1: as far from the real frames as the reference; smaller: closer)."""
    v = [x for x in rel.values() if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def lidar_values(s: dict) -> dict:
    return {
        "n": s["n"], "points_per_scan": round(s["points_per_scan"], 1),
        "elevation_deg_p5_p50_p95": [float(v) for v in np.percentile(s["elevation_values"], [5, 50, 95])],
        "range_m_p5_p50_p95": [float(v) for v in 10 ** np.percentile(s["log_range_values"], [5, 50, 95])],
        "intensity_median": float(np.median(s["intensity_values"])),
        "ring_spacing_m": s["ring_spacing"],
        "road_residual_m": s["road_residual"],
    }
