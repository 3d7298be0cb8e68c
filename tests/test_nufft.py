"""NUFFT layer: convention, accuracy against the exact NDFT, adjointness, batching,
plan reuse, autograd, and backend selection with and without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sirem_cli.errors import BackendUnavailable, InputError, ShapeError
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.nufft import backend, make_nufft
from sirem_cli.nufft._finufft import CHUNK, FinufftOp, pieces
from sirem_cli.nufft._ndft import NdftOp, ndft_adjoint, ndft_forward
from sirem_cli.nufft.autograd import nufft_adjoint, nufft_forward


def _rand_traj(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.uniform(-np.pi, np.pi, size=(k, 2))


def _crandn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(autouse=True)
def _fresh_cuda_status():
    backend.cuda_status.cache_clear()
    yield
    backend.cuda_status.cache_clear()


# -- convention ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (7, 10)])
def test_adjoint_matches_the_documented_formula(shape):
    """image[r, c] = sum_k y_k exp(+i (kr (r - H//2) + kc (c - W//2))), written out here."""
    rng = np.random.default_rng(0)
    h, w = shape
    traj = _rand_traj(rng, 40)
    y = _crandn(rng, 40)
    expected = np.zeros(shape, dtype=complex)
    for r in range(h):
        for c in range(w):
            phase = traj[:, 0] * (r - h // 2) + traj[:, 1] * (c - w // 2)
            expected[r, c] = np.sum(y * np.exp(1j * phase))
    op = make_nufft(traj, shape, eps=1e-12)
    assert _rel(op.adjoint(y), expected) < 1e-10
    assert _rel(NdftOp(traj, shape).adjoint(y), expected) < 1e-12
    # A point at +pi/2 along rows only: the phase advances along axis 0 (rows).
    single = make_nufft(np.array([[np.pi / 2, 0.0]]), shape, eps=1e-12).adjoint(np.ones(1))
    assert np.allclose(single[h // 2 + 1, w // 2], 1j) and np.allclose(
        single[h // 2, w // 2 + 1], 1
    )


def test_forward_is_the_negative_sign_transform():
    rng = np.random.default_rng(1)
    traj = _rand_traj(rng, 30)
    img = _crandn(rng, 6, 9)
    rows = np.arange(6)[:, None] - 3
    cols = np.arange(9)[None, :] - 4
    expected = [np.sum(img * np.exp(-1j * (k0 * rows + k1 * cols))) for k0, k1 in traj]
    assert _rel(make_nufft(traj, (6, 9), eps=1e-12).forward(img), np.array(expected)) < 1e-10


# -- accuracy and adjointness ------------------------------------------------------------------
def test_finufft_matches_ndft_at_default_eps_on_the_usc_spiral():
    rng = np.random.default_rng(2)
    traj_c, _ = vd_spiral()
    traj = to_radians(traj_c[:2]).astype(np.float32)  # 2 arms x 630 samples
    op = make_nufft(traj, (84, 84))
    img = _crandn(rng, 84, 84).astype(np.complex64)
    ksp = _crandn(rng, 2 * 630).astype(np.complex64)
    fwd, adj = op.forward(img), op.adjoint(ksp)
    assert fwd.dtype == np.complex64 and adj.dtype == np.complex64
    assert _rel(fwd, ndft_forward(img, traj)) < 1e-4
    assert _rel(adj, ndft_adjoint(ksp, traj, (84, 84))) < 1e-4


def test_adjointness_float64():
    rng = np.random.default_rng(3)
    traj = _rand_traj(rng, 500)
    op = make_nufft(traj, (20, 24), eps=1e-12)
    x = _crandn(rng, 3, 20, 24)
    y = _crandn(rng, 3, 500)
    lhs = np.vdot(op.forward(x), y)
    rhs = np.vdot(x, op.adjoint(y))
    assert abs(lhs - rhs) / abs(lhs) < 1e-6


def test_batching_numpy_torch_and_dtypes():
    rng = np.random.default_rng(4)
    traj = _rand_traj(rng, 64)
    op = make_nufft(traj, (8, 8))
    x = _crandn(rng, 2, 3, 8, 8).astype(np.complex64)
    out = op.forward(x)
    assert out.shape == (2, 3, 64) and isinstance(out, np.ndarray)
    loop = np.stack([[op.forward(x[i, j]) for j in range(3)] for i in range(2)])
    assert np.allclose(out, loop, atol=1e-5)
    t = torch.from_numpy(x)
    out_t = op.forward(t)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.complex64
    assert np.allclose(out_t.numpy(), out)
    real = op.adjoint(np.ones((5, 64), dtype=np.float64))
    assert real.dtype == np.complex128 and real.shape == (5, 8, 8)
    assert op.forward(np.zeros((0, 8, 8), np.complex64)).shape == (0, 64)
    conj = op.adjoint(torch.from_numpy(_crandn(rng, 64).astype(np.complex64)).conj())
    assert isinstance(conj, torch.Tensor)


def test_plans_are_made_once_and_reused(monkeypatch):
    rng = np.random.default_rng(5)
    op = make_nufft(_rand_traj(rng, 32), (8, 8), n_threads=1)
    made = []
    original = op._cached_plan

    def counting(key, make):
        return original(key, lambda: made.append(key) or make())

    monkeypatch.setattr(op, "_cached_plan", counting)
    x = _crandn(rng, 4, 8, 8)
    for _ in range(3):
        op.forward(x)
        op.adjoint(op.forward(x))
    assert len(made) == 2  # one forward and one adjoint plan, for a piece of 4
    op.forward(x[:2])
    assert len(made) == 3  # a piece of 2 gets its own plan
    # Batches are cut into pieces of CHUNK and powers of two: other lengths reuse the plans.
    op.forward(_crandn(rng, CHUNK + 4, 8, 8))
    op.forward(_crandn(rng, 3 * CHUNK + 6, 8, 8))
    assert len(made) == 4  # only the full chunk was new
    assert {key[2] for key in made} == {CHUNK, 4, 2}


def test_pieces_cover_a_batch_with_few_sizes():
    sizes = set()
    for n in range(0, 5 * CHUNK):
        cut = pieces(n)
        starts = [lo for lo, _ in cut]
        assert starts == [0, *[hi for _, hi in cut[:-1]]][: len(cut)]  # contiguous, in order
        assert sum(hi - lo for lo, hi in cut) == n
        sizes |= {hi - lo for lo, hi in cut}
    assert sizes == {CHUNK >> k for k in range(CHUNK.bit_length())}  # 32, 16, ..., 1


def test_results_do_not_depend_on_how_a_batch_is_cut():
    rng = np.random.default_rng(12)
    traj = _rand_traj(rng, 300)
    y = _crandn(rng, CHUNK + 7, 300).astype(np.complex64)
    op = FinufftOp(traj, (16, 16), n_threads=2)
    batch = op.adjoint(y)
    single = np.stack([op.adjoint(y[i : i + 1])[0] for i in range(y.shape[0])])
    assert np.array_equal(batch, single)
    x = _crandn(rng, CHUNK + 7, 16, 16).astype(np.complex64)
    assert np.array_equal(op.forward(x), np.stack([op.forward(v) for v in x]))


def test_worker_threads_give_the_same_result():
    rng = np.random.default_rng(6)
    traj = _rand_traj(rng, 200)
    y = _crandn(rng, 17, 200).astype(np.complex64)
    one = FinufftOp(traj, (16, 16), n_threads=1).adjoint(y)
    two = FinufftOp(traj, (16, 16), n_threads=2).adjoint(y)
    auto = FinufftOp(traj, (16, 16)).adjoint(y)
    assert np.array_equal(one, two) and np.array_equal(one, auto)


@pytest.mark.parametrize(
    ("traj", "shape", "data", "match"),
    [
        (np.zeros((5, 3)), (8, 8), None, "traj"),
        (np.full((5, 2), 4.0), (8, 8), None, "radians"),
        (np.array([[0.0, np.nan]]), (8, 8), None, "NaN"),
        (np.zeros((5, 2)), (8, 0), None, "im_shape"),
        (np.zeros((5, 2)), (8, 8), np.zeros((8, 7), np.complex64), "image"),
        (np.zeros((5, 2)), (8, 8), np.zeros((8, 8), np.int32), "dtype"),
    ],
)
def test_bad_inputs_raise_shape_error(traj, shape, data, match):
    with pytest.raises(ShapeError, match=match):
        op = make_nufft(traj, shape)
        op.forward(data)


# -- autograd ------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_plan_opts_reach_the_backend(device, request):
    if device == "cuda":
        request.getfixturevalue("need_cuda")
    rng = np.random.default_rng(11)
    traj = _rand_traj(rng, 400)
    k = _crandn(rng, 3, 400)
    exact = ndft_adjoint(k, traj, (16, 16))
    results = {}
    for sigma in (2.0, 1.25):
        op = make_nufft(traj, (16, 16), device=device, eps=1e-6, plan_opts={"upsampfac": sigma})
        assert op.plan_opts == {"upsampfac": sigma}
        results[sigma] = np.asarray(torch.as_tensor(op.adjoint(k)).cpu())
        assert _rel(results[sigma], exact) < 1e-5
    # a different fine grid gives a different (equally accurate) result: the option was used
    assert _rel(results[2.0], results[1.25]) > 1e-9
    with pytest.raises(InputError, match=r"plan_opts.*bogus"):
        make_nufft(traj, (16, 16), device=device, plan_opts={"bogus": 1}).adjoint(k)


def test_finufft_warnings_other_than_a_bad_option_pass_through(monkeypatch):
    import importlib
    import warnings

    finufft = importlib.import_module("finufft")  # patched here; only _finufft imports it
    real_plan = finufft.Plan

    def noisy_plan(*args, **kwargs):
        warnings.warn("finufft says something", UserWarning, stacklevel=2)
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(finufft, "Plan", noisy_plan)
    rng = np.random.default_rng(12)
    op = make_nufft(_rand_traj(rng, 50), (8, 8))
    with pytest.warns(UserWarning, match="finufft says something"):
        op.adjoint(_crandn(rng, 1, 50))


def test_gradcheck_forward_and_adjoint():
    rng = np.random.default_rng(7)
    op = make_nufft(_rand_traj(rng, 6), (8, 8), eps=1e-12)
    img = torch.from_numpy(_crandn(rng, 8, 8)).requires_grad_()
    ksp = torch.from_numpy(_crandn(rng, 6)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: nufft_forward(x, op), (img,))
    assert torch.autograd.gradcheck(lambda y: nufft_adjoint(y, op), (ksp,))


def test_gradient_reaches_real_sample_weights():
    """L(w) = ||A^H (w * y)||^2 has dL/dw = 2 Re(conj(y) * A A^H (w * y))."""
    rng = np.random.default_rng(8)
    op = make_nufft(_rand_traj(rng, 12), (8, 8), eps=1e-12)
    y = torch.from_numpy(_crandn(rng, 12))
    w = torch.from_numpy(rng.uniform(0.2, 1.0, 12)).requires_grad_()
    loss = nufft_adjoint(w * y, op).abs().square().sum()
    loss.backward()
    wy = (w.detach() * y).numpy()
    expected = 2 * np.real(np.conj(y.numpy()) * op.forward(op.adjoint(wy)))
    assert w.grad is not None and w.grad.dtype == torch.float64
    assert np.allclose(w.grad.numpy(), expected, rtol=1e-8)
    assert torch.autograd.gradcheck(lambda ww: nufft_adjoint(ww * y, op).abs().sum(), (w,))


# -- backend selection ---------------------------------------------------------------------------
_STAGES = ["_probe_driver", "_probe_torch_cuda", "_probe_cufinufft_import", "_probe_plan"]


@pytest.mark.parametrize("failing", range(len(_STAGES)))
def test_each_probe_stage_failure_falls_back(monkeypatch, failing):
    calls = []
    for i, name in enumerate(_STAGES):
        reason = f"stage {i} broken" if i == failing else None
        monkeypatch.setattr(backend, name, lambda i=i, r=reason: calls.append(i) or r)
    choice = backend.select_backend("auto")
    assert choice.name == "finufft" and choice.device == "cpu"
    assert f"stage {failing} broken" in choice.notice and "\n" not in choice.notice
    assert calls == list(range(failing + 1))  # later stages never run
    with pytest.raises(BackendUnavailable, match=r"pip install 'sirem\[gpu\]'"):
        backend.select_backend("cuda")


def test_a_crashing_probe_is_contained(monkeypatch):
    def boom():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(backend, "_probe_driver", boom)
    ok, reason = backend.cuda_status()
    assert not ok and "driver exploded" in reason


def test_success_selects_cufinufft(monkeypatch):
    for name in _STAGES:
        monkeypatch.setattr(backend, name, lambda: None)
    assert backend.select_backend("auto") == backend.BackendChoice("cufinufft", "cuda:0", None)
    assert backend.select_backend("cuda:1").device == "cuda:1"
    assert backend.select_backend("cpu").name == "finufft"


def test_device_strings():
    assert backend.select_backend(torch.device("cpu")).name == "finufft"
    with pytest.raises(InputError, match="device"):
        backend.select_backend("tpu")


def test_real_probe_on_this_machine_does_not_crash():
    ok, reason = backend.cuda_status()
    assert isinstance(ok, bool) and reason
    op = make_nufft(np.zeros((3, 2)), (4, 4), device="auto")
    if not ok:
        assert op.backend == "finufft" and op.notice and reason in op.notice


# -- CUDA (run on a GPU machine with -m cuda) ----------------------------------------------------
@pytest.mark.cuda
def test_cufinufft_matches_finufft_and_is_adjoint(need_cuda):
    rng = np.random.default_rng(9)
    traj = _rand_traj(rng, 300)
    gpu = make_nufft(traj, (16, 20), device="cuda", eps=1e-6)
    cpu = make_nufft(traj, (16, 20), eps=1e-6)
    assert gpu.backend == "cufinufft"
    x = torch.from_numpy(_crandn(rng, 3, 16, 20).astype(np.complex64)).cuda()
    y = torch.from_numpy(_crandn(rng, 3, 300).astype(np.complex64)).cuda()
    fx = gpu.forward(x)
    assert fx.is_cuda and fx.dtype == torch.complex64
    assert _rel(fx.cpu().numpy(), cpu.forward(x.cpu().numpy())) < 1e-4
    assert _rel(gpu.adjoint(y).cpu().numpy(), cpu.adjoint(y.cpu().numpy())) < 1e-4
    x64, y64 = x.to(torch.complex128), y.to(torch.complex128)
    lhs = torch.vdot(gpu.forward(x64).reshape(-1), y64.reshape(-1))
    rhs = torch.vdot(x64.reshape(-1), gpu.adjoint(y64).reshape(-1))
    assert float(abs(lhs - rhs) / abs(lhs)) < 1e-6
    assert isinstance(gpu.forward(x.cpu().numpy()), np.ndarray)


@pytest.mark.cuda
def test_cufinufft_autograd(need_cuda):
    rng = np.random.default_rng(10)
    op = make_nufft(_rand_traj(rng, 6), (8, 8), device="cuda", eps=1e-12)
    img = torch.from_numpy(_crandn(rng, 8, 8)).cuda().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: nufft_forward(x, op), (img,))
