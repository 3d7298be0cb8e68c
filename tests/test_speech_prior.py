"""Speech-informed prior: the data-consistent solve, the network, its helpers and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.linop import power_iteration
from sirem_cli.models.speech_prior import (
    SpeechPriorConfig,
    SpeechPriorNet,
    context_windows,
    frame_log_mel,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    normalize_xbar,
    precision_weight,
    prior_frames,
    resample_embeddings,
    smooth_in_time,
    standardize_embeddings,
)
from sirem_cli.mri.sense import SenseOp
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.recon.prior import (
    combined_operator,
    data_fit_scale,
    motion_map,
    motion_time_weight,
    prior_solve,
    prior_weight,
    uncertainty_map,
)
from sirem_cli.recon.solvers import grad_time, pdhg_tv, tv_iso
from sirem_cli.training.prior import (
    PriorData,
    PriorTrainConfig,
    evaluate_prior,
    gaussian_nll,
    prior_checkpoint_payload,
    read_prior_checkpoint,
    save_prior_checkpoint,
    train_prior,
)

SHAPE = (12, 12)


def _crandn(gen: torch.Generator, *shape: int, dtype=torch.complex128) -> torch.Tensor:
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return torch.complex(
        torch.randn(shape, generator=gen, dtype=real), torch.randn(shape, generator=gen, dtype=real)
    )


class _WeightedSense:
    """A SenseOp with its DCF weighting W: forward A, adjoint A^H (W if weighted), normal
    A^H W A (Toeplitz), as the prior's solve sees them."""

    def __init__(self, traj, dcf, smaps, **kwargs) -> None:
        self.op = SenseOp(traj, smaps, **kwargs)
        self.weights = torch.as_tensor(dcf.reshape(-1), dtype=torch.float64)
        self.normal = self.op.toeplitz(dcf.reshape(-1)).forward
        self.n_coils, self.n_points = self.op.n_coils, self.op.n_points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.forward(x)

    def adjoint(self, y: torch.Tensor, weighted: bool = False) -> torch.Tensor:
        return self.op.adjoint(self.weights * y if weighted else y)


@pytest.fixture(scope="module")
def sense() -> _WeightedSense:
    """A 2-arm spiral SENSE operator on a 12 x 12 grid, 3 coils, float64."""
    traj_c, dcf = vd_spiral(13, 120, SHAPE[0])
    traj = to_radians(traj_c)[[0, 7]]  # 2 of 13 interleaves: undersampled
    dcf2 = np.broadcast_to(dcf, traj.shape[:2]).copy()
    rng = np.random.default_rng(3)
    smaps = rng.standard_normal((3, *SHAPE)) + 1j * rng.standard_normal((3, *SHAPE))
    return _WeightedSense(traj, dcf2, smaps, dtype=torch.complex128, eps=1e-12)


def _problem(sense: _WeightedSense, n_frames: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x_true = _crandn(gen, n_frames, *SHAPE)
    y = sense.forward(x_true) + 0.05 * _crandn(gen, n_frames, sense.n_coils, sense.n_points)
    b = sense.adjoint(y, weighted=True)
    lip = 1.01 * power_iteration(sense.normal, (1, *SHAPE), dtype=torch.complex128, iters=60)
    return y, b, lip, gen


# -- recon/prior.py ----------------------------------------------------------------------
def test_mu_zero_is_temporal_tv_exactly(sense):
    _, b, lip, gen = _problem(sense)
    prior = _crandn(gen, *b.shape)
    kwargs = dict(lam_spatial=0.01, lam_time=0.05, lipschitz=lip, iters=25)
    ref = pdhg_tv(sense.normal, b, **kwargs)
    got = prior_solve(sense.normal, b, prior, mu=0.0, **kwargs)
    assert torch.equal(got.x, ref.x)
    assert got.lipschitz == lip and got.mu_abs == 0.0
    # the composed operator with mu = 0 is the identity composition too
    normal_c, b_c = combined_operator(sense.normal, b, prior, torch.ones(SHAPE), 0.0)
    assert normal_c == sense.normal and b_c is b


def test_ls_scale_recovers_a_known_complex_scale(sense):
    gen = torch.Generator().manual_seed(1)
    p = _crandn(gen, 4, *SHAPE)
    s_true = torch.tensor([0.5 + 2j, -1.0 + 0.1j, 3.0, -0.2j], dtype=torch.complex128)
    y = sense.forward(s_true[:, None, None] * p)  # noise-free data of a scaled prior
    b = sense.adjoint(y, weighted=True)
    s = data_fit_scale(sense.normal, b, p)
    assert torch.allclose(s, s_true, rtol=1e-9, atol=1e-9)
    # with noise, it is the least-squares minimizer: perturbing s raises the residual
    y_noisy = y + 0.3 * _crandn(gen, *y.shape)
    b_noisy = sense.adjoint(y_noisy, weighted=True)
    s_hat = data_fit_scale(sense.normal, b_noisy, p)
    w = sense.weights

    def resid(scale: torch.Tensor) -> torch.Tensor:
        r = sense.forward(scale[:, None, None] * p) - y_noisy
        return (w * r.abs().square()).sum(dim=(-2, -1))

    for delta in (0.01, 0.01j, -0.01):
        assert torch.all(resid(s_hat + delta) > resid(s_hat))
    # a frame whose prior is zero gets s = 0, not NaN
    p_zero = p.clone()
    p_zero[2] = 0
    assert data_fit_scale(sense.normal, b, p_zero)[2] == 0


def test_ls_scale_pooled_over_frames(sense):
    gen = torch.Generator().manual_seed(7)
    p = _crandn(gen, 5, *SHAPE)
    s_true = 1.5 - 0.5j
    y = sense.forward(s_true * p)
    b = sense.adjoint(y, weighted=True)
    for window in (None, 3, 5):  # one true scale: every pooling recovers it
        s = data_fit_scale(sense.normal, b, p, window=window)
        assert torch.allclose(s, torch.full((5,), s_true, dtype=s.dtype), atol=1e-9)
    # window 3 at frame 2 pools frames 1..3, exactly as a direct fit on them
    scales = torch.tensor([1.0, 2.0, -1j, 0.5, 3.0], dtype=torch.complex128)
    b2 = sense.adjoint(sense.forward(scales[:, None, None] * p), weighted=True)
    pooled = data_fit_scale(sense.normal, b2, p, window=3)
    direct = data_fit_scale(sense.normal, b2[1:4], p[1:4], window=None)
    assert torch.allclose(pooled[2], direct[0], atol=1e-12)
    edge = data_fit_scale(sense.normal, b2[:2], p[:2], window=None)  # frame 0: frames 0..1
    assert torch.allclose(pooled[0], edge[0], atol=1e-12)
    with pytest.raises(ShapeError, match="window"):
        data_fit_scale(sense.normal, b, p, window=2)


def test_combined_normal_is_hermitian_psd(sense):
    gen = torch.Generator().manual_seed(2)
    weight = prior_weight(torch.rand(SHAPE, generator=gen, dtype=torch.float64), 0.1)
    b = _crandn(gen, 3, *SHAPE)
    normal_c, _ = combined_operator(sense.normal, b, b, weight, 7.0)
    x, z = _crandn(gen, 3, *SHAPE), _crandn(gen, 3, *SHAPE)
    lhs = torch.vdot(x.reshape(-1), normal_c(z).reshape(-1))
    rhs = torch.vdot(normal_c(x).reshape(-1), z.reshape(-1))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    quad = torch.vdot(x.reshape(-1), normal_c(x).reshape(-1))
    assert abs(quad.imag) <= 1e-10 * abs(quad) and quad.real > 0
    # N' = N + mu M exactly
    assert torch.allclose(normal_c(x), sense.normal(x) + 7.0 * weight * x, rtol=1e-12)


def _objective(sense, y, x, target, weight, mu_abs, lam_s, lam_t) -> float:
    """The full objective computed independently, with forward NUFFTs."""
    r = sense.forward(x) - y
    data = 0.5 * float((sense.weights * r.abs().square()).sum())
    prior = 0.5 * mu_abs * float((weight * (x - target).abs().square()).sum())
    return data + prior + lam_s * float(tv_iso(x).sum()) + lam_t * float(grad_time(x).abs().sum())


def test_prior_solve_objective_is_the_stated_one_and_decreases(sense):
    y, b, lip, gen = _problem(sense, seed=4)
    prior = _crandn(gen, *b.shape)
    weight = prior_weight(torch.rand(SHAPE, generator=gen, dtype=torch.float64), 0.1)
    const = 0.5 * float((sense.weights * y.abs().square()).sum())
    res = prior_solve(
        sense.normal,
        b,
        prior,
        mu=0.5,
        lam_spatial=0.02,
        lam_time=0.05,
        lipschitz=lip,
        iters=80,
        weight=weight,
        data_const=const,
        track_objective=True,
    )
    assert res.mu_abs == pytest.approx(0.5 * lip)
    assert res.lipschitz == pytest.approx(lip + res.mu_abs * float(weight.max()))
    target = res.scale[:, None, None] * prior
    independent = _objective(sense, y, res.x, target, weight, res.mu_abs, 0.02, 0.05)
    assert res.objective[-1] == pytest.approx(independent, rel=1e-9)
    start = _objective(sense, y, torch.zeros_like(b), target, weight, res.mu_abs, 0.02, 0.05)
    assert res.objective[-1] < 0.5 * start
    assert res.objective[-1] <= min(res.objective[:10])
    # the prior pulls the solution towards s p: closer than temporal TV alone
    ttv = pdhg_tv(sense.normal, b, lam_spatial=0.02, lam_time=0.05, lipschitz=lip, iters=80)
    assert torch.linalg.vector_norm(res.x - target) < torch.linalg.vector_norm(ttv.x - target)


def test_weighted_temporal_tv_objective_is_the_stated_one(sense):
    """pdhg_tv with a per-pixel temporal weight w minimizes
    data + lam_s TV + lam_t ||w (.) D_t x||_1; w = 1 is the unweighted solve."""
    y, b, lip, gen = _problem(sense, seed=6)
    const = 0.5 * float((sense.weights * y.abs().square()).sum())
    w = 0.2 + torch.rand(SHAPE, generator=gen, dtype=torch.float64)
    kwargs = dict(lam_spatial=0.02, lam_time=0.05, lipschitz=lip, iters=80, data_const=const)
    res = pdhg_tv(sense.normal, b, time_weight=w, track_objective=True, **kwargs)
    r = sense.forward(res.x) - y
    independent = (
        0.5 * float((sense.weights * r.abs().square()).sum())
        + 0.02 * float(tv_iso(res.x).sum())
        + 0.05 * float((w * grad_time(res.x).abs()).sum())
    )
    assert res.objective[-1] == pytest.approx(independent, rel=1e-9)
    assert res.objective[-1] <= min(res.objective[:10])
    plain = pdhg_tv(sense.normal, b, **kwargs).x
    ones = pdhg_tv(sense.normal, b, time_weight=torch.ones(SHAPE), **kwargs).x
    torch.testing.assert_close(ones, plain, rtol=1e-12, atol=1e-12)
    # a smaller weight lets the frames differ more
    loose = pdhg_tv(sense.normal, b, time_weight=torch.full(SHAPE, 0.1), **kwargs).x
    assert grad_time(loose).abs().sum() > grad_time(plain).abs().sum()
    for bad in (torch.zeros(SHAPE), torch.ones(3, 3), torch.full(SHAPE, float("nan"))):
        with pytest.raises(ShapeError, match="time_weight"):
            pdhg_tv(sense.normal, b, time_weight=bad, **kwargs)


def test_motion_map_and_its_temporal_weight(sense):
    gen = torch.Generator().manual_seed(7)
    still = _crandn(gen, 1, *SHAPE).expand(6, *SHAPE).clone()
    assert float(motion_map(still).abs().max()) == 0.0
    assert torch.equal(motion_time_weight(still, 0.05), torch.ones(SHAPE, dtype=torch.float64))
    assert motion_time_weight(still, 0.0) is None
    moving = _crandn(gen, 6, *SHAPE)
    expected = (moving[1:] - moving[:-1]).abs().mean(dim=0) / moving.abs().max()
    torch.testing.assert_close(motion_map(moving), expected)
    w = motion_time_weight(moving, 0.05)
    torch.testing.assert_close(w, 1 / (1 + expected / 0.05))
    assert float(w.max()) <= 1 and float(w.min()) > 0
    with pytest.raises(ShapeError, match="motion"):
        motion_time_weight(moving, -1.0)
    # in the solve: a prior constant in time leaves temporal TV as it is; a moving one
    # relaxes it where it moves
    _, b, lip, _ = _problem(sense, n_frames=6, seed=8)
    kwargs = dict(mu=0.1, lam_spatial=0.01, lam_time=0.05, lipschitz=lip, iters=30)
    off = prior_solve(sense.normal, b, still, **kwargs).x
    on = prior_solve(sense.normal, b, still, motion=0.05, **kwargs).x
    torch.testing.assert_close(on, off, rtol=1e-12, atol=1e-12)
    off = prior_solve(sense.normal, b, moving, **kwargs).x
    on = prior_solve(sense.normal, b, moving, motion=0.05, **kwargs).x
    assert grad_time(on).abs().sum() > grad_time(off).abs().sum()


def test_uncertainty_relaxes_temporal_tv_where_the_prior_weight_is_low(sense):
    """u = mean_t max(0, 1 - M_t); w = 1 / (1 + m / motion + u / uncertainty), each term only
    with its strength > 0; M = 1 everywhere (or no weight) leaves temporal TV as it is."""
    gen = torch.Generator().manual_seed(9)
    weight = torch.rand(5, *SHAPE, generator=gen, dtype=torch.float64) * 1.5  # some M > 1
    u = uncertainty_map(weight)
    torch.testing.assert_close(u, (1 - weight).clamp_min(0).mean(dim=0))
    torch.testing.assert_close(uncertainty_map(weight[0]), (1 - weight[0]).clamp_min(0))
    assert float(uncertainty_map(torch.ones(3, *SHAPE)).abs().max()) == 0.0
    still = _crandn(gen, 1, *SHAPE).expand(5, *SHAPE).clone()
    moving = _crandn(gen, 5, *SHAPE)
    w = motion_time_weight(still, 0.0, weight=weight, uncertainty=0.5)
    torch.testing.assert_close(w, 1 / (1 + u / 0.5))
    both = motion_time_weight(moving, 0.05, weight=weight, uncertainty=0.5)
    torch.testing.assert_close(both, 1 / (1 + motion_map(moving) / 0.05 + u / 0.5))
    assert motion_time_weight(moving, 0.0, weight=None, uncertainty=0.5) is None
    assert motion_time_weight(moving, 0.0, weight=weight, uncertainty=0.0) is None
    with pytest.raises(ShapeError, match="uncertainty"):
        motion_time_weight(moving, 0.0, weight=weight, uncertainty=float("nan"))
    with pytest.raises(ShapeError, match="weight"):
        uncertainty_map(torch.ones(2, 3, 4, 5))
    # in the solve: with M = 1 (no weight) the relaxation is the identity; with a low M
    # somewhere it lets the frames change more there
    _, b, lip, _ = _problem(sense, n_frames=5, seed=10)
    kwargs = dict(mu=0.1, lam_spatial=0.01, lam_time=0.05, lipschitz=lip, iters=30)
    off = prior_solve(sense.normal, b, still, **kwargs).x
    on = prior_solve(sense.normal, b, still, uncertainty=0.5, **kwargs).x
    torch.testing.assert_close(on, off, rtol=1e-12, atol=1e-12)
    low = torch.ones(5, *SHAPE, dtype=torch.float64)
    low[:, 3:9, 3:9] = 0.1
    off = prior_solve(sense.normal, b, still, weight=low, **kwargs).x
    on = prior_solve(sense.normal, b, still, weight=low, uncertainty=0.5, **kwargs).x
    inside = (slice(None), slice(3, 9), slice(3, 9))
    assert grad_time(on)[inside].abs().sum() > grad_time(off)[inside].abs().sum()


def test_warm_start(sense):
    _, b, lip, gen = _problem(sense, seed=5)
    z = _crandn(gen, *b.shape)
    keep = z.clone()
    kwargs = dict(lam_spatial=0.0, lam_time=0.05, lipschitz=lip)
    assert torch.equal(pdhg_tv(sense.normal, b, iters=0, x0=z, **kwargs).x, keep)
    pdhg_tv(sense.normal, b, iters=3, x0=z, **kwargs)
    assert torch.equal(z, keep)  # x0 is not written
    with pytest.raises(ShapeError, match="x0"):
        pdhg_tv(sense.normal, b, iters=1, x0=z[:2], **kwargs)
    # the prior solve starts at s p: a prior equal to the answer is kept from iteration 0
    ref = pdhg_tv(sense.normal, b, iters=300, **kwargs).x
    warm = prior_solve(sense.normal, b, ref, mu=0.01, iters=1, **kwargs)
    cold = prior_solve(sense.normal, b, ref, mu=0.01, iters=1, warm_start=False, **kwargs)
    assert torch.linalg.vector_norm(warm.x - ref) < 0.1 * torch.linalg.vector_norm(cold.x - ref)


def test_prior_solve_rejects_bad_input(sense):
    _, b, lip, gen = _problem(sense)
    prior = _crandn(gen, *b.shape)
    common = dict(lam_spatial=0.0, lam_time=0.1, lipschitz=lip, iters=2)
    with pytest.raises(ShapeError, match="prior"):
        prior_solve(sense.normal, b, prior[:2], mu=0.1, **common)
    with pytest.raises(ShapeError, match="mu"):
        prior_solve(sense.normal, b, prior, mu=-1.0, **common)
    with pytest.raises(ShapeError, match="weight"):
        prior_solve(sense.normal, b, prior, mu=0.1, weight=-torch.ones(SHAPE), **common)
    with pytest.raises(ShapeError, match="scale"):
        prior_solve(sense.normal, b, prior, mu=0.1, scale=torch.ones(2), **common)
    with pytest.raises(ShapeError, match="static map"):
        prior_weight(torch.full(SHAPE, 2.0))


# -- models/speech_prior.py helpers -----------------------------------------------------
def test_context_windows_repeat_the_edges():
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)  # frame t holds [2t, 2t + 1]
    ctx = context_windows(emb, 2)
    assert ctx.shape == (6, 5, 2)
    assert np.array_equal(ctx[3, :, 0], [2, 4, 6, 8, 10])  # frames 1..5
    assert np.array_equal(ctx[0, :, 0], [0, 0, 0, 2, 4])  # frame 0 repeated before the start
    assert np.array_equal(ctx[5, :, 0], [6, 8, 10, 10, 10])
    torch_ctx = context_windows(torch.as_tensor(emb), 2)
    assert isinstance(torch_ctx, torch.Tensor) and np.array_equal(torch_ctx.numpy(), ctx)
    with pytest.raises(ShapeError):
        context_windows(emb[0], 1)


def test_embedding_helpers():
    rng = np.random.default_rng(0)
    emb = rng.normal(3.0, 5.0, (200, 4))
    z = standardize_embeddings(emb)
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-4)
    with pytest.raises(InputError):
        standardize_embeddings(np.full((3, 2), np.nan))
    src = np.array([0.0, 1.0, 2.0])
    out = resample_embeddings(np.array([[0.0], [10.0], [20.0]]), src, np.array([-1, 0.25, 1.5, 9]))
    assert np.allclose(out[:, 0], [0.0, 2.5, 15.0, 20.0])


def test_frame_log_mel_finds_a_tone_at_the_right_time():
    rate = 16000
    t = np.arange(rate) / rate  # 1 s
    audio = np.where(t >= 0.5, np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    times = np.array([0.25, 0.75])
    mel = frame_log_mel(audio, rate, times, n_mels=40)
    assert mel.shape == (2, 40)
    freqs = mel_to_hz(np.linspace(0, hz_to_mel(8000.0), 42))[1:-1]  # band centres
    assert abs(freqs[int(np.argmax(mel[1]))] - 1000) < 150
    assert mel[0].max() <= -9.9  # silence: the floor
    # a window reaching past the end is zero-padded, not an error
    assert np.all(np.isfinite(frame_log_mel(audio, rate, np.array([0.999]), n_mels=8)))


def test_mel_filterbank_matches_the_slaney_definition():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert np.allclose(mel_to_hz(hz_to_mel(np.array([50.0, 700.0, 3000.0]))), [50, 700, 3000])
    bank = mel_filterbank(16000, 512, 10, 8000.0)
    assert bank.shape == (10, 257) and np.all(bank >= 0)
    # area normalization: each triangle integrates (over Hz) to about 1
    df = 16000 / 512
    assert np.allclose(bank.sum(axis=1) * df, 1.0, rtol=0.15)


def test_smooth_in_time_is_a_mirrored_gaussian():
    from scipy.ndimage import gaussian_filter1d

    gen = torch.Generator().manual_seed(0)
    x = torch.randn((9, 3, 2), generator=gen, dtype=torch.float64)
    for sigma in (0.7, 1.1, 2.0, 4.0):  # 4.0: the support is longer than the sequence
        ref = gaussian_filter1d(x.numpy(), sigma, axis=0, mode="mirror", truncate=3.0)
        assert np.allclose(smooth_in_time(x, sigma).numpy(), ref, atol=1e-12)
    assert torch.equal(smooth_in_time(x, 0.0), x)
    with pytest.raises(ShapeError):
        smooth_in_time(x, -1.0)


def test_normalize_xbar_and_prior_frames():
    gen = torch.Generator().manual_seed(0)
    xbar = _crandn(gen, *SHAPE, dtype=torch.complex64)
    mag, peak = normalize_xbar(xbar)
    assert float(mag.max()) == pytest.approx(1.0) and peak == pytest.approx(float(xbar.abs().max()))
    delta = torch.randn((3, *SHAPE), generator=gen) * 0.1
    w = torch.rand(SHAPE, generator=gen)
    p = prior_frames(xbar, delta, w)
    assert p.shape == (3, *SHAPE) and p.dtype == torch.complex64
    expect = (mag + w * delta).clamp_min(0)
    assert torch.allclose(p.abs(), expect, atol=1e-6)
    keep = expect > 1e-3  # (3, H, W)
    phase = torch.angle((p * xbar.conj())[keep])  # p has the phase of x_bar
    assert torch.allclose(phase, torch.zeros_like(phase), atol=1e-4)
    assert float(prior_frames(xbar, delta + 5.0, clamp_max=1.0).abs().max()) <= 1.0 + 1e-6
    with pytest.raises(InputError):
        normalize_xbar(torch.zeros(SHAPE, dtype=torch.complex64))


# -- models/speech_prior.py network -------------------------------------------------------
def _small_config(**kw) -> SpeechPriorConfig:
    base = dict(
        embedding_dim=6,
        context=5,
        image_size=(16, 16),
        channels=(4, 8),
        rank=3,
        audio_hidden=8,
        dropout=0.0,
    )
    base.update(kw)
    return SpeechPriorConfig(**base)


def _randomize_zero_layers(net: SpeechPriorNet, seed: int = 0) -> None:
    """Give the zero-initialized output layers random values (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (net.audio_mlp[-1].weight, net.audio_mlp[-1].bias, net.maps.weight):
            param.copy_(0.3 * torch.randn(param.shape, generator=gen))


def test_network_shapes_and_zero_start():
    cfg = _small_config()
    net = SpeechPriorNet(cfg).eval()
    ctx = torch.randn(7, 5, 6)
    xbar = torch.rand(7, 16, 16)
    out = net(ctx, xbar)
    assert out.shape == (7, 16, 16) and out.dtype == torch.float32
    assert torch.count_nonzero(out) == 0  # untrained: Delta = 0, p = x_bar
    _randomize_zero_layers(net)
    one = net(ctx, xbar[:1])  # one speaker for all rows
    spk = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    two = net(ctx, xbar[:2], spk)
    assert torch.allclose(two[spk == 0], net(ctx[spk == 0], xbar[:1]), atol=1e-5)
    assert torch.allclose(one, net.predict(ctx, xbar[0], batch_size=3), atol=1e-5)
    with pytest.raises(ShapeError):
        net(torch.randn(7, 4, 6), xbar)
    with pytest.raises(ShapeError):
        net(ctx, torch.rand(7, 8, 8))
    with pytest.raises(InputError):
        _small_config(context=4)
    with pytest.raises(InputError):
        _small_config(image_size=(15, 16))


def test_no_audio_removes_the_audio_effect():
    torch.manual_seed(0)
    net = SpeechPriorNet(_small_config(no_audio=True)).eval()
    _randomize_zero_layers(net)
    xbar = torch.rand(1, 16, 16)
    a = net(torch.randn(4, 5, 6), xbar)
    b = net(torch.randn(4, 5, 6) * 10, xbar)
    assert torch.equal(a, b) and torch.count_nonzero(a) > 0
    torch.manual_seed(0)
    with_audio = SpeechPriorNet(_small_config()).eval()
    _randomize_zero_layers(with_audio)
    assert not torch.allclose(
        with_audio(torch.randn(4, 5, 6), xbar), with_audio(torch.randn(4, 5, 6), xbar)
    )
    # same architecture and parameters: the ablation shares everything but the audio
    assert [k for k in net.state_dict()] == [k for k in with_audio.state_dict()]


def test_gradients_reach_every_parameter():
    torch.manual_seed(1)
    net = SpeechPriorNet(_small_config())
    _randomize_zero_layers(net)
    loss = net(torch.randn(6, 5, 6), torch.rand(2, 16, 16), torch.tensor([0, 1, 0, 1, 0, 1]))
    loss.square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) > 0, name
    # from the zero start, the output layers get gradients (training can leave Delta = 0)
    fresh = SpeechPriorNet(_small_config())
    (fresh(torch.randn(6, 5, 6), torch.rand(1, 16, 16)) - 1).square().mean().backward()
    assert torch.count_nonzero(fresh.maps.weight.grad) > 0


def test_uncertainty_head_and_precision_weight():
    torch.manual_seed(2)
    net = SpeechPriorNet(_small_config(uncertainty=True))
    ctx, xbar = torch.randn(5, 5, 6), torch.rand(1, 16, 16)
    delta, logvar = net.forward_full(ctx, xbar)
    assert delta.shape == logvar.shape == (5, 16, 16)
    assert torch.allclose(logvar, torch.full_like(logvar, float(np.log(1e-3))), atol=1e-5)
    assert SpeechPriorNet(_small_config()).forward_full(ctx, xbar)[1] is None
    # the NLL of the detached residual trains the variance, never the mean's coefficients
    _randomize_zero_layers(net)
    delta, logvar = net.forward_full(ctx, xbar)
    gaussian_nll((delta - 0.3).detach(), logvar).backward()
    rank = net.config.rank
    assert torch.count_nonzero(net.audio_mlp[-1].weight.grad[:rank]) == 0
    assert torch.count_nonzero(net.audio_mlp[-1].weight.grad[rank:]) > 0
    # M = min(1, v_q / sigma^2): 1 at and below the reference variance, smaller above
    lv = torch.log(torch.tensor([[[1.0, 2.0], [4.0, 8.0]]]))
    m = precision_weight(lv, quantile=0.25)
    ref = float(torch.quantile(lv.reshape(-1), 0.25).exp())
    assert torch.allclose(m, (ref / lv.exp()).clamp(max=1.0))
    assert float(m.max()) == pytest.approx(1.0) and float(m[0, 1, 1]) < float(m[0, 1, 0])
    with pytest.raises(ShapeError):
        precision_weight(lv, quantile=1.5)


def test_network_is_deterministic_for_a_seed():
    torch.manual_seed(5)
    a = SpeechPriorNet(_small_config())
    torch.manual_seed(5)
    b = SpeechPriorNet(_small_config())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


# -- training/prior.py ---------------------------------------------------------------------
def _toy_data(n_speakers: int, frames: int, seed: int) -> PriorData:
    """Frames = speaker image + a(t) * bump at a speaker-dependent place; a(t) is in the audio."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    xbars, targets, contexts, speaker = [], [], [], []
    for u in range(n_speakers):
        cy, cx = 2 + 3 * torch.rand(2, generator=gen)  # off the base's peak
        base = torch.exp(-((yy - 9) ** 2 + (xx - 9) ** 2) / 30)
        bump = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
        a = 2 * torch.rand(frames, generator=gen) - 1  # (F,) in [-1, 1)
        emb = torch.randn(frames, 6, generator=gen) * 0.1
        emb[:, 0] = a  # the audio carries a(t)
        frames_u = base + 0.8 * a[:, None, None] * bump
        xbars.append(frames_u.mean(0) / frames_u.mean(0).max())
        targets.append(frames_u / frames_u.amax(dim=(1, 2), keepdim=True))
        contexts.append(context_windows(emb, 2))
        speaker.append(torch.full((frames,), u))
    return PriorData(
        torch.cat(contexts), torch.stack(xbars), torch.cat(speaker), torch.cat(targets)
    )


def test_training_beats_its_start_and_is_deterministic(tmp_path):
    train, val = _toy_data(4, 32, 0), _toy_data(2, 24, 1)
    cfg = _small_config()
    tc = PriorTrainConfig(epochs=5, batch_size=16, speakers_per_batch=2, lr=1e-2, seed=3)
    res = train_prior(cfg, train, val, tc)
    assert res.best_val_psnr > res.start_val_psnr + 1.0
    assert len(res.log) == 5 and res.best_epoch >= 1
    assert evaluate_prior(res.model, val)[1] == pytest.approx(res.best_val_psnr, abs=1e-4)
    again = train_prior(cfg, train, val, tc)
    for (_, va), (_, vb) in zip(
        res.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(va, vb)
    # augmentation and the uncertainty head run and keep shapes
    aug = PriorTrainConfig(epochs=1, batch_size=16, seed=3, shift_px=2, zoom=0.1, rotate_deg=5)
    assert len(train_prior(_small_config(uncertainty=True), train, val, aug).log) == 1
    # checkpoint round trip through weights_only loading
    weight = torch.rand(16, 16)
    payload = prior_checkpoint_payload(
        res.model,
        train_config=tc,
        weight=weight,
        info={"best_epoch": res.best_epoch, "note": "toy"},
    )
    path = save_prior_checkpoint(tmp_path / "prior.pt", payload)
    model, loaded = read_prior_checkpoint(path)
    assert torch.equal(loaded["weight"], weight) and loaded["info"]["note"] == "toy"
    ctx, xbar = val.contexts[:5], val.xbar[:1]
    assert torch.equal(model(ctx, xbar), res.model(ctx, xbar))
    assert PriorTrainConfig.from_dict(__import__("json").loads(loaded["train_config"])) == tc


def test_checkpoint_refuses_other_files(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(FormatError, match="not a sirem speech-prior checkpoint"):
        read_prior_checkpoint(other)
    with pytest.raises(InputError, match="not found"):
        read_prior_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="info"):
        prior_checkpoint_payload(SpeechPriorNet(_small_config()), info={"bad": [1, 2]})


def test_prior_data_checks_shapes():
    good = _toy_data(2, 8, 0)
    with pytest.raises(ShapeError, match="speaker"):
        PriorData(good.contexts, good.xbar, good.speaker + 5, good.targets)
    with pytest.raises(ShapeError, match="targets"):
        PriorData(good.contexts, good.xbar, good.speaker, good.targets[:, :8])
    with pytest.raises(InputError, match="NaN"):
        PriorData(good.contexts * float("nan"), good.xbar, good.speaker, good.targets)
