"""The split of a real drive into benchmark, validation and training frames, enforced by code.

A real drive is small, and a network that trains on its frames must never be scored on
them. :class:`RealSplit` names three half-open frame ranges of one KITTI odometry sequence:

- ``benchmark_frames``: scored by ``g3r bench reconstruct``, never trained or validated on;
- ``val_frames``: the validation window that picks the shipped checkpoint;
- ``train_frames``: training windows are cut anywhere inside this range.

:meth:`RealSplit.validate` refuses overlapping ranges, and :func:`check_benchmark_frames`
refuses a benchmark window that touches the training or validation frames recorded with a
model. The LiDAR sees parts of the same street across the split (a scan reaches tens of
metres ahead), so scores on the benchmark window measure transfer to real images and sensors,
not to a new street.

The frames of a range are converted once (``g3r convert kitti-odometry``, both colour
cameras) into a cached rosbag2, and read as one :class:`~g3r_ros.window.SceneWindow`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger(__name__)


def default_kitti_sequence() -> Path:
    """``../shared/data/kitti-odometry-04`` beside the repository (may not exist)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti-odometry-04"


@dataclass
class RealSplit:
    """Frame ranges ``[start, stop)`` of one KITTI odometry sequence (see module doc).

    sequence: the sequence directory ("" = none; "auto" = the KITTI drive beside the
    repository when present). window: the WindowConfig (a mapping, or a YAML name in
    ``config/``) used to read every range. cache_dir: converted bags go here.
    """

    sequence: str = ""
    benchmark_frames: list = field(default_factory=lambda: [0, 12])
    val_frames: list = field(default_factory=lambda: [39, 51])
    train_frames: list = field(default_factory=lambda: [14, 37])
    window: dict | str = "window_kitti.yaml"
    cache_dir: str = "runs/cache"

    def validate(self) -> None:
        ranges = {"benchmark_frames": self.benchmark_frames, "val_frames": self.val_frames,
                  "train_frames": self.train_frames}
        for name, r in ranges.items():
            if len(r) != 2 or not (0 <= int(r[0]) < int(r[1])):
                raise ValueError(f"real.{name} must be [start, stop) with 0 <= start < stop, got {r}")
        names = list(ranges)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if _overlap(ranges[a], ranges[b]):
                    raise ValueError(f"real split: {a} {ranges[a]} and {b} {ranges[b]} overlap; the benchmark, "
                                     "validation and training frames must be disjoint")

    @property
    def enabled(self) -> bool:
        return bool(self.sequence) and self.sequence_path() is not None

    def sequence_path(self) -> Path | None:
        """The sequence directory, or None when it is "auto" and absent."""
        if self.sequence == "auto":
            p = default_kitti_sequence()
            return p if (p / "poses.txt").exists() else None
        p = Path(self.sequence)
        if not (p / "poses.txt").exists():
            raise FileNotFoundError(f"real.sequence: no KITTI odometry sequence at {p}")
        return p

    def to_record(self) -> dict:
        """What a model records of its real data (JSON ready)."""
        seq = self.sequence_path() if self.sequence else None
        return {"sequence": seq.name if seq is not None else self.sequence,
                "benchmark_frames": list(self.benchmark_frames), "val_frames": list(self.val_frames),
                "train_frames": list(self.train_frames)}


def _overlap(a, b) -> bool:
    return int(a[0]) < int(b[1]) and int(b[0]) < int(a[1])


def check_benchmark_frames(frames, record: dict | None) -> None:
    """Refuse a benchmark window ``frames`` ([start, stop)) that overlaps the training or
    validation frames in a model's ``record`` (:meth:`RealSplit.to_record`; None: a model
    trained without real data)."""
    if not record:
        return
    for key in ("train_frames", "val_frames"):
        used = record.get(key)
        if used and _overlap(frames, used):
            raise ValueError(f"benchmark frames {list(frames)} overlap the model's {key} {list(used)}: "
                             "a model is never scored on frames it was trained or validated on")


def range_bag(split: RealSplit, frames, *, right_camera: bool = True, progress: bool = False) -> Path:
    """The cached rosbag2 of ``frames`` ([start, stop)) of the split's sequence (converted once)."""
    from .kitti import convert_kitti_odometry

    seq = split.sequence_path()
    if seq is None:
        raise FileNotFoundError("real.sequence is 'auto' but the KITTI drive is not beside the repository")
    a, b = int(frames[0]), int(frames[1])
    cams = "lr" if right_camera else "l"
    bag = Path(split.cache_dir) / f"{seq.name}_{a}-{b}_{cams}"
    if not (bag / "metadata.yaml").exists():
        bag.parent.mkdir(parents=True, exist_ok=True)
        LOG.info("converting frames [%d, %d) of %s into %s", a, b, seq, bag)
        convert_kitti_odometry(seq, bag, first_frame=a, max_frames=b - a, right_camera=right_camera,
                               progress=progress)
    return bag


def range_window(split: RealSplit, frames, *, cameras: str = "left", name: str | None = None,
                 window_overrides: dict | None = None):
    """One :class:`SceneWindow` of ``frames`` with the split's WindowConfig.

    cameras: "left" (image_2 only) or "both" (image_2 and image_3 as keyframes)."""
    import dataclasses

    from .config import config_path, from_dict, load_yaml
    from .kitti import LEFT_IMAGE_TOPIC, RIGHT_IMAGE_TOPIC
    from .window_builder import WindowConfig, window_from_bag

    if cameras not in ("left", "both"):
        raise ValueError(f"cameras must be 'left' or 'both', got {cameras!r}")
    section = split.window
    if isinstance(section, str):
        path = Path(section) if Path(section).is_file() else config_path(section)
        section = load_yaml(path)
    cfg = from_dict(WindowConfig, {**section, **(window_overrides or {})}, where="real.window")
    topics = [LEFT_IMAGE_TOPIC] + ([RIGHT_IMAGE_TOPIC] if cameras == "both" else [])
    cfg = dataclasses.replace(cfg, camera_topics=topics, window_seconds=None, window_meters=None)
    bag = range_bag(split, frames, right_camera=True)
    w = window_from_bag(bag, cfg)
    w.name = name or f"{Path(bag).name.rsplit('_', 1)[0]}"
    return w
