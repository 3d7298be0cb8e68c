"""Linear operators with shapes, adjoints and composition (the SigPy ``Linop`` idea, in torch).

A :class:`LinearOp` maps arrays whose trailing dimensions are ``ishape`` to arrays whose
trailing dimensions are ``oshape``; any leading dimensions are a batch. ``forward`` is A,
``adjoint`` is A^H (exact, no post-processing), ``normal`` is A^H A. Operators compose like
the maths (``A = F @ S`` applies S first) and ``A.H`` is the adjoint operator, so a solver
or a test needs nothing but this interface: every operator of the package goes through one
shared adjointness, linearity and normal-operator check (``tests/test_operators.py``).

Concrete operators live with their domain: the NUFFT in :mod:`sirem_cli.nufft`, the coil
maps, SENSE and its Toeplitz normal operator in :mod:`sirem_cli.mri.sense`, finite
differences and wavelets in :mod:`sirem_cli.recon.solvers`. This module imports no torch at
import time, so ``sirem --help`` stays light.
"""

from __future__ import annotations

from typing import Any

from sirem_cli.errors import ShapeError
from sirem_cli.imaging import is_torch


class LinearOp:
    """A linear map between complex arrays (numpy or torch) with fixed trailing shapes.

    Subclasses set :attr:`ishape` and :attr:`oshape` and implement :meth:`forward` and
    :meth:`adjoint`; :meth:`normal` defaults to ``adjoint(forward(x))`` and is overridden
    where a cheaper exact form exists (Toeplitz embedding).
    """

    ishape: tuple[int, ...] = ()
    oshape: tuple[int, ...] = ()

    def forward(self, x: Any) -> Any:
        """y = A x, ``(..., *ishape) -> (..., *oshape)``."""
        raise NotImplementedError

    def adjoint(self, y: Any) -> Any:
        """x = A^H y, ``(..., *oshape) -> (..., *ishape)``."""
        raise NotImplementedError

    def normal(self, x: Any) -> Any:
        """A^H A x, ``(..., *ishape) -> (..., *ishape)``."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    @property
    def H(self) -> LinearOp:
        """The adjoint operator A^H."""
        return AdjointOp(self)

    def __matmul__(self, other: LinearOp) -> LinearOp:
        """``(A @ B) x = A (B x)``."""
        return ComposedOp(self, other)

    def check_input(self, x: Any, what: str = "input") -> None:
        """Raise ShapeError unless ``x``'s trailing dimensions are ``ishape``."""
        check_trailing(x, self.ishape, f"{type(self).__name__} {what}")

    def check_output(self, y: Any, what: str = "input") -> None:
        """Raise ShapeError unless ``y``'s trailing dimensions are ``oshape``."""
        check_trailing(y, self.oshape, f"{type(self).__name__} adjoint {what}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ishape={self.ishape}, oshape={self.oshape})"


def check_trailing(data: Any, tail: tuple[int, ...], what: str) -> None:
    """Raise ShapeError naming ``what`` unless ``data.shape`` ends with ``tail``."""
    shape = tuple(int(n) for n in getattr(data, "shape", ()))
    if len(shape) < len(tail) or (tail and shape[-len(tail) :] != tuple(tail)):
        dims = ", ".join(map(str, tail))
        raise ShapeError(f"{what}: expected shape (..., {dims}), got {shape}")


class AdjointOp(LinearOp):
    """A^H as an operator of its own (``A.H``)."""

    def __init__(self, op: LinearOp) -> None:
        self.op = op
        self.ishape, self.oshape = op.oshape, op.ishape

    def forward(self, x: Any) -> Any:
        return self.op.adjoint(x)

    def adjoint(self, y: Any) -> Any:
        return self.op.forward(y)

    @property
    def H(self) -> LinearOp:
        return self.op


class ComposedOp(LinearOp):
    """``outer @ inner``: x -> outer(inner(x)), adjoint inner^H(outer^H(y))."""

    def __init__(self, outer: LinearOp, inner: LinearOp) -> None:
        if tuple(outer.ishape) != tuple(inner.oshape):
            raise ShapeError(
                f"cannot compose {type(outer).__name__} (ishape {outer.ishape}) after "
                f"{type(inner).__name__} (oshape {inner.oshape})"
            )
        self.outer, self.inner = outer, inner
        self.ishape, self.oshape = inner.ishape, outer.oshape

    def forward(self, x: Any) -> Any:
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y: Any) -> Any:
        return self.inner.adjoint(self.outer.adjoint(y))


class DiagOp(LinearOp):
    """Pointwise multiplication by fixed weights (the DCF, arm weights, a mask).

    Args:
        weights: array or tensor of shape ``ishape`` (= ``oshape``); real weights make the
            operator self-adjoint.
    """

    def __init__(self, weights: Any) -> None:
        self.weights = weights
        self.ishape = self.oshape = tuple(int(n) for n in weights.shape)
        self._numpy: Any = None

    def _like(self, x: Any) -> Any:
        """The weights as numpy for a numpy input (torch weights are converted once)."""
        if is_torch(x) or not is_torch(self.weights):
            return self.weights
        if self._numpy is None:
            self._numpy = self.weights.detach().cpu().numpy()
        return self._numpy

    def forward(self, x: Any) -> Any:
        return x * self._like(x)

    def adjoint(self, y: Any) -> Any:
        return y * self._like(y).conj()


def power_iteration(
    normal: Any,
    shape: tuple[int, ...],
    *,
    dtype: Any = None,
    device: Any = "cpu",
    iters: int = 30,
    seed: int = 0,
) -> float:
    """Largest eigenvalue of a Hermitian positive semi-definite operator (torch tensors).

    Args:
        normal: the operator (a callable or a LinearOp's ``forward``) on tensors of ``shape``.
        shape: e.g. (1, H, W).
        dtype: complex dtype of the iterate (default torch.complex64).
        device: of the iterate.
        iters: iterations (the estimate grows towards the eigenvalue from below).
        seed: random start.

    Returns:
        The estimate of the largest eigenvalue.
    """
    import math

    import torch

    dtype = torch.complex64 if dtype is None else dtype
    gen = torch.Generator().manual_seed(seed)
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    x = torch.view_as_complex(torch.randn((*shape, 2), generator=gen, dtype=real)).to(device)
    x = x / torch.linalg.vector_norm(x)
    lam = 0.0
    for _ in range(max(1, iters)):
        y = normal(x)
        lam = float(torch.linalg.vector_norm(y))
        if lam == 0.0 or not math.isfinite(lam):
            return lam
        x = y / lam
    return lam
