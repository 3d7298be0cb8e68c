"""Baselines (gridding, wavelet, TV, temporal TV) and their solvers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import pywt
import torch
from skimage.restoration import denoise_tv_chambolle

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.linop import power_iteration
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.nufft import make_nufft
from sirem_cli.recon import solvers
from sirem_cli.recon.baselines import (
    BaselineProblem,
    default_lambda,
    reconstruct,
    solve,
)
from sirem_cli.recon.registry import BASELINE_METHODS

N = 84


def _phantom(n_frames: int) -> np.ndarray:
    yy, xx = np.mgrid[0:N, 0:N] / N - 0.5
    frames = []
    for f in range(n_frames):
        img = 0.5 * ((yy / 0.42) ** 2 + (xx / 0.36) ** 2 <= 1)
        img += 0.5 * (((yy - 0.05 - 0.02 * f) / 0.12) ** 2 + ((xx + 0.05) / 0.2) ** 2 <= 1)
        img -= 0.4 * ((yy / 0.3) ** 2 + ((xx + 0.2) / 0.04) ** 2 <= 1)
        img *= 1 + 0.2 * np.sin(2 * np.pi * (yy + 0.5 * xx))
        frames.append(np.clip(img, 0, None) / img.max())
    return np.asarray(frames)


def _smaps(n_coils: int = 8) -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:N, 0:N] / N - 0.5
    maps = []
    for c in range(n_coils):
        ang = 2 * np.pi * c / n_coils
        mag = np.exp(-((yy - 0.7 * np.sin(ang)) ** 2 + (xx - 0.7 * np.cos(ang)) ** 2) / 0.25)
        maps.append(mag * np.exp(1j * (rng.uniform(-3, 3) + 2 * rng.normal() * yy)))
    maps = np.asarray(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0))).astype(np.complex64)


@pytest.fixture(scope="module")
def utterance() -> dict:
    """84x84 phantom, 8 smooth coils, the 13 x 630 USC spiral, 1 % noise."""
    n_frames = 4
    truth = _phantom(n_frames)
    smaps = _smaps()
    traj_c, dcf = vd_spiral()
    traj = to_radians(traj_c).astype(np.float32)
    dcf = np.broadcast_to(dcf, (13, 630)).astype(np.float32)
    op = make_nufft(traj, (N, N), eps=1e-8)
    ksp = op.forward(truth[:, None] * smaps[None].astype(complex)).reshape(n_frames, 8, 13, 630)
    rng = np.random.default_rng(0)
    ksp += (
        0.01
        * np.abs(ksp).max()
        / np.sqrt(2)
        * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape))
    )
    ksp /= np.abs(ksp).max()
    return {
        "kspace": ksp.astype(np.complex64),
        "traj": traj,
        "dcf": dcf,
        "smaps": smaps,
        "truth": truth.astype(np.float32),
    }


def _psnr(recon: np.ndarray, truth: np.ndarray) -> float:
    mse = np.mean((recon.astype(float) - truth) ** 2, axis=(1, 2))
    return float(np.mean(10 * np.log10(1 / mse)))


def _args(u: dict, frames: slice = slice(None)) -> tuple:
    return u["kspace"][frames], u["traj"], u["dcf"], u["smaps"]


# -- end to end ------------------------------------------------------------------------------
def test_gridding_output_and_psnr(utterance):
    recon = reconstruct("gridding", *_args(utterance), lam=1.0)
    assert recon.shape == (4, N, N) and recon.dtype == np.float32
    assert np.allclose(recon.reshape(4, -1).max(1), 1) and recon.min() >= 0
    assert _psnr(recon, utterance["truth"]) > 20


@pytest.mark.parametrize("method", ["wavelet", "tv"])
def test_objective_decreases_and_beats_gridding(utterance, method):
    frames = slice(0, 2)
    problem = BaselineProblem(*_args(utterance, frames))
    result = solve(method, problem, lam=default_lambda(method), iters=100, track_objective=True)
    obj = np.asarray(result.objective)
    assert len(obj) == 100 and np.all(np.isfinite(obj))
    assert obj[-1] < 0.5 * problem.data_term_constant()  # x = 0 has objective 1/2||W^.5 y||^2
    final = obj[-1]
    if method == "wavelet":
        # Cycle spinning: single iterates jitter (the shifts are random); the result, the mean
        # of the last half of them, minimizes the shift-invariant objective better than any.
        x, lam = result.x, default_lambda(method) * problem.scale
        data = 0.5 * torch.vdot(x.reshape(-1), problem.normal.forward(x).reshape(-1)).real
        data -= torch.vdot(x.reshape(-1), problem.b.reshape(-1)).real
        psi = solvers.Wavelet2D((N, N))
        reg = solvers.wavelet_l1(psi, x, shift_invariant=True).sum()
        final = float(data + lam * reg) + problem.data_term_constant()
    assert final < obj[9] and final <= obj.min() * (1 + 1e-3)
    recon = np.abs(result.x.numpy())
    recon /= recon.reshape(2, -1).max(1)[:, None, None]
    grid = reconstruct("gridding", *_args(utterance, frames), lam=1.0)
    truth = utterance["truth"][frames]
    gain = _psnr(recon, truth) - _psnr(grid, truth)
    print(f"{method}: PSNR {_psnr(recon, truth):.2f} dB, gridding {_psnr(grid, truth):.2f} dB")
    assert gain > 1.0  # measured: wavelet +3.1 dB, tv +10.3 dB


def test_ttv_beats_gridding_and_reconstruct_api(utterance):
    recon = reconstruct("ttv", *_args(utterance), lam=default_lambda("ttv"), iters=60)
    grid = reconstruct("gridding", *_args(utterance), lam=1.0)
    assert recon.shape == (4, N, N) and np.allclose(recon.reshape(4, -1).max(1), 1)
    print(
        f"ttv: PSNR {_psnr(recon, utterance['truth']):.2f} dB, gridding {_psnr(grid, utterance['truth']):.2f} dB"
    )
    assert _psnr(recon, utterance["truth"]) > _psnr(grid, utterance["truth"]) + 1.0
    calls = []
    out = reconstruct(
        "tv", *_args(utterance, slice(0, 1)), lam=0.03, iters=3, progress=calls.append
    )
    assert calls == [1, 2, 3] and out.shape == (1, N, N)


@pytest.mark.parametrize("method", ["wavelet", "tv", "ttv"])
def test_worker_threads_give_the_same_result(utterance, method):
    args = _args(utterance)
    before = torch.get_num_threads()
    one = reconstruct(method, *args, lam=0.03, iters=8, workers=1)
    calls = []
    two = reconstruct(method, *args, lam=0.03, iters=8, workers=2, progress=calls.append)
    assert np.allclose(one, two, atol=1e-5)
    assert calls == list(range(1, 9))
    assert torch.get_num_threads() == before  # the caller's thread count is left alone


def test_lambda_is_relative_to_the_data_scale(utterance):
    small = reconstruct("wavelet", *_args(utterance, slice(0, 1)), lam=0.03, iters=20)
    ksp = utterance["kspace"][:1] * 1000
    big = reconstruct("wavelet", ksp, *_args(utterance)[1:], lam=0.03, iters=20)
    assert np.allclose(small, big, atol=1e-4)


# -- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"method": "sense"}, InputError, "method"),
        ({"lam": 0.0}, InputError, "lam"),
        ({"lam": float("nan")}, InputError, "lam"),
        ({"iters": 0}, InputError, "iters"),
        ({"kspace": np.zeros((2, 8, 13), np.complex64)}, ShapeError, "kspace"),
        ({"kspace": np.zeros((1, 8, 13, 630), np.float32)}, ShapeError, "kspace"),
        ({"traj": np.zeros((13, 629, 2), np.float32)}, ShapeError, "traj"),
        ({"dcf": np.zeros((13, 630), np.complex64)}, ShapeError, "dcf"),
        ({"smaps": np.zeros((7, N, N), np.complex64)}, ShapeError, "smaps"),
        ({"nan": True}, InputError, "NaN"),
    ],
)
def test_validation(utterance, change, error, match):
    args = {
        "method": "wavelet",
        "kspace": utterance["kspace"][:1],
        "traj": utterance["traj"],
        "dcf": utterance["dcf"],
        "smaps": utterance["smaps"],
        "lam": 0.03,
        "iters": 2,
    }
    if change.pop("nan", False):
        args["kspace"] = args["kspace"].copy()
        args["kspace"][0, 0, 0, 5] = np.nan
    args.update(change)
    with pytest.raises(error, match=match):
        reconstruct(
            args.pop("method"),
            args.pop("kspace"),
            args.pop("traj"),
            args.pop("dcf"),
            args.pop("smaps"),
            **args,
        )


def test_registry_is_import_light():
    code = (
        "import sys; from sirem_cli.recon.registry import BASELINE_METHODS; "
        "print(BASELINE_METHODS, 'torch' in sys.modules, 'finufft' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "('gridding', 'wavelet', 'tv', 'ttv') False False"
    assert BASELINE_METHODS == ("gridding", "wavelet", "tv", "ttv")
    assert default_lambda("gridding") == 0 and all(
        default_lambda(m) > 0 for m in BASELINE_METHODS[1:]
    )


def test_import_backends_loads_what_a_reconstruction_runs_on():
    """A command calls it before timing its first reconstruction (which then imports nothing)."""
    code = (
        "import sys; import sirem_cli.recon.baselines as b; "
        "before = [m in sys.modules for m in ('torch', 'finufft', 'pywt')]; "
        "b.import_backends('cpu'); "
        "print(before, [m in sys.modules for m in ('torch', 'finufft', 'pywt')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[False, False, False] [True, True, True]"


# -- solver building blocks ------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(84, 84), (64, 48)])
def test_wavelet_matches_pywt(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, *shape))
    psi = solvers.Wavelet2D(shape, dtype=torch.float64)
    coeffs = psi.forward(torch.from_numpy(x))
    ref = pywt.wavedec2(x, "db4", mode="periodization", axes=(-2, -1))
    assert psi.level == pywt.dwt_max_level(min(shape), 8) == len(ref) - 1
    for j, (ch, cw) in enumerate(psi.band_shapes):
        details = ref[len(ref) - 1 - j]
        y = coeffs[j].numpy()
        assert np.allclose(y[:, ch:, :cw], details[0]) and np.allclose(y[:, :ch, cw:], details[1])
        assert np.allclose(y[:, ch:, cw:], details[2])
    assert np.allclose(
        coeffs[-1].numpy()[:, : psi.band_shapes[-1][0], : psi.band_shapes[-1][1]], ref[0]
    )
    back = psi.inverse(psi.forward(torch.from_numpy(x))).numpy()
    assert np.allclose(back, x)


def test_fista_with_identity_operator_is_the_wavelet_prox():
    """min 1/2||x - b||^2 + lam ||Psi x||_1 with orthogonal Psi: x = Psi^T soft(Psi b)."""
    rng = np.random.default_rng(2)
    b = rng.standard_normal((2, 64, 64)) + 1j * rng.standard_normal((2, 64, 64))
    lam = 0.7
    res = solvers.fista_wavelet(lambda x: x, torch.from_numpy(b), lam, lipschitz=1.0, iters=5)
    coeffs = pywt.wavedec2(b, "db4", mode="periodization", axes=(-2, -1))
    arr, slices = pywt.coeffs_to_array(coeffs, axes=(-2, -1))
    mag = np.abs(arr)
    arr = arr * np.maximum(1 - lam / np.maximum(mag, 1e-30), 0)
    expected = pywt.waverec2(
        pywt.array_to_coeffs(arr, slices, output_format="wavedec2"),
        "db4",
        mode="periodization",
        axes=(-2, -1),
    )
    assert np.allclose(res.x.numpy(), expected, atol=1e-10)


def test_cycle_spinning_shifts_the_prox_and_averages_the_tail():
    """With the identity operator one iteration is the prox of the randomly shifted image
    shifted back; the result is the mean of the last ceil(iters / 2) iterates."""
    rng = np.random.default_rng(4)
    b = torch.from_numpy(rng.standard_normal((2, 64, 64)) + 1j * rng.standard_normal((2, 64, 64)))
    lam, psi = 0.7, solvers.Wavelet2D((64, 64))
    shifts = np.random.default_rng(3).integers(0, 2**psi.level, size=(3, 2))

    def prox(v, shift):
        plain = solvers.fista_wavelet(
            lambda x: x, torch.roll(v, tuple(shift), dims=(-2, -1)), lam, lipschitz=1.0, iters=1
        )
        return torch.roll(plain.x, tuple(-shift), dims=(-2, -1))

    one = solvers.fista_wavelet(
        lambda x: x, b, lam, lipschitz=1.0, iters=1, cycle_spin=True, seed=3
    )
    assert torch.allclose(one.x, prox(b, shifts[0]), atol=1e-12)
    # identity operator, step 1: every iterate is the prox of b itself (z - (z - b) = b)
    three = solvers.fista_wavelet(
        lambda x: x, b, lam, lipschitz=1.0, iters=3, cycle_spin=True, seed=3
    )
    expected = (prox(b, shifts[1]) + prox(b, shifts[2])) / 2  # iterates 2 and 3
    assert torch.allclose(three.x, expected, atol=1e-12)
    assert not torch.allclose(prox(b, shifts[1]), prox(b, shifts[2]))  # the shifts matter


def test_tv_with_identity_operator_matches_skimage():
    """ROF denoising: min 1/2||x - b||^2 + w TV(x); compare with skimage's Chambolle."""
    rng = np.random.default_rng(3)
    clean = _phantom(1)[0][::2, ::2]
    b = clean + 0.1 * rng.standard_normal(clean.shape)
    weight = 0.1
    res = solvers.pdhg_tv(
        lambda x: x, torch.from_numpy(b[None] + 0j), lam_spatial=weight, lipschitz=1.0, iters=3000
    )
    ours = res.x.numpy()[0]
    ref = denoise_tv_chambolle(b, weight=weight, eps=1e-8, max_num_iter=5000)

    def objective(x):
        return 0.5 * np.sum((x - b) ** 2) + weight * float(
            solvers.tv_iso(torch.from_numpy(x[None] + 0j))[0]
        )

    assert np.abs(ours.imag).max() < 1e-12
    assert objective(ours.real) <= objective(ref) * (1 + 1e-4)
    assert np.abs(ours.real - ref).max() < 2e-2


def test_difference_operators_are_adjoint():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((3, 5, 6)) + 1j * rng.standard_normal((3, 5, 6)))
    g = torch.from_numpy(rng.standard_normal((2, 3, 5, 6)) + 1j * rng.standard_normal((2, 3, 5, 6)))
    lhs = torch.vdot(solvers.grad2d(x).reshape(-1), g.reshape(-1))
    rhs = torch.vdot(x.reshape(-1), solvers.grad2d_adjoint(g).reshape(-1))
    assert abs(lhs - rhs) < 1e-10
    gt = g[0, :2]
    lhs = torch.vdot(solvers.grad_time(x).reshape(-1), gt.reshape(-1))
    rhs = torch.vdot(x.reshape(-1), solvers.grad_time_adjoint(gt, 3).reshape(-1))
    assert abs(lhs - rhs) < 1e-10
    assert float(solvers.tv_iso(torch.ones(1, 4, 4, dtype=torch.complex128))[0]) == 0


def test_power_iteration_known_spectrum():
    diag = torch.linspace(0.1, 3.0, 64, dtype=torch.float64).reshape(1, 8, 8)
    est = power_iteration(lambda x: diag * x, (1, 8, 8), dtype=torch.complex128, iters=500)
    assert abs(est - 3.0) < 1e-3
