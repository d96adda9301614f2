"""Rigid transforms, quaternions and pinhole cameras.

Conventions (see docs/ARCHITECTURE.md):
- Transforms are 4x4 homogeneous matrices named ``T_target_source``: they map points
  expressed in ``source`` into ``target`` (``p_target = T_target_source @ p_source``).
- Quaternions are ``(w, x, y, z)``, as in transforms3d and gsplat. ROS messages store
  ``(x, y, z, w)``; convert at the message boundary with :func:`quat_xyzw_to_wxyz`.
- Bodies follow REP-103 (x forward, y left, z up). Camera optical frames follow the
  OpenCV/ROS optical convention (x right, y down, z forward).
- ``T_world_cam`` is a camera pose (camera-to-world). Its inverse ``T_cam_world`` is the
  world-to-camera *view matrix* that gsplat calls ``viewmats``.

NumPy functions work on float64 for bookkeeping; torch functions are batched and
differentiable, for the renderer and the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import transforms3d.quaternions as tq

if TYPE_CHECKING:  # torch is imported lazily: message decoding and TF need only numpy
    import torch

# Rotation from a REP-103 body frame (x fwd, y left, z up) to an optical frame
# (x right, y down, z fwd): columns are the optical axes expressed in the body frame.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# ---------------------------------------------------------------------------------------
# NumPy SE(3) / quaternion helpers
# ---------------------------------------------------------------------------------------
def make_transform(rotation: np.ndarray | None = None, translation=None) -> np.ndarray:
    """Build a 4x4 transform from a (3,3) rotation and a (3,) translation."""
    T = np.eye(4)
    if rotation is not None:
        T[:3, :3] = rotation
    if translation is not None:
        T[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (or a stack (...,4,4) of them), without a general inverse."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T_target_source`` (4,4) to ``points`` (N,3) in source; returns (N,3) in target.

    Keeps the points' float dtype. einsum, not ``@``: (N,3)@(3,3) takes a slow BLAS path on
    this CPU (measured ~4-10x slower at 120k points).
    """
    points = np.asarray(points)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    return np.einsum("ij,nj->ni", T[:3, :3].astype(points.dtype), points) + T[:3, 3].astype(points.dtype)


def quat_xyzw_to_wxyz(q) -> np.ndarray:
    """ROS (x,y,z,w) → (w,x,y,z)."""
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., 3:4], q[..., :3]], axis=-1)


def quat_wxyz_to_xyzw(q) -> np.ndarray:
    """(w,x,y,z) → ROS (x,y,z,w)."""
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def quat_to_rotmat(q_wxyz) -> np.ndarray:
    """Unit quaternion (w,x,y,z) → (3,3) rotation. Normalizes; raises on a zero quaternion."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"invalid quaternion {q}")
    return tq.quat2mat(q / n)


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """(3,3) rotation → unit quaternion (w,x,y,z) with w >= 0."""
    q = tq.mat2quat(np.asarray(R, dtype=np.float64))
    return q if q[0] >= 0 else -q


def pose_to_transform(translation, q_wxyz) -> np.ndarray:
    """Translation (3,) + quaternion (w,x,y,z) → 4x4 transform."""
    return make_transform(quat_to_rotmat(q_wxyz), translation)


def transform_to_pose(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 transform → (translation (3,), quaternion (w,x,y,z))."""
    return np.array(T[:3, 3], dtype=np.float64), rotmat_to_quat(T[:3, :3])


def slerp(q0, q1, u: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (w,x,y,z), u in [0,1]."""
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + u * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    s = np.sin(theta)
    return (np.sin((1 - u) * theta) * q0 + np.sin(u * theta) * q1) / s


def interpolate_transform(T0: np.ndarray, T1: np.ndarray, u: float) -> np.ndarray:
    """Interpolate rigid transforms: lerp of translation, slerp of rotation, u in [0,1]."""
    t = (1 - u) * T0[:3, 3] + u * T1[:3, 3]
    q = slerp(rotmat_to_quat(T0[:3, :3]), rotmat_to_quat(T1[:3, :3]), u)
    return pose_to_transform(t, q)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Optical-frame camera pose ``T_world_cam`` at ``eye`` looking at ``target`` (world, z up)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: view direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye)


# ---------------------------------------------------------------------------------------
# Pinhole cameras
# ---------------------------------------------------------------------------------------
@dataclass
class PinholeCamera:
    """A rectified pinhole camera.

    K: (3,3) intrinsics in pixels. width, height: image size in pixels.
    T_world_cam: (4,4) pose of the optical frame (x right, y down, z forward) in world.
    """

    K: np.ndarray
    width: int
    height: int
    T_world_cam: np.ndarray

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.T_world_cam = np.asarray(self.T_world_cam, dtype=np.float64).reshape(4, 4)
        self.width = int(self.width)
        self.height = int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (np.isfinite(self.K).all() and np.isfinite(self.T_world_cam).all()):
            raise ValueError("camera K / pose contain NaN or Inf")

    @property
    def T_cam_world(self) -> np.ndarray:
        """World-to-camera view matrix (gsplat ``viewmats``)."""
        return invert_transform(self.T_world_cam)

    @property
    def center(self) -> np.ndarray:
        return self.T_world_cam[:3, 3].copy()

    def scaled(self, factor: float) -> PinholeCamera:
        """The same camera at ``factor`` times the resolution (K scaled accordingly)."""
        w = max(1, int(round(self.width * factor)))
        h = max(1, int(round(self.height * factor)))
        sx, sy = w / self.width, h / self.height
        K = self.K.copy()
        K[0, :] *= sx
        K[1, :] *= sy
        return PinholeCamera(K, w, h, self.T_world_cam.copy())

    def with_pose(self, T_world_cam: np.ndarray) -> PinholeCamera:
        return PinholeCamera(self.K.copy(), self.width, self.height, T_world_cam)

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project (N,3) world points → (uv (N,2) pixels, depth (N,) along optical z)."""
        pc = transform_points(self.T_cam_world, np.asarray(points_world, dtype=np.float64))
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (pc[:, :2] / z[:, None]) * np.diag(self.K)[:2] + self.K[:2, 2]
        return uv, z


@dataclass
class CameraBatch:
    """A batch of C pinhole cameras sharing one image size, as torch tensors.

    Ks: (C,3,3). viewmats: (C,4,4) world-to-camera (``T_cam_world``). width, height: ints.
    """

    Ks: torch.Tensor
    viewmats: torch.Tensor
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.Ks.shape[0])

    @staticmethod
    def from_cameras(cameras, device=None, dtype=None) -> CameraBatch:
        """Stack ``PinholeCamera`` objects (all the same size) into a batch (float32 default)."""
        import torch

        dtype = dtype or torch.float32
        cameras = list(cameras)
        if not cameras:
            raise ValueError("CameraBatch needs at least one camera")
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cameras in one batch must share the image size, got {sorted(sizes)}")
        w, h = sizes.pop()
        Ks = torch.as_tensor(np.stack([c.K for c in cameras]), dtype=dtype, device=device)
        vm = torch.as_tensor(np.stack([c.T_cam_world for c in cameras]), dtype=dtype, device=device)
        return CameraBatch(Ks, vm, w, h)

    def to(self, device=None, dtype=None) -> CameraBatch:
        return CameraBatch(self.Ks.to(device=device, dtype=dtype), self.viewmats.to(device=device, dtype=dtype),
                           self.width, self.height)

    def __getitem__(self, idx) -> CameraBatch:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return CameraBatch(self.Ks[idx], self.viewmats[idx], self.width, self.height)


# ---------------------------------------------------------------------------------------
# Torch (batched, differentiable) helpers
# ---------------------------------------------------------------------------------------
def quat_to_rotmat_torch(quats: torch.Tensor) -> torch.Tensor:
    """(N,4) quaternions (w,x,y,z), not necessarily unit → (N,3,3) rotations."""
    import torch

    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def quat_multiply_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (...,4) quaternions (w,x,y,z): the rotation ``a`` after ``b``."""
    import torch

    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )
