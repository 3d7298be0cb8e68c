"""2D non-uniform FFTs for spiral MRI: finufft on the CPU, cufinufft on CUDA.

``make_nufft`` picks the backend from the device; the convention (signs, centred
modes, no normalization) is in :mod:`sirem_cli.nufft.base`. Importing this package is
light: finufft, cufinufft and torch load only when a transform runs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from sirem_cli.nufft.backend import BackendChoice, cuda_status, select_backend
from sirem_cli.nufft.base import DEFAULT_EPS, NufftOp, check_im_shape, check_traj

__all__ = [
    "DEFAULT_EPS",
    "BackendChoice",
    "NufftOp",
    "cuda_status",
    "make_nufft",
    "select_backend",
    "shared_nufft",
]

_SHARED: OrderedDict[tuple, NufftOp] = OrderedDict()
_SHARED_LOCK = threading.Lock()
#: NUFFT operators kept by :func:`shared_nufft` (plans of a few trajectories and grid sizes).
MAX_SHARED = 48


def make_nufft(
    traj: Any,
    im_shape: Any,
    *,
    device: Any = "cpu",
    eps: float | None = None,
    n_threads: int | None = None,
    plan_opts: dict[str, Any] | None = None,
) -> NufftOp:
    """Build the NUFFT operator for one trajectory on the backend the device picks.

    Args:
        traj: (A, S, 2) or (K, 2) float radians/pixel in [-pi, pi), ``traj[..., 0]``
            along image rows.
        im_shape: (H, W).
        device: ``"cpu"`` (finufft), ``"cuda"``/``"cuda:N"`` (cufinufft, raises
            BackendUnavailable if it cannot run), ``"auto"`` (CUDA if it works, else
            finufft with ``op.notice`` set) or a ``torch.device``.
        eps: relative accuracy; None gives 1e-4 for complex64 and 1e-9 for complex128.
        n_threads: CPU threads; None chooses per batch size.
        plan_opts: extra options for the backend's ``Plan`` (see :class:`NufftOp`).

    Returns:
        A :class:`NufftOp` with ``forward`` ((..., H, W) -> (..., K)) and ``adjoint``.
    """
    choice = select_backend(device)
    op: NufftOp
    if choice.name == "cufinufft":
        from sirem_cli.nufft._cufinufft import CufinufftOp

        op = CufinufftOp(
            traj,
            im_shape,
            device=choice.device,
            eps=eps,
            n_threads=n_threads,
            plan_opts=plan_opts,
        )
    else:
        from sirem_cli.nufft._finufft import FinufftOp

        op = FinufftOp(traj, im_shape, eps=eps, n_threads=n_threads, plan_opts=plan_opts)
    op.notice = choice.notice
    return op


def shared_nufft(
    traj: Any,
    im_shape: Any,
    *,
    device: Any = "cpu",
    eps: float | None = None,
    n_threads: int | None = None,
) -> NufftOp:
    """Like :func:`make_nufft`, but one operator (and its plans) per trajectory and options.

    Every utterance of a corpus acquired with one interleaf table gets the same operator, so a
    command makes its NUFFT plans once instead of once per utterance. Operators are kept in a
    small LRU cache keyed by the points (SHA-1 of their float64 bytes), grid, device, eps and
    threads; a NufftOp serializes its own executions, so sharing it between threads is safe.
    """
    pts = check_traj(traj)
    shape = check_im_shape(im_shape)
    choice = select_backend(device)
    key = (
        hashlib.sha1(np.ascontiguousarray(pts).tobytes()).hexdigest(),
        shape,
        str(choice.device),
        choice.name,
        eps,
        n_threads,
    )
    with _SHARED_LOCK:
        op = _SHARED.get(key)
        if op is not None:
            _SHARED.move_to_end(key)
            return op
    op = make_nufft(pts, shape, device=device, eps=eps, n_threads=n_threads)
    with _SHARED_LOCK:
        _SHARED[key] = op
        while len(_SHARED) > MAX_SHARED:
            _SHARED.popitem(last=False)
    return op
