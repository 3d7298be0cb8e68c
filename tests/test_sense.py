"""SENSE-NUFFT operators: the Toeplitz normal operator, NDFT reference, frames of N arms.

Adjointness, linearity and the normal operator of every operator are checked in
tests/test_operators.py; this file checks what is particular to SENSE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sirem_cli.errors import ShapeError
from sirem_cli.mri.sense import FrameSenseOp, SenseOp
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.nufft import shared_nufft
from sirem_cli.nufft._ndft import NdftOp, ndft_matrix


def _crandn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _problem(rng, n_coils=3, shape=(12, 14), n_arms=3, n_samples=80):
    """A small spiral (radians), its DCF and random smooth-ish coil maps."""
    traj_c, dcf = vd_spiral(n_arms, n_samples, max(shape))
    traj = to_radians(traj_c)
    dcf = np.broadcast_to(dcf, traj.shape[:2]).copy()
    smaps = _crandn(rng, n_coils, *shape)
    return traj, dcf, smaps


@pytest.mark.parametrize("shape", [(12, 14), (9, 7)])
def test_toeplitz_normal_equals_explicit(shape):
    rng = np.random.default_rng(1)
    traj, dcf, smaps = _problem(rng, shape=shape)
    x = _crandn(rng, 3, *shape)
    normal64 = SenseOp(traj, smaps, dtype=torch.complex128, eps=1e-12).toeplitz(dcf.reshape(-1))
    assert _rel(normal64.forward(x), normal64.explicit(x)) < 1e-9
    normal32 = SenseOp(traj, smaps, eps=1e-6).toeplitz(dcf.reshape(-1))  # complex64
    got = normal32.forward(x.astype(np.complex64))
    assert got.dtype == np.complex64
    assert _rel(got, normal64.explicit(x)) < 1e-4


def test_against_an_explicit_ndft_matrix():
    """A^H W A built densely from the NDFT matrix and the maps equals both normal ops."""
    rng = np.random.default_rng(2)
    traj, dcf, smaps = _problem(rng, n_coils=2, shape=(8, 10), n_arms=2, n_samples=60)
    e = ndft_matrix(traj, (8, 10))  # (K, HW)
    s = smaps.reshape(2, -1)
    a = np.concatenate([e * s[c][None, :] for c in range(2)])  # (C K, HW)
    w = np.tile(dcf.reshape(-1), 2)
    dense = a.conj().T @ (w[:, None] * a)
    x = _crandn(rng, 8, 10)
    expected = (dense @ x.reshape(-1)).reshape(8, 10)
    op = SenseOp(traj, smaps, dtype=torch.complex128, eps=1e-12)
    normal = op.toeplitz(dcf.reshape(-1))
    assert _rel(normal.forward(x), expected) < 1e-9
    ndft = SenseOp(traj, smaps, dtype=torch.complex128, nufft=NdftOp(traj, (8, 10)))
    assert _rel(ndft.toeplitz(dcf.reshape(-1)).explicit(x), expected) < 1e-12
    assert _rel(op.forward(x), (a @ x.reshape(-1)).reshape(2, -1)) < 1e-9
    # power iteration finds the top eigenvalue of the dense normal matrix
    from sirem_cli.linop import power_iteration

    top = np.linalg.eigvalsh(dense).max()
    est = power_iteration(normal.forward, (1, 8, 10), dtype=torch.complex128, iters=300)
    assert abs(est - top) / top < 1e-2


def test_usc_sized_batch_and_tensor_io():
    rng = np.random.default_rng(3)
    traj_c, dcf = vd_spiral()
    traj = to_radians(traj_c).astype(np.float32)
    smaps = _crandn(rng, 8, 84, 84).astype(np.complex64)
    op = SenseOp(traj, smaps)
    x = torch.from_numpy(_crandn(rng, 2, 84, 84).astype(np.complex64))
    y = op.forward(x)
    assert (
        isinstance(y, torch.Tensor) and y.shape == (2, 8, 13 * 630) and y.dtype == torch.complex64
    )
    normal = op.toeplitz(np.broadcast_to(dcf, (13, 630)).reshape(-1))
    assert _rel(normal.forward(x).numpy(), normal.explicit(x).numpy()) < 1e-3  # eps 1e-4 NUFFTs


def test_validation():
    rng = np.random.default_rng(4)
    traj, dcf, smaps = _problem(rng)
    with pytest.raises(ShapeError, match="smaps"):
        SenseOp(traj, smaps[0])
    with pytest.raises(ShapeError, match="dtype"):
        SenseOp(traj, smaps, dtype=torch.float32)
    with pytest.raises(ShapeError, match="NaN"):
        SenseOp(traj, np.full_like(smaps, np.nan))
    op = SenseOp(traj, smaps)
    with pytest.raises(ShapeError, match="dcf"):
        op.toeplitz(dcf[:2].reshape(-1))
    with pytest.raises(ShapeError, match="dcf"):
        op.toeplitz(-dcf.reshape(-1))
    with pytest.raises(ShapeError, match="image"):
        op.forward(np.zeros((2, 12, 13), np.complex64))
    with pytest.raises(ShapeError, match="kspace"):
        op.adjoint(np.zeros((2, 2, 240), np.complex64))
    with pytest.raises(ShapeError, match="arms"):
        FrameSenseOp(traj, smaps, np.array([[0, 3]]))  # interleaf 3 of a 3-interleaf table
    with pytest.raises(ShapeError, match="interleaf table"):
        FrameSenseOp(traj.reshape(-1, 2), smaps, n_frames=2)


def _rotating(n_frames: int, n_arms: int, n_interleaves: int = 13) -> np.ndarray:
    acq = np.arange(n_frames * n_arms).reshape(n_frames, n_arms)
    return acq % n_interleaves


def test_frames_of_n_arms_equal_per_frame_operators():
    """Frame t of a FrameSenseOp is exactly the SENSE operator of its own arms (in slot order)."""
    rng = np.random.default_rng(5)
    traj, dcf, smaps = _problem(rng, n_arms=13, n_samples=40)
    arms = _rotating(8, 2)[:, ::-1].copy()  # slots in reverse interleaf order on purpose
    op = FrameSenseOp(traj, smaps, arms, dtype=torch.complex128, eps=1e-12)
    assert op.oshape == (8, 3, 2, 40) and len(op.groups) == 8
    x = _crandn(rng, 8, 12, 14)
    y = _crandn(rng, *op.oshape)
    ax, ahy, per_arm = op.forward(x), op.adjoint(y), op.arm_adjoint(y)
    for t in range(8):
        single = SenseOp(traj[arms[t]], smaps, dtype=torch.complex128, eps=1e-12)
        assert _rel(ax[t], single.forward(x[t]).reshape(3, 2, 40)) < 1e-12
        assert _rel(ahy[t], single.adjoint(y[t].reshape(3, -1))) < 1e-12
        for j in range(2):
            arm = SenseOp(traj[arms[t, j]], smaps, dtype=torch.complex128, eps=1e-12)
            assert _rel(per_arm[t, j], arm.adjoint(y[t, :, j])) < 1e-12
    assert _rel(per_arm.sum(axis=1), ahy) < 1e-12
    # the block-diagonal normal operator and its restriction to a block of frames
    normal = op.normal_op(dcf)
    assert _rel(normal.forward(x), normal.explicit(x)) < 1e-9
    block = normal.frames(slice(3, 6))
    assert _rel(block.forward(x[3:6]), normal.forward(x)[3:6]) < 1e-14


def test_thirteen_arm_frames_are_one_batched_operator():
    rng = np.random.default_rng(6)
    traj, _dcf, smaps = _problem(rng, n_arms=13, n_samples=30)
    op = FrameSenseOp(traj, smaps, n_frames=5, dtype=torch.complex128, eps=1e-12)
    assert len(op.groups) == 1 and op.oshape == (5, 3, 13, 30)
    single = SenseOp(traj, smaps, dtype=torch.complex128, eps=1e-12)
    x = _crandn(rng, 5, 12, 14)
    assert _rel(op.forward(x).reshape(5, 3, -1), single.forward(x)) < 1e-14


def test_plans_and_kernels_are_shared_across_utterances():
    """Two utterances on one interleaf table reuse the NUFFT plans and Toeplitz kernels."""
    rng = np.random.default_rng(7)
    traj, dcf, smaps = _problem(rng, n_arms=13, n_samples=30)
    first = FrameSenseOp(traj, smaps, _rotating(6, 2))
    second = FrameSenseOp(traj, _crandn(rng, 3, 12, 14), _rotating(9, 2))
    assert first.groups[0][3].nufft is second.groups[0][3].nufft
    assert shared_nufft(traj[[0, 1]].reshape(-1, 2), (12, 14)) is first.groups[0][3].nufft
    k1 = first.normal_op(dcf)._ops[(0, 1)].kernel()
    k2 = second.normal_op(dcf)._ops[(0, 1)].kernel()
    assert k1 is k2


def test_differentiable_through_the_adjoint():
    rng = np.random.default_rng(8)
    traj, _, smaps = _problem(rng, n_arms=13, n_samples=20)
    op = FrameSenseOp(traj, smaps, _rotating(3, 2), dtype=torch.complex128, eps=1e-12)
    y = torch.from_numpy(_crandn(rng, *op.oshape))
    weights = torch.rand(2, dtype=torch.float64, requires_grad=True)
    probe = torch.from_numpy(_crandn(rng, *op.ishape))
    loss = torch.vdot(probe.reshape(-1), op.adjoint(y * weights[:, None]).reshape(-1)).real
    loss.backward()
    # the same gradient by linearity: d/dw_j <probe, A^H (w . y)> = Re <probe, A^H y_j>
    for j in range(2):
        yj = torch.zeros_like(y)
        yj[:, :, j] = y[:, :, j]
        expected = torch.vdot(probe.reshape(-1), op.adjoint(yj).reshape(-1)).real
        assert abs(float(weights.grad[j]) - float(expected)) < 1e-8 * abs(float(expected))


@pytest.mark.parametrize("arms", [None, "rotating"])
def test_weighted_adjoint_equals_adjoint_of_the_weighted_kspace(arms):
    """A^H (W y) computed block by block (no weighted copy) is the adjoint of W y, for one
    interleaf set and for frames of rotating arms, numpy and torch, complex64 and complex128."""
    rng = np.random.default_rng(9)
    traj, dcf, smaps = _problem(rng, n_coils=5, n_arms=13, n_samples=30)
    n_frames = 23  # 115 transforms: full pieces and a remainder of several sizes
    table = None if arms is None else _rotating(n_frames, 2)
    for dtype, tol in ((torch.complex64, 1e-6), (torch.complex128, 1e-13)):
        op = FrameSenseOp(traj, smaps, table, n_frames=n_frames, dtype=dtype)
        weights = op.weighting(dcf)
        y = _crandn(rng, *op.oshape).astype(np.complex64 if dtype == torch.complex64 else complex)
        expected = op.adjoint(weights.forward(y))
        assert _rel(op.adjoint(y, weights=weights), expected) < tol
        got = op.adjoint(torch.from_numpy(y), weights=weights.weights)
        assert isinstance(got, torch.Tensor) and _rel(got.numpy(), expected) < tol
    with pytest.raises(ShapeError, match="weights"):
        op.adjoint(y, weights=np.ones((n_frames, 1, 1, 30)))
