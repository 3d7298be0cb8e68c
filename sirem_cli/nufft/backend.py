"""NUFFT backend detection and selection: finufft on the CPU, cufinufft on CUDA.

The CUDA probe can never crash the caller: each stage (driver library, torch's CUDA
runtime, the cufinufft import, a tiny plan) runs inside its own ``try`` and reports a
one-line reason when it fails. ``device="auto"`` falls back to finufft and returns that
reason as a notice for the CLI to print; ``device="cuda"`` raises
:class:`~sirem_cli.errors.BackendUnavailable` with how to fix it.

This module imports neither torch nor cufinufft at module level.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import sys
from dataclasses import dataclass

from sirem_cli.errors import BackendUnavailable, InputError

GPU_FIX = (
    "install the GPU extra (pip install 'sirem[gpu]'; its PyPI wheel needs the CUDA 12 runtime "
    "and cuFFT, for CUDA 13 build cufinufft as docs/gpu.md says) on a machine with an NVIDIA driver"
)


@dataclass(frozen=True)
class BackendChoice:
    """The NUFFT backend chosen for a device request.

    Attributes:
        name: ``"finufft"`` (CPU) or ``"cufinufft"`` (CUDA).
        device: torch device string the data lives on: ``"cpu"`` or ``"cuda:N"``.
        notice: one line explaining a fallback from CUDA to the CPU, else None.
    """

    name: str
    device: str
    notice: str | None = None


def _probe_driver() -> str | None:
    """Stage 1: load the NVIDIA driver library. Returns a reason on failure."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found)"
    return None


def _probe_torch_cuda() -> str | None:
    """Stage 2: torch sees a CUDA device. Returns a reason on failure."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "torch sees no CUDA device (CPU-only torch build or no GPU)"
    except Exception as exc:  # any failure inside torch's CUDA init
        return f"torch CUDA check failed: {_one_line(exc)}"
    return None


def _probe_cufinufft_import() -> str | None:
    """Stage 3: import cufinufft. Returns a reason on failure."""
    try:
        importlib.import_module("cufinufft")
    except ImportError as exc:
        if getattr(exc, "name", None) == "cufinufft":
            return "cufinufft is not installed"
        return f"cufinufft import failed (its CUDA runtime missing?): {_one_line(exc)}"
    except Exception as exc:
        return f"cufinufft import failed: {_one_line(exc)}"
    return None


def _probe_plan() -> str | None:
    """Stage 4: make (and free) a tiny cufinufft plan. Returns a reason on failure."""
    old_hook = sys.unraisablehook
    # A failed Plan's __del__ raises "Error destroying plan." through the unraisable
    # hook; silence it while probing so nothing is printed.
    sys.unraisablehook = lambda _args: None
    try:
        cufinufft = importlib.import_module("cufinufft")
        plan = cufinufft.Plan(1, (8, 8), n_trans=1, eps=1e-4, dtype="complex64")
        del plan
    except Exception as exc:
        return f"cufinufft cannot make a plan: {_one_line(exc)}"
    finally:
        import gc

        gc.collect()
        sys.unraisablehook = old_hook
    return None


# Looked up by name at call time so tests can monkeypatch each stage.
_PROBE_NAMES = ("_probe_driver", "_probe_torch_cuda", "_probe_cufinufft_import", "_probe_plan")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@functools.cache
def cuda_status() -> tuple[bool, str]:
    """Probe whether cufinufft can run here, stage by stage; never raises.

    The result is cached for the process (call ``cuda_status.cache_clear()`` to probe
    again).

    Returns:
        (ok, reason): ``(True, "ok")`` or ``(False, one-line reason)``.
    """
    for name in _PROBE_NAMES:
        probe = globals()[name]
        try:
            reason = probe()
        except Exception as exc:  # a probe itself must never take the caller down
            reason = f"CUDA probe {name} failed: {_one_line(exc)}"
        if reason is not None:
            return False, reason
    return True, "ok"


def _parse_device(device: object) -> tuple[str, int | None]:
    """Split a device request into ("auto"|"cpu"|"cuda", index or None)."""
    text = str(device).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, None
    if text.startswith("cuda:"):
        index = text[5:]
        if index.isdigit():
            return "cuda", int(index)
    raise InputError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def select_backend(device: object = "auto") -> BackendChoice:
    """Choose the NUFFT backend for a device request.

    Args:
        device: ``"auto"`` (CUDA when cufinufft works, else the CPU with a notice),
            ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Returns:
        The :class:`BackendChoice`.

    Raises:
        BackendUnavailable: CUDA was asked for explicitly and cannot be used.
        InputError: the device string is not understood.
    """
    kind, index = _parse_device(device)
    if kind == "cpu":
        return BackendChoice("finufft", "cpu", None)
    ok, reason = cuda_status()
    if ok:
        return BackendChoice("cufinufft", f"cuda:{index or 0}", None)
    if kind == "cuda":
        raise BackendUnavailable(f"CUDA NUFFT unavailable: {reason}; to fix, {GPU_FIX}")
    return BackendChoice("finufft", "cpu", f"CUDA not used ({reason}); running finufft on the CPU")
