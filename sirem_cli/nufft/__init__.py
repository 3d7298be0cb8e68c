"""2D non-uniform FFTs for spiral MRI: finufft on the CPU, cufinufft on CUDA.

``make_nufft`` picks the backend from the device; the convention (signs, centred
modes, no normalization) is in :mod:`sirem_cli.nufft.base`. Importing this package is
light: finufft, cufinufft and torch load only when a transform runs.
"""

from __future__ import annotations

from typing import Any

from sirem_cli.nufft.backend import BackendChoice, cuda_status, select_backend
from sirem_cli.nufft.base import DEFAULT_EPS, NufftOp

__all__ = [
    "DEFAULT_EPS",
    "BackendChoice",
    "NufftOp",
    "cuda_status",
    "make_nufft",
    "select_backend",
]


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
