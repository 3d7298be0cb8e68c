"""Every linear operator of the package through one shared check (the SigPy / DeepInverse idea).

Each entry of :data:`OPERATORS` builds an operator in complex128; :func:`check_operator` tests
its declared shapes, adjointness <A x, y> = <x, A^H y>, linearity, the normal operator
A^H A and the ``.H`` property. Adding an operator to the package means adding one line here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from sirem_cli.linop import DiagOp, LinearOp
from sirem_cli.mri.sense import CoilOp, FrameSenseOp, SenseOp
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.nufft import make_nufft
from sirem_cli.nufft._ndft import NdftOp
from sirem_cli.recon.solvers import FiniteDiff2DOp, FiniteDiffTimeOp, WaveletOp

C128 = torch.complex128
H, W = 12, 14


def _crandn(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn((*shape, 2), generator=gen, dtype=torch.float64).view(C128).squeeze(-1)


def _spiral(n_interleaves: int = 13, n_samples: int = 60) -> tuple[np.ndarray, np.ndarray]:
    traj_c, dcf = vd_spiral(n_interleaves, n_samples, max(H, W))
    return to_radians(traj_c), np.broadcast_to(dcf, traj_c.shape[:2]).copy()


def _smaps(n_coils: int = 3) -> torch.Tensor:
    return _crandn(torch.Generator().manual_seed(7), (n_coils, H, W))


def _frame_sense() -> FrameSenseOp:
    traj, _ = _spiral()
    arms = np.array([[(2 * t) % 13, (2 * t + 1) % 13] for t in range(9)])  # rotating pairs
    return FrameSenseOp(traj, _smaps(), arms, dtype=C128, eps=1e-12)


def _toeplitz():
    traj, dcf = _spiral(3)
    return SenseOp(traj, _smaps(), dtype=C128, eps=1e-12).toeplitz(dcf.reshape(-1))


def _frame_normal():
    _, dcf = _spiral()
    return _frame_sense().normal_op(dcf)


def _composed():
    traj, dcf = _spiral(2)
    sense = SenseOp(traj, _smaps(), dtype=C128, eps=1e-12)
    weights = DiagOp(torch.as_tensor(np.sqrt(dcf.reshape(-1))).expand(3, -1))
    return weights @ sense


OPERATORS: dict[str, Callable[[], LinearOp]] = {
    "nufft-finufft": lambda: make_nufft(_spiral(2)[0], (H, W), eps=1e-12),
    "nufft-ndft": lambda: NdftOp(_spiral(2)[0], (H, W)),
    "coils": lambda: CoilOp(_smaps()),
    "sense": lambda: SenseOp(_spiral(3)[0], _smaps(), dtype=C128, eps=1e-12),
    "toeplitz-normal": _toeplitz,
    "frame-sense": _frame_sense,
    "frame-normal": _frame_normal,
    "diag": lambda: DiagOp(torch.rand(5, 7, generator=torch.Generator().manual_seed(1))),
    "composed": _composed,
    "finite-diff-2d": lambda: FiniteDiff2DOp(4, (H, W)),
    "finite-diff-time": lambda: FiniteDiffTimeOp(5, (H, W)),
    "wavelet-even": lambda: WaveletOp((32, 32), level=2),
    "wavelet-84": lambda: WaveletOp((84, 84)),  # odd band sizes: the transpose, not the inverse
}


def _inner(a: torch.Tensor, b: torch.Tensor) -> complex:
    return complex(torch.vdot(a.reshape(-1), b.reshape(-1)))


def check_operator(op: LinearOp, *, batch: tuple[int, ...] = (), rtol: float = 1e-9) -> None:
    """Shapes, adjointness, linearity, normal and ``.H`` of one operator."""
    gen = torch.Generator().manual_seed(0)
    x = _crandn(gen, (*batch, *op.ishape))
    x2 = _crandn(gen, (*batch, *op.ishape))
    y = _crandn(gen, (*batch, *op.oshape))
    ax = torch.as_tensor(op.forward(x))
    ahy = torch.as_tensor(op.adjoint(y))
    assert tuple(ax.shape) == (*batch, *op.oshape)
    assert tuple(ahy.shape) == (*batch, *op.ishape)
    lhs, rhs = _inner(ax, y), _inner(x, ahy)
    assert abs(lhs - rhs) <= rtol * abs(lhs), (lhs, rhs)
    a, b = 0.3 - 1.1j, 2.0 + 0.5j
    combo = torch.as_tensor(op.forward(a * x + b * x2))
    torch.testing.assert_close(
        combo, a * ax + b * torch.as_tensor(op.forward(x2)), rtol=1e-9, atol=1e-9
    )
    torch.testing.assert_close(
        torch.as_tensor(op.normal(x)),
        torch.as_tensor(op.adjoint(op.forward(x))),
        rtol=1e-9,
        atol=1e-9,
    )
    torch.testing.assert_close(torch.as_tensor(op.H.forward(y)), ahy)
    assert op.H.H is op


@pytest.mark.parametrize("name", list(OPERATORS))
def test_operator(name: str) -> None:
    op = OPERATORS[name]()
    # Operators whose ishape has no frame axis also take leading batch dimensions.
    batch = () if name.startswith(("frame", "finite", "composed")) else (2,)
    check_operator(op, batch=batch)


@pytest.mark.cuda
def test_cufinufft_operator(need_cuda) -> None:
    check_operator(make_nufft(_spiral(2)[0], (H, W), device="cuda", eps=1e-12), rtol=1e-6)
