"""3DGS PLY export/import (graphdeco layout), PointCloud2 fields and ``g3r render``."""

import json
import os

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from g3r_ros import export
from g3r_ros.export import (
    PLY_COLUMNS,
    SH_C0,
    pointcloud_field_layout,
    pointcloud_fields,
    read_ply,
    unpack_rgb,
    write_ply,
)
from g3r_ros.geometry import CameraBatch, PinholeCamera, look_at
from g3r_ros.render.types import GaussianParams


def make_params(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 4.0, 1.0]) + torch.tensor([4.0, -2.0, 0.0])
    quats = torch.randn(n, 4, generator=g)
    log_scales = torch.log(torch.rand(n, 3, generator=g) * 0.1 + 0.03)
    opacity = torch.randn(n, generator=g)
    rgb = torch.rand(n, 3, generator=g)
    return GaussianParams(means, quats, log_scales, opacity, rgb)


def camera():
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    return PinholeCamera(K, 64, 48, look_at((0.0, 0.0, 1.0), (6.0, 0.0, 0.5)))


def render_one(params):
    from g3r_ros.render import render

    with torch.no_grad():
        return render(params, CameraBatch.from_cameras([camera()])).rgb[0]


def test_round_trip_layout_and_render(tmp_path):
    p = make_params()
    path = write_ply(tmp_path / "map.ply", p)
    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"].data
    assert v.dtype.names == PLY_COLUMNS
    assert all(v.dtype[n] == np.dtype("<f4") for n in PLY_COLUMNS)
    assert not ply.text and ply.byte_order == "<"
    assert np.all(v["nx"] == 0) and np.all(v["ny"] == 0) and np.all(v["nz"] == 0)
    assert np.allclose(v["f_dc_1"], (p.rgb[:, 1].numpy() - 0.5) / SH_C0, atol=1e-5)
    assert np.allclose(v["opacity"], p.opacity_logits.numpy())
    assert np.allclose(v["scale_2"], p.log_scales[:, 2].numpy())
    assert np.allclose(np.stack([v[f"rot_{i}"] for i in range(4)], 1), p.quats.numpy())
    q = read_ply(path)
    for f in ("means", "quats", "log_scales", "opacity_logits"):
        assert torch.equal(getattr(q, f), getattr(p, f)), f
    assert torch.allclose(q.rgb, p.rgb, atol=1e-6)
    a, b = render_one(p), render_one(q)
    assert float(a.max()) > 0.05
    assert torch.allclose(a, b, atol=1e-5)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "map.ply"
    write_ply(path, make_params(10))
    before = path.read_bytes()
    # readable by others like any file the user writes (0666 minus the umask), not the temp file's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask

    def broken_write(self, stream):
        stream.write(b"ply\nformat binary_little_endian 1.0\n")
        raise OSError("disk full")

    monkeypatch.setattr(PlyData, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_ply(path, make_params(20))
    assert path.read_bytes() == before  # the old file is intact
    with pytest.raises(OSError):
        write_ply(tmp_path / "new.ply", make_params(20))
    assert sorted(os.listdir(tmp_path)) == ["map.ply"]  # no partial or temp file


def test_read_other_tools_ply(tmp_path):
    """Shuffled property order, f_rest_* (ignored), no normals, double precision."""
    p = make_params(50)
    n = len(p)
    cols = {"x": p.means[:, 0], "y": p.means[:, 1], "z": p.means[:, 2], "opacity": p.opacity_logits}
    for i in range(3):
        cols[f"f_dc_{i}"] = (p.rgb[:, i] - 0.5) / SH_C0
        cols[f"scale_{i}"] = p.log_scales[:, i]
    for i in range(4):
        cols[f"rot_{i}"] = p.quats[:, i]
    for i in range(45):
        cols[f"f_rest_{i}"] = torch.full((n,), 7.0)
    names = list(cols)
    rng = np.random.default_rng(0)
    rng.shuffle(names)
    arr = np.zeros(n, dtype=[(k, "<f8" if k == "x" else "<f4") for k in names])
    for k in names:
        arr[k] = cols[k].numpy()
    path = tmp_path / "other.ply"
    PlyData([PlyElement.describe(arr, "vertex")], text=False).write(str(path))
    q = read_ply(path)
    assert torch.allclose(q.means, p.means, atol=1e-6)
    assert torch.equal(q.quats, p.quats)
    assert torch.equal(q.log_scales, p.log_scales)
    assert torch.allclose(q.rgb, p.rgb, atol=1e-6)
    # ASCII files read too
    path_txt = tmp_path / "ascii.ply"
    PlyData([PlyElement.describe(arr, "vertex")], text=True).write(str(path_txt))
    assert torch.allclose(read_ply(path_txt).means, p.means, atol=1e-5)


def test_numeric_suffix_sort():
    assert export._suffixed(["rot_10", "rot_2", "rot_0", "rotx", "scale_1"], "rot_") == ["rot_0", "rot_2", "rot_10"]


def test_two_scale_splats_get_a_thin_axis(tmp_path):
    n = 5
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    arr = np.zeros(n, dtype=[(k, "<f4") for k in names])
    arr["rot_0"] = 1
    path = tmp_path / "2dgs.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))
    q = read_ply(path)
    assert q.log_scales.shape == (n, 3) and (q.log_scales[:, 2] < -10).all()


def test_bad_ply_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_ply(tmp_path / "missing.ply")
    with pytest.raises(FileNotFoundError):
        read_ply(tmp_path / "missing.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"\x00\x01 definitely not a ply")
    with pytest.raises(ValueError, match="not a readable PLY"):
        read_ply(garbage)
    good = write_ply(tmp_path / "good.ply", make_params(100))
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(ValueError):
        read_ply(truncated)
    arr = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    plain = tmp_path / "points.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(plain))
    with pytest.raises(ValueError, match="missing"):
        read_ply(plain)
    face = tmp_path / "face.ply"
    PlyData([PlyElement.describe(arr, "face")]).write(str(face))
    with pytest.raises(ValueError, match="vertex"):
        read_ply(face)
    p = make_params(3)
    p.means[0, 0] = float("nan")
    nan = write_ply(tmp_path / "nan.ply", p)
    with pytest.raises(ValueError, match="non-finite"):
        read_ply(nan)


def test_pointcloud_fields():
    p = make_params(20)
    p.rgb[0] = torch.tensor([1.0, 0.5, 0.0])
    arr = pointcloud_fields(p)
    assert arr.dtype.names == ("x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2",
                               "rot_0", "rot_1", "rot_2", "rot_3", "rgb")
    assert all(arr.dtype[n] == np.dtype("<f4") for n in arr.dtype.names) and arr.dtype.itemsize == 48
    assert np.allclose(arr["opacity"], torch.sigmoid(p.opacity_logits).numpy(), atol=1e-6)
    assert np.allclose(arr["scale_1"], p.log_scales[:, 1].exp().numpy(), rtol=1e-5)
    q = np.stack([arr[f"rot_{i}"] for i in range(4)], 1)
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-6)
    assert np.allclose(q, (p.quats / p.quats.norm(dim=1, keepdim=True)).numpy(), atol=1e-6)
    assert arr["rgb"][:1].view("<u4")[0] == 0xFF8000  # 0x00RRGGBB, 0.5 → 128
    assert np.array_equal(unpack_rgb(arr["rgb"])[1:], np.round(p.rgb[1:].numpy() * 255).astype(np.uint8))
    layout = pointcloud_field_layout()
    assert layout[0] == ("x", 0, 7, 1) and layout[-1] == ("rgb", 44, 7, 1)


def test_render_command(tmp_path, capsys):
    from PIL import Image

    from g3r_ros.cli import main

    p = make_params()
    ply = write_ply(tmp_path / "map.ply", p)
    out = tmp_path / "img.png"
    rc = main(["render", str(ply), "--intrinsics", "50,50,32,24", "--size", "64,48",
               "--look-at", "0,0,1,6,0,0.5", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["gaussians"] == 300 and info["out"] == str(out)
    img = np.asarray(Image.open(out))
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    ref = (render_one(p).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(img.astype(int) - ref.astype(int)).max() <= 1
    # --pose gives the same camera as --look-at
    from g3r_ros.geometry import transform_to_pose

    t, q = transform_to_pose(camera().T_world_cam)
    out2 = tmp_path / "img2.png"
    pose = ",".join(f"{v:.9f}" for v in [*t, *q])
    assert main(["render", str(ply), "--intrinsics", "50,50,32,24", "--size", "64,48", f"--pose={pose}",
                 "--out", str(out2), "--background", "0,0,1"]) == 0
    img2 = np.asarray(Image.open(out2)).astype(int)
    from g3r_ros.render import render

    with torch.no_grad():
        alpha = render(p, CameraBatch.from_cameras([camera()])).alpha[0, ..., 0].numpy()
    opaque, empty = alpha > 0.98, alpha < 0.01
    assert opaque.sum() > 20 and empty.sum() > 20
    assert np.abs(img2[opaque] - img[opaque].astype(int)).max() <= 6  # same view
    assert (np.abs(img2[empty] - [0, 0, 255]) <= 3).all()  # blue background
    # errors are reported, not raised
    assert main(["render", str(tmp_path / "none.ply"), "--intrinsics", "50,50,32,24", "--size", "64,48",
                 "--look-at", "0,0,1,6,0,0.5", "--out", str(out)]) == 1
    with pytest.raises(SystemExit):
        main(["render", str(ply), "--intrinsics", "50,50", "--size", "64,48", "--look-at", "0,0,1,6,0,0.5",
              "--out", str(out)])
