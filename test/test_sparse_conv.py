"""Sparse 3D convolution against dense conv3d / conv_transpose3d, plus voxelization and the U-Net."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from g3r_ros.sparse import (
    CoordinateManager,
    SparseDownConv3d,
    SparseResUNet,
    SparseTensor,
    SparseUpConv3d,
    SubmanifoldConv3d,
    local_offsets,
    sparse_conv,
    sparse_conv_reference,
    voxel_mean,
    voxel_to_points,
    voxelize,
)
from g3r_ros.sparse.keys import COORD_MAX, check_coords, pack_keys, unpack_keys

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_coords(n: int, lo=(-3, -4, -2), hi=(4, 3, 5), batch: int = 0, seed: int = 0) -> torch.Tensor:
    """Up to n unique (n,4) [b,x,y,z] voxel coords in [lo, hi), negatives included."""
    g = torch.Generator().manual_seed(seed)
    lo_t, hi_t = torch.tensor(lo), torch.tensor(hi)
    xyz = lo_t + (torch.rand(4 * n, 3, generator=g) * (hi_t - lo_t)).long()
    xyz = torch.unique(xyz, dim=0)
    xyz = xyz[torch.randperm(xyz.shape[0], generator=g)[:n]]
    return torch.cat([torch.full((xyz.shape[0], 1), batch, dtype=torch.int64), xyz], 1)


def to_dense(coords: torch.Tensor, feats: torch.Tensor, origin: torch.Tensor, size) -> torch.Tensor:
    """Scatter (M,C) feats at xyz coords into a (1,C,X,Y,Z) zero grid; origin maps to index 0."""
    idx = coords[:, 1:] - origin
    dense = feats.new_zeros((*size, feats.shape[1])).index_put((idx[:, 0], idx[:, 1], idx[:, 2]), feats)
    return dense.permute(3, 0, 1, 2).unsqueeze(0)


def at_sites(dense: torch.Tensor, coords: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Read (M,C) rows of a (1,C,X,Y,Z) grid at xyz coords."""
    idx = coords[:, 1:] - origin
    return dense[0, :, idx[:, 0], idx[:, 1], idx[:, 2]].t()


def grads(fn, inputs, cotangent):
    out = fn(*inputs)
    return out, torch.autograd.grad((out * cotangent).sum(), inputs)


# ---------------------------------------------------------------------------------------
# Keys and maps
# ---------------------------------------------------------------------------------------
def test_keys_roundtrip_and_order():
    c = torch.cat([random_coords(50, batch=1), random_coords(50, batch=0, seed=1)])
    c[0, 1:] = torch.tensor([COORD_MAX, -COORD_MAX, 0])
    k = pack_keys(c)
    assert torch.equal(unpack_keys(k), c)
    # key order is lexicographic in (b, x, y, z)
    order = torch.argsort(k)
    lex = sorted(range(len(c)), key=lambda i: tuple(c[i].tolist()))
    assert order.tolist() == lex


def test_check_coords_rejects_bad_input():
    with pytest.raises(ValueError, match="too far"):
        check_coords(torch.tensor([[0, COORD_MAX + 1, 0, 0]]))
    with pytest.raises(ValueError, match="batch"):
        check_coords(torch.tensor([[-1, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(M,4\)"):
        check_coords(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="duplicate"):
        SparseTensor.from_coords(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), torch.zeros(2, 1))


def test_submanifold_map_pairs_are_neighbours_and_cached():
    c = random_coords(60)
    st = SparseTensor.from_coords(c, torch.zeros(c.shape[0], 1))
    kmap = st.manager.submanifold(1, 3)
    assert kmap is st.manager.submanifold(1, 3)
    coords = st.coords
    n_pairs = 0
    offsets = torch.tensor([[dx, dy, dz] for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)])
    for k, o, i in kmap.pairs:
        assert torch.equal(coords[i, 1:] - coords[o, 1:], offsets[k].expand(len(o), 3))
        assert len(torch.unique(o)) == len(o)
        n_pairs += len(o)
    # brute force count of ordered neighbour pairs (excluding self)
    d = (coords[:, None, 1:] - coords[None, :, 1:]).abs().amax(-1)
    assert n_pairs == int(((d <= 1) & (d > 0)).sum())


# ---------------------------------------------------------------------------------------
# Convolutions against dense references (float64, forward and gradients)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_submanifold_matches_dense_conv3d(kernel_size):
    torch.manual_seed(0)
    cin, cout = 3, 4
    coords = random_coords(70)
    st = SparseTensor.from_coords(coords, torch.randn(coords.shape[0], cin, dtype=DT))
    coords = st.coords
    conv = SubmanifoldConv3d(cin, cout, kernel_size).to(DT)
    W = conv.weight
    r = kernel_size // 2
    origin = coords[:, 1:].min(0).values - r
    size = (coords[:, 1:].max(0).values - origin + r + 1).tolist()
    feats = st.feats.clone().requires_grad_(True)
    cot = torch.randn(coords.shape[0], cout, dtype=DT)

    def sparse_fn(f, w):
        return sparse_conv(f, w, st.manager.submanifold(1, kernel_size))

    def dense_fn(f, w):
        weight = w.permute(2, 1, 0).reshape(cout, cin, kernel_size, kernel_size, kernel_size)
        return at_sites(F.conv3d(to_dense(coords, f, origin, size), weight), coords, origin + r)

    out_s, (gf_s, gw_s) = grads(sparse_fn, (feats, W), cot)
    out_d, (gf_d, gw_d) = grads(dense_fn, (feats, W), cot)
    torch.testing.assert_close(out_s, out_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf_s, gf_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw_s, gw_d, rtol=1e-10, atol=1e-10)
    # the module path equals the functional path
    torch.testing.assert_close(conv(st.replace(feats)).feats, out_s)


def test_strided_down_matches_dense_conv3d():
    torch.manual_seed(1)
    cin, cout = 3, 5
    coords = random_coords(80, lo=(-5, -4, -3), hi=(4, 5, 6))
    st = SparseTensor.from_coords(coords, torch.randn(coords.shape[0], cin, dtype=DT))
    fine = st.coords
    conv = SparseDownConv3d(cin, cout).to(DT)
    st2 = conv(st)
    assert st2.stride == 2
    coarse = st2.coords
    assert torch.equal(coarse, torch.unique(torch.cat([fine[:, :1], fine[:, 1:] >> 1], 1), dim=0))
    origin = (fine[:, 1:].min(0).values >> 1) * 2  # even, so the dense stride grid matches floor(c/2)
    size = [2 * (((fine[:, 1:].max(0).values[i] - origin[i]) >> 1) + 1) for i in range(3)]
    feats = st.feats.clone().requires_grad_(True)
    cot = torch.randn(coarse.shape[0], cout, dtype=DT)

    def sparse_fn(f, w):
        return sparse_conv(f, w, st.manager.down(1))

    def dense_fn(f, w):
        weight = w.permute(2, 1, 0).reshape(cout, cin, 2, 2, 2)
        y = F.conv3d(to_dense(fine, f, origin, [int(s) for s in size]), weight, stride=2)
        return at_sites(y, coarse, origin // 2)

    out_s, (gf_s, gw_s) = grads(sparse_fn, (feats, conv.weight), cot)
    out_d, (gf_d, gw_d) = grads(dense_fn, (feats, conv.weight), cot)
    torch.testing.assert_close(out_s, out_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(st2.feats, out_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf_s, gf_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw_s, gw_d, rtol=1e-10, atol=1e-10)


def test_transposed_up_matches_dense_conv_transpose3d():
    torch.manual_seed(2)
    cin, cout = 4, 3
    coords = random_coords(80, lo=(-5, -4, -3), hi=(4, 5, 6))
    st = SparseTensor.from_coords(coords, torch.zeros(coords.shape[0], 1, dtype=DT))
    fine = st.coords
    coarse, _ = st.manager.level(2)
    x = SparseTensor(torch.randn(coarse.shape[0], cin, dtype=DT), 2, st.manager)
    conv = SparseUpConv3d(cin, cout).to(DT)
    y = conv(x)
    assert y.stride == 1 and y.num_voxels == fine.shape[0]
    c_origin = coarse[:, 1:].min(0).values
    c_size = (coarse[:, 1:].max(0).values - c_origin + 1).tolist()
    feats = x.feats.clone().requires_grad_(True)
    cot = torch.randn(fine.shape[0], cout, dtype=DT)

    def sparse_fn(f, w):
        return sparse_conv(f, w, st.manager.up(2))

    def dense_fn(f, w):
        weight = w.permute(1, 2, 0).reshape(cin, cout, 2, 2, 2)
        out = F.conv_transpose3d(to_dense(coarse, f, c_origin, c_size), weight, stride=2)
        return at_sites(out, fine, 2 * c_origin)

    out_s, (gf_s, gw_s) = grads(sparse_fn, (feats, conv.weight), cot)
    out_d, (gf_d, gw_d) = grads(dense_fn, (feats, conv.weight), cot)
    torch.testing.assert_close(out_s, out_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y.feats, out_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gf_s, gf_d, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw_s, gw_d, rtol=1e-10, atol=1e-10)


def test_sparse_conv_gradcheck():
    torch.manual_seed(3)
    coords = random_coords(25, lo=(-2, -2, -2), hi=(2, 2, 2))
    st = SparseTensor.from_coords(coords, torch.zeros(coords.shape[0], 1))
    for kmap, n_in in ((st.manager.submanifold(1), st.num_voxels), (st.manager.down(1), st.num_voxels),
                       (st.manager.up(2), st.manager.num_voxels(2))):
        f = torch.randn(n_in, 2, dtype=DT, requires_grad=True)
        w = torch.randn(kmap.kernel_volume, 2, 3, dtype=DT, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, m=kmap: sparse_conv(a, b, m), (f, w))


def test_batches_do_not_interact():
    torch.manual_seed(4)
    c = random_coords(40)
    both = torch.cat([c, c.clone().index_fill_(1, torch.tensor([0]), 1)])
    f = torch.randn(c.shape[0], 2, dtype=DT)
    conv = SubmanifoldConv3d(2, 3).to(DT)
    single = conv(SparseTensor.from_coords(c, f))
    pair = conv(SparseTensor.from_coords(both, torch.cat([f, 2 * f])))
    n = single.num_voxels
    torch.testing.assert_close(pair.feats[:n], single.feats)  # batch 0 sorts first
    torch.testing.assert_close(pair.feats[n:], 2 * single.feats)


def test_sparse_conv_rejects_mismatched_shapes():
    c = random_coords(10)
    st = SparseTensor.from_coords(c, torch.zeros(c.shape[0], 2))
    kmap = st.manager.submanifold(1)
    with pytest.raises(ValueError):
        sparse_conv(torch.zeros(c.shape[0] + 1, 2), torch.zeros(27, 2, 3), kmap)
    with pytest.raises(ValueError):
        sparse_conv(torch.zeros(c.shape[0], 2), torch.zeros(27, 4, 3), kmap)
    with pytest.raises(ValueError):
        sparse_conv(torch.zeros(c.shape[0], 2), torch.zeros(27, 2, 3, dtype=DT), kmap)
    with pytest.raises(ValueError):
        SubmanifoldConv3d(3, 4)(st)


def test_empty_tensor_runs():
    st = SparseTensor.from_coords(torch.zeros(0, 4, dtype=torch.int64), torch.zeros(0, 2))
    assert SubmanifoldConv3d(2, 3)(st).feats.shape == (0, 3)
    down = SparseDownConv3d(2, 3)(st)
    assert down.feats.shape == (0, 3)
    assert SparseUpConv3d(3, 2)(down).feats.shape == (0, 2)


# ---------------------------------------------------------------------------------------
# Points <-> voxels
# ---------------------------------------------------------------------------------------
def test_voxelize_mean_and_gather():
    torch.manual_seed(5)
    pts = torch.randn(300, 3, dtype=DT) * 2.0
    feats = torch.randn(300, 4, dtype=DT, requires_grad=True)
    vox = voxelize(pts, 0.7)
    vc = vox.manager.level(1)[0]
    assert torch.equal(vc[vox.point_to_voxel, 1:], torch.floor(pts / 0.7).long())
    mean = voxel_mean(feats, vox)
    for v in (0, vox.num_voxels // 2, vox.num_voxels - 1):
        sel = vox.point_to_voxel == v
        torch.testing.assert_close(mean[v], feats[sel].mean(0))
        assert int(vox.counts[v]) == int(sel.sum())
    back = voxel_to_points(mean, vox)
    torch.testing.assert_close(back, mean[vox.point_to_voxel])
    assert torch.autograd.gradcheck(lambda f: voxel_to_points(voxel_mean(f, vox), vox), (feats,))
    off = local_offsets(pts, 0.7)
    assert bool((off >= -0.5).all() and (off < 0.5).all())


def test_voxelize_rejects_bad_input():
    with pytest.raises(ValueError):
        voxelize(torch.zeros(4, 2), 0.5)
    with pytest.raises(ValueError):
        voxelize(torch.zeros(4, 3), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        voxelize(torch.tensor([[0.0, float("nan"), 0.0]]), 0.5)
    with pytest.raises(ValueError, match="too far"):
        voxelize(torch.tensor([[1e6, 0.0, 0.0]]), 0.1)
    with pytest.raises(ValueError):
        voxelize(torch.zeros(4, 3), 0.5, batch=torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------
def test_unet_runs_and_every_parameter_gets_gradient():
    torch.manual_seed(6)
    pts = torch.rand(2000, 3) * torch.tensor([20.0, 20.0, 3.0])
    vox = voxelize(pts, 0.5)
    net = SparseResUNet(5, channels=(8, 12, 16), blocks=1)
    x = SparseTensor(torch.randn(vox.num_voxels, 5), 1, vox.manager)
    out = net(x, cond=torch.randn(16))
    assert out.feats.shape == (vox.num_voxels, 8) and out.stride == 1
    assert bool(torch.isfinite(out.feats).all())
    out.feats.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


def test_unet_gradcheck_tiny():
    torch.manual_seed(7)
    coords = random_coords(18, lo=(-2, -2, -1), hi=(2, 2, 2))
    st = SparseTensor.from_coords(coords, torch.zeros(coords.shape[0], 1))
    net = SparseResUNet(2, channels=(3, 4, 5), blocks=1).to(DT)
    f = torch.randn(st.num_voxels, 2, dtype=DT, requires_grad=True)
    cond = torch.randn(5, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: net(st.replace(a), c).feats, (f, cond))


def test_coordinate_manager_levels():
    c = random_coords(60, lo=(-8, -8, -8), hi=(8, 8, 8))
    st = SparseTensor.from_coords(c, torch.zeros(c.shape[0], 1))
    m: CoordinateManager = st.manager
    c4, k4 = m.level(4)
    assert torch.equal(c4, torch.unique(torch.cat([st.coords[:, :1], st.coords[:, 1:] >> 2], 1), dim=0))
    assert bool((k4[1:] > k4[:-1]).all())
    with pytest.raises(ValueError):
        m.level(3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(8)
    coords = random_coords(200, lo=(-6, -6, -6), hi=(6, 6, 6))
    f = torch.randn(coords.shape[0], 4)
    net = SparseResUNet(4, channels=(8, 12, 16))
    cpu = net(SparseTensor.from_coords(coords, f)).feats
    gpu = net.cuda()(SparseTensor.from_coords(coords.cuda(), f.cuda())).feats
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_hand_written_backward_equals_plain_autograd():
    torch.manual_seed(9)
    pts = torch.rand(3000, 3, dtype=DT) * torch.tensor([10.0, 10.0, 2.0], dtype=DT)
    vox = voxelize(pts, 0.3)
    m = vox.manager
    for kmap, n_in in ((m.submanifold(1), m.num_voxels(1)), (m.down(1), m.num_voxels(1)),
                       (m.up(2), m.num_voxels(2))):
        f = torch.randn(n_in, 5, dtype=DT, requires_grad=True)
        w = torch.randn(kmap.kernel_volume, 5, 6, dtype=DT, requires_grad=True)
        cot = torch.randn(kmap.num_out, 6, dtype=DT)
        out_a, g_a = grads(lambda a, b, km=kmap: sparse_conv(a, b, km), (f, w), cot)
        out_b, g_b = grads(lambda a, b, km=kmap: sparse_conv_reference(a, b, km), (f, w), cot)
        torch.testing.assert_close(out_a, out_b)
        torch.testing.assert_close(g_a[0], g_b[0])
        torch.testing.assert_close(g_a[1], g_b[1])


def test_sparse_benchmark_times_both_algorithms(capsys):
    import json

    from g3r_ros.sparse import benchmark

    assert benchmark.main(["--points", "400", "--repeats", "1", "--conv"]) == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    assert r["points"] == 400 and r["speedup_forward_backward"] > 0
    for name in ("scatter", "table"):
        assert r[name]["forward_backward"]["min_s"] > 0 and r["conv32"][name]["min_s"] > 0
