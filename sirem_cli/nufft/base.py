"""The NUFFT operator interface shared by every backend.

Convention (hdf5-format.md, "The trajectory convention"), for an image of shape (H, W)
and K non-uniform points ``traj[k] = (kr, kc)`` in radians/pixel in [-pi, pi):

* adjoint (type 1, isign=+1, centred modes, unnormalized)::

      image[r, c] = sum_k y_k exp(+i (kr_k (r - H//2) + kc_k (c - W//2)))

* forward (type 2, isign=-1), its exact adjoint::

      y_k = sum_{r,c} image[r, c] exp(-i (kr_k (r - H//2) + kc_k (c - W//2)))

``traj[..., 0]`` goes with image axis 0 (rows). Both directions accept numpy arrays or
torch tensors with any leading batch dimensions (flattened into one batched backend
call, ``n_trans``) and return the same kind of array. Complex64 and complex128 are
native; real inputs are promoted to the complex type of the same precision.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.imaging import is_torch
from sirem_cli.linop import LinearOp

#: Default accuracy per complex dtype: 1e-4 suffices for complex64 MRI data
#: (deps-and-limits.md section 2); complex128 is used for checks and gets 1e-9.
DEFAULT_EPS: dict[str, float] = {"complex64": 1e-4, "complex128": 1e-9}

_COMPLEX_OF = {
    "float16": "complex64",
    "float32": "complex64",
    "float64": "complex128",
    "complex64": "complex64",
    "complex128": "complex128",
}


def dtype_name(data: Any) -> str:
    """numpy-style dtype name of an array or tensor, e.g. ``"complex64"``."""
    if is_torch(data):
        return str(data.dtype).removeprefix("torch.")
    return np.asarray(data).dtype.name


def complex_dtype_of(data: Any, what: str = "input") -> str:
    """The complex dtype name an input is computed in.

    Raises:
        ShapeError: the dtype is neither real floating point nor complex.
    """
    name = dtype_name(data)
    try:
        return _COMPLEX_OF[name]
    except KeyError:
        raise ShapeError(f"{what}: dtype {name} is not floating point or complex") from None


def check_traj(traj: Any) -> np.ndarray:
    """Validate a trajectory and return it as a (K, 2) float64 numpy array.

    Args:
        traj: (..., 2) real, radians/pixel in [-pi, pi] (e.g. (A, S, 2) or (K, 2)).

    Raises:
        ShapeError: wrong shape, complex or non-finite values, or values outside
            [-pi, pi] (a trajectory in cycles/pixel or pixels is caught by the latter
            only when it exceeds pi).
    """
    if is_torch(traj):
        traj = traj.detach().cpu().numpy()
    arr = np.asarray(traj)
    if arr.ndim < 2 or arr.shape[-1] != 2:
        raise ShapeError(f"traj: expected shape (..., 2), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ShapeError(f"traj: expected real floating point radians, got dtype {arr.dtype}")
    flat = np.ascontiguousarray(arr.reshape(-1, 2), dtype=np.float64)
    if flat.shape[0] == 0:
        raise ShapeError("traj: has no points")
    if not np.all(np.isfinite(flat)):
        raise ShapeError("traj: contains NaN or infinite values")
    if np.max(np.abs(flat)) > np.pi * (1 + 1e-6):
        raise ShapeError(
            f"traj: values reach {np.max(np.abs(flat)):.3f}, expected radians in [-pi, pi)"
        )
    return flat


def check_im_shape(im_shape: Any) -> tuple[int, int]:
    """Validate a 2D image shape (H, W) of positive ints."""
    try:
        shape = tuple(int(n) for n in im_shape)
    except TypeError:
        raise ShapeError(f"im_shape: expected (H, W), got {im_shape!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"im_shape: expected two positive sizes (H, W), got {im_shape!r}")
    return shape  # type: ignore[return-value]


class NufftOp(LinearOp):
    """2D NUFFT for one fixed trajectory; subclasses provide the backend.

    Plans are made lazily, once per (direction, dtype, n_trans, threads), with the
    points set once, and kept in a small LRU cache so repeated calls reuse them.

    Args:
        traj: (..., 2) float radians/pixel in [-pi, pi); flattened to K points.
        im_shape: (H, W).
        eps: requested relative accuracy; None gives :data:`DEFAULT_EPS` per dtype.
        n_threads: CPU threads per call; None chooses per call (backend-specific).
        max_plans: how many plans the cache keeps.
        plan_opts: extra options for the backend's ``Plan`` (finufft's or cufinufft's own
            names, e.g. ``{"gpu_method": 2}`` or ``{"upsampfac": 1.25}``); they override the
            backend's defaults.

    Attributes:
        traj: (K, 2) float64 numpy copy of the points.
        im_shape: (H, W).
        backend: backend name (``"finufft"``, ``"cufinufft"``, ``"ndft"``).
        device: torch-style device string the backend computes on.
        notice: one-line note from backend selection (a CUDA fallback), or None.
    """

    backend = "base"

    def __init__(
        self,
        traj: Any,
        im_shape: Any,
        *,
        eps: float | None = None,
        n_threads: int | None = None,
        max_plans: int = 8,
        plan_opts: Mapping[str, Any] | None = None,
    ) -> None:
        self.traj = check_traj(traj)
        self.im_shape = check_im_shape(im_shape)
        if eps is not None and not (1e-15 < float(eps) < 1.0):
            raise ShapeError(f"eps: expected a value in (1e-15, 1), got {eps}")
        if n_threads is not None and int(n_threads) < 1:
            raise ShapeError(f"n_threads: expected a positive int, got {n_threads}")
        self.eps = None if eps is None else float(eps)
        self.n_threads = None if n_threads is None else int(n_threads)
        self.device = "cpu"
        self.notice: str | None = None
        self._plans: OrderedDict[tuple, Any] = OrderedDict()
        # Plans are not safe to execute from two threads at once; operators may be shared.
        self._lock = threading.RLock()
        self._max_plans = int(max_plans)
        self.plan_opts = dict(plan_opts or {})
        if not all(isinstance(key, str) for key in self.plan_opts):
            raise InputError(f"plan_opts: expected option names as keys, got {plan_opts!r}")

    # -- shapes ---------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        """K, the number of non-uniform points."""
        return int(self.traj.shape[0])

    @property
    def ishape(self) -> tuple[int, int]:
        """Shape of one forward input: (H, W)."""
        return self.im_shape

    @property
    def oshape(self) -> tuple[int]:
        """Shape of one forward output: (K,)."""
        return (self.n_points,)

    def eps_for(self, cdtype: str) -> float:
        """The accuracy used for a complex dtype name."""
        return self.eps if self.eps is not None else DEFAULT_EPS[cdtype]

    def plan_kwargs(
        self, nufft_type: int, cdtype: str, n_trans: int, defaults: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Keyword arguments of a finufft/cufinufft ``Plan(nufft_type, im_shape, **kwargs)``.

        The convention (sign, centred modes, accuracy), then the backend's ``defaults``, then
        ``plan_opts``, each overriding the one before.
        """
        return {
            "n_trans": n_trans,
            "eps": self.eps_for(cdtype),
            "isign": +1 if nufft_type == 1 else -1,
            "dtype": cdtype,
            "modeord": 0,
            **defaults,
            **self.plan_opts,
        }

    # -- public transforms ------------------------------------------------------------
    def forward(self, image: Any) -> Any:
        """Forward NUFFT (type 2, isign=-1): image to k-space.

        Args:
            image: (..., H, W) complex64/complex128 (or real) numpy array or tensor.

        Returns:
            (..., K) k-space of the same kind (numpy/torch), complex dtype of the
            input's precision.
        """
        return self._apply(image, 2)

    def adjoint(self, kspace: Any) -> Any:
        """Adjoint NUFFT (type 1, isign=+1): k-space to image, unnormalized.

        Args:
            kspace: (..., K) complex64/complex128 (or real) numpy array or tensor.

        Returns:
            (..., H, W) image of the same kind, complex dtype of the input's precision.
        """
        return self._apply(kspace, 1)

    def adjoint_blocks(
        self,
        kspace: Any,
        consume: Callable[[int, int, Any], None],
        *,
        group: int = 1,
        weights: Any = None,
    ) -> None:
        """The adjoint of a batch handed over block by block, without the whole output.

        ``consume(lo, hi, images)`` receives the images (hi - lo, H, W) of transforms lo..hi,
        ``lo`` and ``hi`` multiples of ``group``; the blocks cover the batch once. ``images`` is
        a scratch array of the backend's native kind (numpy here) valid only during the call,
        and calls may come from several threads at once. SENSE uses it to coil-combine each
        block while it is in cache instead of allocating the (n, H, W) coil images.

        Args:
            kspace: (n, K) complex array of the backend's native kind and dtype, n a multiple
                of ``group``.
            consume: called once per block.
            group: block boundaries fall on multiples of it (the coils of one frame).
            weights: optional (n / group, K) real weights of the same kind: transform i is
                multiplied by ``weights[i // group]`` first (the DCF of a frame, for all its
                coils), block by block, so no weighted copy of the batch is made.
        """
        data = kspace
        if weights is not None:
            k = self.n_points
            data = (kspace.reshape(-1, group, k) * weights.reshape(-1, 1, k)).reshape(-1, k)
        images = self.adjoint(data)
        consume(0, int(images.shape[0]), images)

    # -- machinery ------------------------------------------------------------------
    def _apply(self, data: Any, nufft_type: int) -> Any:
        k = self.n_points
        in_tail = self.im_shape if nufft_type == 2 else (k,)
        out_tail = (k,) if nufft_type == 2 else self.im_shape
        what = "image" if nufft_type == 2 else "kspace"
        shape = tuple(data.shape) if hasattr(data, "shape") else np.shape(data)
        nt = len(in_tail)
        if len(shape) < nt or tuple(shape[-nt:]) != tuple(in_tail):
            h, w = self.im_shape
            tail = f"(..., H, W) = (..., {h}, {w})" if nt == 2 else f"(..., {k})"
            raise ShapeError(f"{what}: expected shape {tail}, got {shape}")
        cdtype = complex_dtype_of(data, what)
        lead = tuple(shape[:-nt])
        n_trans = math.prod(lead)
        native = self._to_native(data, cdtype)
        if n_trans == 0:
            out = self._empty(lead + tuple(out_tail), cdtype, like=native)
            return self._to_user(out, like=data)
        native = native.reshape((n_trans, *in_tail))
        with self._lock:
            out = self._execute(nufft_type, native, cdtype)
        out = out.reshape((*lead, *out_tail))
        return self._to_user(out, like=data)

    def _cached_plan(self, key: tuple, make: Any) -> Any:
        plan = self._plans.get(key)
        if plan is None:
            plan = make()
            self._plans[key] = plan
            while len(self._plans) > self._max_plans:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def clear_plans(self) -> None:
        """Drop every cached plan (they are rebuilt on the next call)."""
        self._plans.clear()

    # Backend hooks -----------------------------------------------------------------
    def _to_native(self, data: Any, cdtype: str) -> Any:
        """Convert user data to the backend's contiguous array type and dtype."""
        raise NotImplementedError

    def _to_user(self, out: Any, like: Any) -> Any:
        """Convert a backend result back to the kind (numpy/torch, device) of ``like``."""
        raise NotImplementedError

    def _empty(self, shape: tuple[int, ...], cdtype: str, like: Any) -> Any:
        raise NotImplementedError

    def _execute(self, nufft_type: int, data: Any, cdtype: str) -> Any:
        """Run ``n_trans = data.shape[0]`` transforms in one call.

        Args:
            nufft_type: 1 (adjoint, (n, K) -> (n, H, W)) or 2 (forward, (n, H, W) -> (n, K)).
            data: contiguous native array of dtype ``cdtype``.
            cdtype: ``"complex64"`` or ``"complex128"``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(K={self.n_points}, im_shape={self.im_shape}, "
            f"eps={self.eps}, backend={self.backend!r}, device={self.device!r})"
        )


class HostNufftOp(NufftOp):
    """A NufftOp whose backend computes on numpy arrays in host memory."""

    def _to_native(self, data: Any, cdtype: str) -> np.ndarray:
        if is_torch(data):
            import torch

            tensor = data.detach()
            if tensor.device.type != "cpu":
                tensor = tensor.cpu()
            tensor = tensor.resolve_conj().resolve_neg().to(getattr(torch, cdtype))
            return np.ascontiguousarray(tensor.numpy())
        return np.ascontiguousarray(data, dtype=cdtype)

    def _to_user(self, out: np.ndarray, like: Any) -> Any:
        if is_torch(like):
            import torch

            tensor = torch.from_numpy(np.ascontiguousarray(out))
            return tensor if like.device.type == "cpu" else tensor.to(like.device)
        return out

    def _empty(self, shape: tuple[int, ...], cdtype: str, like: Any) -> np.ndarray:
        return np.zeros(shape, dtype=cdtype)
