"""Neural Gaussian state layout and decoder invariants."""

import pytest
import torch

from g3r_ros.gaussians import (
    EXPLICIT_CHANNELS,
    LATENT,
    LOG_SCALE,
    OPACITY,
    POS,
    QUAT,
    RGB,
    STATE_CHANNELS,
    GaussianDecoder,
    make_decoders,
    output_scale_vector,
    params_from_explicit,
    state_from_params,
)
from g3r_ros.render.types import GaussianParams


def _random_state(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, STATE_CHANNELS, generator=g)
    s[:, RGB] = torch.rand(n, 3, generator=g) * 1.6 - 0.3  # some out of [0,1]
    return s


def test_layout_constants():
    assert (STATE_CHANNELS, EXPLICIT_CHANNELS) == (46, 14)
    chans = [POS, LOG_SCALE, QUAT, RGB, OPACITY, LATENT]
    covered = sorted(i for sl in chans for i in range(STATE_CHANNELS)[sl])
    assert covered == list(range(46))
    assert [sl.stop - sl.start for sl in chans] == [3, 3, 4, 3, 1, 32]


def test_decode_invariants_with_random_weights():
    dec = GaussianDecoder()
    torch.nn.init.normal_(dec.linear.weight, std=1.0)
    torch.nn.init.normal_(dec.linear.bias, std=1.0)
    s = _random_state()
    p = dec(s)
    assert isinstance(p, GaussianParams) and len(p) == 200
    assert torch.allclose(p.quats.norm(dim=1), torch.ones(200), atol=1e-5)
    assert (p.log_scales.exp() > 0).all()
    assert p.rgb.min() >= 0 and p.rgb.max() <= 1
    assert p.opacity_logits.shape == (200,)
    # the residual is bounded by the per-channel output scale
    res = dec.decode_explicit(s) - s[:, :EXPLICIT_CHANNELS]
    assert (res.abs() <= dec.output_scale + 1e-6).all()
    assert res.abs().max() > 0.05


def test_decoder_is_residual():
    dec = GaussianDecoder()
    with torch.no_grad():
        dec.linear.weight.zero_()
        dec.linear.bias.zero_()
    s = _random_state()
    s[:, RGB] = s[:, RGB].clamp(0, 1)
    p = dec(s)
    assert torch.equal(p.means, s[:, POS])
    assert torch.equal(p.log_scales, s[:, LOG_SCALE])
    assert torch.equal(p.rgb, s[:, RGB])
    assert torch.equal(p.opacity_logits, s[:, OPACITY].squeeze(1))
    q = s[:, QUAT] / s[:, QUAT].norm(dim=1, keepdim=True)
    assert torch.allclose(p.quats, q, atol=1e-6)


def test_fresh_decoder_is_near_identity():
    s = _random_state()
    out = GaussianDecoder().decode_explicit(s)
    assert (out - s[:, :EXPLICIT_CHANNELS]).abs().max() < 0.05


def test_rgb_clamp_is_straight_through():
    s = _random_state().requires_grad_(True)
    p = GaussianDecoder()(s)
    p.rgb.sum().backward()
    g = s.grad[:, RGB]
    # out-of-range colours still receive gradient (about 1, up to the tiny decoder term)
    assert torch.allclose(g, torch.ones_like(g), atol=0.05)


def test_zero_quaternion_becomes_identity():
    ex = torch.zeros(2, EXPLICIT_CHANNELS)
    ex[1, 6:10] = torch.tensor([0.0, 2.0, 0.0, 0.0])
    p = params_from_explicit(ex)
    assert torch.allclose(p.quats[0], torch.tensor([1.0, 0, 0, 0]))
    assert torch.allclose(p.quats[1], torch.tensor([0.0, 1, 0, 0]))


def test_state_from_params_round_trip():
    n = 10
    p = GaussianParams(torch.randn(n, 3), torch.nn.functional.normalize(torch.randn(n, 4), dim=1),
                       torch.randn(n, 3), torch.randn(n), torch.rand(n, 3))
    lat = torch.randn(n, 32)
    s = state_from_params(p, lat)
    assert s.shape == (n, 46)
    assert torch.equal(s[:, LATENT], lat)
    q = params_from_explicit(s[:, :EXPLICIT_CHANNELS])
    for f in ("means", "log_scales", "opacity_logits", "rgb"):
        assert torch.equal(getattr(q, f), getattr(p, f)), f
    assert torch.allclose(q.quats, p.quats, atol=1e-6)
    assert torch.equal(state_from_params(p)[:, LATENT], torch.zeros(n, 32))


def test_bad_inputs():
    dec = GaussianDecoder()
    with pytest.raises(ValueError, match="46"):
        dec(torch.zeros(4, 14))
    with pytest.raises(ValueError, match="unknown"):
        output_scale_vector({"colour": 1.0})
    p = GaussianParams(torch.zeros(3, 3), torch.zeros(3, 4), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="latent"):
        state_from_params(p, torch.zeros(2, 32))


def test_make_decoders_and_state_dict():
    decs = make_decoders({"pos": 0.05})
    assert set(decs) == {"background", "actor", "distant"}
    sd = decs.state_dict()
    assert "background.output_scale" in sd
    assert torch.allclose(sd["actor.output_scale"][POS], torch.full((3,), 0.05))
    other = make_decoders()
    other.load_state_dict(sd)
    assert torch.allclose(other["distant"].output_scale[POS], torch.full((3,), 0.05))


def test_decoding_is_translation_equivariant():
    dec = GaussianDecoder()
    torch.nn.init.normal_(dec.linear.weight, std=1.0)
    s = _random_state()
    moved = s.clone()
    moved[:, POS] += torch.tensor([400.0, -30.0, 5.0])
    a, b = dec(s), dec(moved)
    assert torch.allclose(b.means - a.means, torch.tensor([400.0, -30.0, 5.0]).expand(200, 3), atol=1e-3)
    for f in ("quats", "log_scales", "opacity_logits", "rgb"):
        assert torch.allclose(getattr(a, f), getattr(b, f), atol=1e-6), f
