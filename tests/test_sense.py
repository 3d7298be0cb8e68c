"""SENSE-NUFFT operator: adjointness, the Toeplitz normal operator, NDFT reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sirem_cli.errors import ShapeError
from sirem_cli.mri.sense import SenseOp
from sirem_cli.mri.spiral import to_radians, vd_spiral
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


def test_adjointness_float64():
    rng = np.random.default_rng(0)
    traj, dcf, smaps = _problem(rng)
    op = SenseOp(traj, dcf, smaps, dtype=torch.complex128, eps=1e-12)
    x = _crandn(rng, 2, 12, 14)
    y = _crandn(rng, 2, 3, traj.shape[0] * traj.shape[1])
    ax, ahy = op.forward(x), op.adjoint(y)
    assert ax.shape == y.shape and ahy.shape == x.shape
    assert abs(np.vdot(ax, y) - np.vdot(x, ahy)) / abs(np.vdot(ax, y)) < 1e-6
    # weighted adjoint is A^H (W y)
    assert _rel(op.adjoint(y, weighted=True), op.adjoint(y * dcf.reshape(-1))) < 1e-12


@pytest.mark.parametrize("shape", [(12, 14), (9, 7)])
def test_toeplitz_normal_equals_explicit(shape):
    rng = np.random.default_rng(1)
    traj, dcf, smaps = _problem(rng, shape=shape)
    x = _crandn(rng, 3, *shape)
    op64 = SenseOp(traj, dcf, smaps, dtype=torch.complex128, eps=1e-12)
    assert _rel(op64.normal(x), op64.normal(x, toeplitz=False)) < 1e-9
    op32 = SenseOp(traj, dcf, smaps, eps=1e-6)  # complex64
    got = op32.normal(x.astype(np.complex64))
    assert got.dtype == np.complex64
    assert _rel(got, op64.normal(x, toeplitz=False)) < 1e-4


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
    op = SenseOp(traj, dcf, smaps, dtype=torch.complex128, eps=1e-12)
    assert _rel(op.normal(x), expected) < 1e-9
    ndft = SenseOp(traj, dcf, smaps, dtype=torch.complex128, nufft=NdftOp(traj, (8, 10)))
    assert _rel(ndft.normal(x, toeplitz=False), expected) < 1e-12
    assert _rel(op.forward(x), (a @ x.reshape(-1)).reshape(2, -1)) < 1e-9
    # power iteration finds the top eigenvalue of the dense normal matrix
    top = np.linalg.eigvalsh(dense).max()
    assert abs(op.max_eigenvalue(iters=300) - top) / top < 1e-2


def test_usc_sized_batch_and_tensor_io():
    rng = np.random.default_rng(3)
    traj_c, dcf = vd_spiral()
    traj = to_radians(traj_c).astype(np.float32)
    smaps = _crandn(rng, 8, 84, 84).astype(np.complex64)
    op = SenseOp(traj, np.broadcast_to(dcf, (13, 630)), smaps)
    x = torch.from_numpy(_crandn(rng, 2, 84, 84).astype(np.complex64))
    y = op.forward(x)
    assert (
        isinstance(y, torch.Tensor) and y.shape == (2, 8, 13 * 630) and y.dtype == torch.complex64
    )
    n1 = op.normal(x)
    n2 = op.normal(x, toeplitz=False)
    assert _rel(n1.numpy(), n2.numpy()) < 1e-3  # eps 1e-4 NUFFTs vs the kernel


def test_validation():
    rng = np.random.default_rng(4)
    traj, dcf, smaps = _problem(rng)
    with pytest.raises(ShapeError, match="smaps"):
        SenseOp(traj, dcf, smaps[0])
    with pytest.raises(ShapeError, match="dcf"):
        SenseOp(traj, dcf[:2], smaps)
    with pytest.raises(ShapeError, match="dcf"):
        SenseOp(traj, -dcf, smaps)
    with pytest.raises(ShapeError, match="dtype"):
        SenseOp(traj, dcf, smaps, dtype=torch.float32)
    op = SenseOp(traj, dcf, smaps)
    with pytest.raises(ShapeError, match="image"):
        op.forward(np.zeros((2, 12, 13), np.complex64))
    with pytest.raises(ShapeError, match="kspace"):
        op.adjoint(np.zeros((2, 2, 240), np.complex64))
