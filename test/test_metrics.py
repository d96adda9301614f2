"""Image metrics: PSNR, SSIM, LPIPS availability and picture helpers."""

import math

import numpy as np
import pytest
import torch

from g3r_ros.metrics import error_map, lpips_available, psnr, psnr_from_mse, ssim, to_uint8


def images(b=None, h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (h, w, 3) if b is None else (b, h, w, 3)
    return torch.rand(shape, generator=g)


def test_psnr_known_values():
    ref = torch.full((16, 16, 3), 0.5)
    assert math.isinf(float(psnr(ref, ref)))
    assert float(psnr(ref + 0.1, ref)) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    g = torch.Generator().manual_seed(1)
    noise = torch.where(torch.rand(ref.shape, generator=g) < 0.5, -0.05, 0.05)
    assert float(psnr(ref + noise, ref)) == pytest.approx(10 * math.log10(1 / 0.0025), abs=1e-3)


def test_psnr_from_mse():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert math.isinf(psnr_from_mse(0.0)) and math.isnan(psnr_from_mse(-1.0))
    t = psnr_from_mse(torch.tensor([0.01, 0.001]))
    assert torch.allclose(t, torch.tensor([20.0, 30.0]))
    ref = images()
    img = (ref + 0.05).clamp(0, 1)
    assert float(psnr(img, ref)) == pytest.approx(psnr_from_mse(float(((img - ref) ** 2).mean())), abs=1e-4)


def test_psnr_batch_and_mask():
    ref = images(2)
    img = ref.clone()
    img[1] += 0.1
    vals = psnr(img, ref)
    assert vals.shape == (2,) and math.isinf(float(vals[0])) and float(vals[1]) == pytest.approx(20.0, abs=1e-3)
    one = images()
    bad = one.clone()
    bad[:, :10] = 1 - bad[:, :10]
    mask = torch.ones(24, 32, dtype=torch.bool)
    mask[:, :10] = False
    assert math.isinf(float(psnr(bad, one, mask)))
    assert math.isinf(float(psnr(bad, one, mask[..., None].float())))
    assert float(psnr(bad, one)) < 20
    with pytest.raises(ValueError, match="mask"):
        psnr(bad, one, torch.ones(5, 5))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(one, images(h=10))
    with pytest.raises(ValueError, match="H,W,3"):
        psnr(one[..., :2], one[..., :2])


def test_ssim():
    ref = images(2)
    assert torch.allclose(ssim(ref, ref), torch.ones(2), atol=1e-5)
    assert float(ssim(ref[0], ref[0])) == pytest.approx(1.0, abs=1e-5)
    noisy = (ref + 0.2 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    s = ssim(noisy, ref)
    assert (s < 0.9).all() and (s > -1).all()
    # differentiable: usable as a loss, and the gradient improves it
    x = noisy[0].clone().requires_grad_(True)
    loss = 1 - ssim(x, ref[0])
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        better = x - 20.0 * x.grad
    assert float(ssim(better, ref[0])) > float(ssim(noisy[0], ref[0]))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(images(h=8, w=8), images(h=8, w=9))


def test_lpips_unavailable_is_honest():
    ok, reason = lpips_available()
    assert ok is False and "weights" in reason


def test_to_uint8_and_error_map():
    img = torch.tensor([[[-0.2, 0.5, 1.3]]])
    assert to_uint8(img).tolist() == [[[0, 128, 255]]]
    assert to_uint8(np.array([0.0, 1.0])).dtype == np.uint8
    ref = images()
    same = error_map(ref, ref)
    assert same.shape == (24, 32, 3) and same.dtype == np.uint8
    assert (same == same[0, 0]).all()  # zero error is one colour
    worse = ref.clone()
    worse[:, 16:] = 1 - worse[:, 16:]
    emap = error_map(worse, ref)
    assert (emap[:, :16] == same[0, 0]).all()
    assert np.abs(emap[:, 16:].astype(int) - same[0, 0].astype(int)).sum(-1).mean() > 100
    with pytest.raises(ValueError):
        error_map(ref, ref[:, :10])
