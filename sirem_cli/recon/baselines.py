"""Non-learned baseline reconstructions: gridding, l1-wavelet, TV and temporal TV.

All share the SENSE-NUFFT operator A (:class:`~sirem_cli.mri.sense.SenseOp`) with the
DCF as data weighting W and process a whole utterance at once (one NUFFT plan per
trajectory, frames x coils batched):

* ``gridding``: ``|A^H W y|``, one adjoint pass.
* ``wavelet``: ``min_x 1/2 ||W^(1/2)(A x - y)||^2 + lam_abs ||Psi x||_1``, full-depth
  db4 (periodization), FISTA.
* ``tv``: ``... + lam_abs TV_iso(x)`` per frame, primal-dual (Condat-Vu).
* ``ttv``: ``... + lam_abs sum_f |x_(f+1) - x_f|_1`` (temporal total variation across
  frames, the model behind the USC reference reconstructions), optionally plus
  ``lam_spatial_abs TV_iso(x)``, primal-dual.

Lambda scale: the user's ``lam`` is relative. The weight in the objective is
``lam_abs = lam * max |A^H W y|`` (maximum over all pixels and frames of the
utterance), so a result does not depend on how k-space was scaled, and for the wavelet
FISTA step the soft threshold is ``lam * max|A^H W y| / L``, i.e. about ``lam`` times
the peak image intensity.

Every output is a magnitude normalized to [0, 1] per frame (divided by its maximum).

This module's top level is import-light (``BASELINE_METHODS`` is read by the CLI):
torch and the NUFFT load inside the functions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sirem_cli.errors import InputError, ShapeError

BASELINE_METHODS: tuple[str, ...] = ("gridding", "wavelet", "tv", "ttv")

#: Relative lambdas tuned on the synthetic benchmark utterance (docs/benchmarks.md,
#: "Baselines vs BART"); choose per data set on validation data (``--lam auto``).
_DEFAULT_LAMBDA: dict[str, float] = {
    "gridding": 0.0,
    "wavelet": 0.03,
    "tv": 0.03,
    "ttv": 0.1,
}

#: Frames reconstructed together by the per-frame methods (bounds memory).
FRAME_BLOCK = 512

#: Fewest frames per worker thread for the per-frame methods.
MIN_FRAMES_PER_WORKER = 4


def default_lambda(method: str) -> float:
    """The default relative lambda of a method (0 for gridding, which has none)."""
    _check_method(method)
    return _DEFAULT_LAMBDA[method]


def _check_method(method: str) -> None:
    if method not in BASELINE_METHODS:
        raise InputError(f"method {method!r}: expected one of {', '.join(BASELINE_METHODS)}")


def _validate(
    kspace: Any, traj: Any, dcf: Any, smaps: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ksp = np.asarray(kspace)
    if ksp.ndim != 4 or min(ksp.shape) < 1:
        raise ShapeError(f"kspace: expected shape (F, C, A, S), got {ksp.shape}")
    if not np.iscomplexobj(ksp):
        raise ShapeError(f"kspace: expected complex64 data, got {ksp.dtype}")
    _, n_coils, n_arms, n_samples = ksp.shape
    traj_arr = np.asarray(traj)
    if traj_arr.shape != (n_arms, n_samples, 2) or not np.issubdtype(traj_arr.dtype, np.floating):
        raise ShapeError(
            f"traj: expected float ({n_arms}, {n_samples}, 2) radians, got {traj_arr.dtype} "
            f"{traj_arr.shape}"
        )
    dcf_arr = np.asarray(dcf)
    if dcf_arr.shape != (n_arms, n_samples) or not np.issubdtype(dcf_arr.dtype, np.floating):
        raise ShapeError(
            f"dcf: expected float ({n_arms}, {n_samples}), got {dcf_arr.dtype} {dcf_arr.shape}"
        )
    maps = np.asarray(smaps)
    if maps.ndim != 3 or maps.shape[0] != n_coils or min(maps.shape) < 1:
        raise ShapeError(f"smaps: expected shape ({n_coils}, H, W), got {maps.shape}")
    if not np.iscomplexobj(maps):
        raise ShapeError(f"smaps: expected complex64 maps, got {maps.dtype}")
    for name, arr in (("traj", traj_arr), ("dcf", dcf_arr), ("smaps", maps)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name}: contains NaN or infinite values")
    if np.any(dcf_arr < 0):
        raise InputError("dcf: contains negative weights")
    if np.max(np.abs(traj_arr)) > np.pi * (1 + 1e-6):
        raise InputError("traj: values outside [-pi, pi]; expected radians/pixel")
    return ksp, traj_arr, dcf_arr, maps


def _check_params(method: str, lam: float, iters: int) -> None:
    if method != "gridding" and not (math.isfinite(float(lam)) and float(lam) > 0):
        raise InputError(f"lam: expected a positive number for {method}, got {lam}")
    if isinstance(iters, bool) or int(iters) != iters or int(iters) < 1:
        raise InputError(f"iters: expected a positive integer, got {iters}")


def normalize_magnitude(images: Any) -> np.ndarray:
    """|images| (F, H, W) divided by each frame's maximum: float32 in [0, 1]."""
    mag = np.abs(np.asarray(images)).astype(np.float32)
    peak = mag.reshape(mag.shape[0], -1).max(axis=1)
    return mag / np.where(peak > 0, peak, 1)[:, None, None]


class BaselineProblem:
    """The data of one utterance set up for the solvers.

    Args:
        kspace: (F, C, A, S) complex k-space.
        traj: (A, S, 2) float radians/pixel.
        dcf: (A, S) float density compensation.
        smaps: (C, H, W) complex sensitivities.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        eps: NUFFT accuracy (None: default).

    Attributes:
        op: the :class:`SenseOp`.
        y: (F, C, K) complex64 k-space tensor.
        b: (F, H, W) complex64, A^H W y.
        data_const: 1/2 ||W^(1/2) y||^2 (float, computed on first use).
        scale: max |b|, the lambda scale (computed on first use).
    """

    def __init__(
        self,
        kspace: Any,
        traj: Any,
        dcf: Any,
        smaps: Any,
        *,
        device: Any = "cpu",
        eps: float | None = None,
    ) -> None:
        import torch

        from sirem_cli.mri.sense import SenseOp

        ksp, traj_arr, dcf_arr, maps = _validate(kspace, traj, dcf, smaps)
        n_frames, n_coils = ksp.shape[:2]
        self.op = SenseOp(traj_arr, dcf_arr, maps, device=device, eps=eps)
        self.y = torch.as_tensor(
            np.ascontiguousarray(ksp.reshape(n_frames, n_coils, -1), dtype=np.complex64),
            device=self.op.device,
        )
        self.b = self.op.adjoint(self.y, weighted=True)
        # NaN/inf anywhere in k-space reaches b (finite smaps and dcf are checked above);
        # checking the (8x smaller) image is cheaper than scanning k-space.
        if not bool(torch.isfinite(torch.view_as_real(self.b)).all()):
            raise InputError("kspace: contains NaN or infinite values")
        self._lipschitz: float | None = None
        self._data_const: float | None = None
        self._scale: float | None = None

    @property
    def data_const(self) -> float:
        """1/2 ||W^(1/2) y||^2, the constant of the data term."""
        if self._data_const is None:
            self._data_const = self.data_term_constant()
        return self._data_const

    def data_term_constant(self, frames: slice | None = None) -> float:
        """1/2 ||W^(1/2) y||^2 over all frames or a slice of them."""
        import torch

        y = self.y if frames is None else self.y[frames]
        return 0.5 * float((self.op.weights * torch.view_as_real(y).square().sum(-1)).sum())

    @property
    def scale(self) -> float:
        """max |A^H W y| over the utterance: the lambda scale."""
        if self._scale is None:
            self._scale = float(self.b.abs().max())
        return self._scale

    def lipschitz(self) -> float:
        """L: 1.01 x the power-iteration estimate of the largest eigenvalue of A^H W A."""
        if self._lipschitz is None:
            from sirem_cli.recon.solvers import power_iteration

            est = power_iteration(
                self.op.normal,
                (1, *self.op.im_shape),
                dtype=self.op.dtype,
                device=self.op.device,
                iters=30,
            )
            self._lipschitz = 1.01 * est if est > 0 else 1.0
        return self._lipschitz


def solve(
    method: str,
    problem: BaselineProblem,
    *,
    lam: float,
    iters: int = 100,
    lam_spatial: float = 0.0,
    track_objective: bool = False,
    progress: Callable[[int], None] | None = None,
    frames: slice | None = None,
    normal: Callable[[Any], Any] | None = None,
) -> Any:
    """Run one regularized method on a :class:`BaselineProblem`.

    Args:
        method: ``"wavelet"``, ``"tv"`` or ``"ttv"``.
        problem: the set-up data.
        lam: relative lambda (see the module notes); the objective uses
            ``lam * problem.scale``.
        iters: iterations.
        lam_spatial: for ``ttv`` only, a relative isotropic-TV weight added per frame.
        track_objective: record the objective after every iteration.
        progress: called with the iteration number.
        frames: solve only these frames (per-frame methods; ``ttv`` couples frames
            and needs all of them). Lambda scale and L stay those of the utterance.
        normal: the normal operator to use (default ``problem.op.normal``).

    Returns:
        The :class:`~sirem_cli.recon.solvers.SolverResult` (complex x of the frames).
    """
    from sirem_cli.recon.solvers import fista_wavelet, pdhg_tv

    _check_method(method)
    _check_params(method, lam, iters)
    if method == "gridding":
        raise InputError("solve: gridding has no iterative solver; use reconstruct()")
    lam_abs = float(lam) * problem.scale
    lipschitz = problem.lipschitz()
    b = problem.b if frames is None else problem.b[frames]
    normal_fn = problem.op.normal if normal is None else normal
    common = dict(
        lipschitz=lipschitz,
        iters=int(iters),
        data_const=problem.data_term_constant(frames) if track_objective else 0.0,
        track_objective=track_objective,
        progress=progress,
    )
    if method == "wavelet":
        return fista_wavelet(normal_fn, b, lam_abs, **common)
    if method == "tv":
        return pdhg_tv(normal_fn, b, lam_spatial=lam_abs, **common)
    if frames is not None and b.shape[0] != problem.b.shape[0]:
        raise InputError("solve: ttv couples all frames; it cannot run on a subset")
    if lam_spatial < 0 or not math.isfinite(lam_spatial):
        raise InputError(f"lam_spatial: expected a number >= 0, got {lam_spatial}")
    return pdhg_tv(
        normal_fn,
        problem.b,
        lam_spatial=float(lam_spatial) * problem.scale,
        lam_time=lam_abs,
        **common,
    )


def reconstruct(
    method: str,
    kspace: Any,
    traj: Any,
    dcf: Any,
    smaps: Any,
    *,
    lam: float,
    iters: int = 100,
    device: Any = "cpu",
    progress: Callable[[int], None] | None = None,
    lam_spatial: float = 0.0,
    eps: float | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Reconstruct an utterance with a baseline method.

    Args:
        method: one of :data:`BASELINE_METHODS`.
        kspace: (F, C, A, S) complex64 k-space (normalized to max magnitude 1 per
            utterance in prepared files; any scale works, see the module notes).
        traj: (A, S, 2) float32 radians/pixel in [-pi, pi).
        dcf: (A, S) float32 density compensation.
        smaps: (C, H, W) complex64 coil sensitivities.
        lam: relative regularization weight (> 0; ignored by gridding).
        iters: iterations of the iterative methods (>= 1).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        progress: called with the iteration number (per block of frames for the
            per-frame methods, which restart the count for each block).
        lam_spatial: ``ttv`` only: relative weight of an added spatial isotropic TV.
        eps: NUFFT accuracy (None: 1e-4).
        workers: CPU threads for wavelet/tv, each solving a block of frames with one
            torch thread (None: ``torch.get_num_threads()``, at most one per
            :data:`MIN_FRAMES_PER_WORKER` frames; 1 uses torch's intra-op threads).

    Returns:
        (F, H, W) float32 magnitudes, each frame divided by its maximum.

    Raises:
        ShapeError: wrong shapes or dtypes.
        InputError: NaN/inf values, an unknown method, lam <= 0, iters <= 0.
    """
    _check_method(method)
    _check_params(method, lam, iters)
    problem = BaselineProblem(kspace, traj, dcf, smaps, device=device, eps=eps)
    if method == "gridding":
        if progress is not None:
            progress(1)
        return normalize_magnitude(problem.b.cpu().numpy())
    if method == "ttv":
        return _all_frames(method, problem, lam, int(iters), lam_spatial, progress, workers)
    return _per_frame(method, problem, lam, int(iters), progress, workers)


def _single_threaded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh thread whose torch ops use one thread."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    def call() -> Any:
        torch.set_num_threads(1)  # this thread only
        return fn()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sirem-recon") as pool:
        return pool.submit(call).result()


def _prepare(problem: BaselineProblem, workers: int) -> None:
    """L, the Toeplitz kernel and the lambda scale, before any worker thread starts."""

    def prepare() -> None:
        problem.lipschitz()
        problem.op.prepare_normal()
        _ = problem.scale

    if workers > 1:
        _single_threaded(prepare)
    else:
        prepare()


def _all_frames(
    method: str,
    problem: BaselineProblem,
    lam: float,
    iters: int,
    lam_spatial: float,
    progress: Callable[[int], None] | None,
    workers: int | None,
) -> np.ndarray:
    """ttv: one solver over all frames; with several workers the normal operator is
    split over frame blocks in worker threads and everything runs single-threaded."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    workers = _auto_workers(problem) if workers is None else max(1, int(workers))
    _prepare(problem, workers)
    kwargs = {"lam": lam, "iters": iters, "lam_spatial": lam_spatial, "progress": progress}
    if workers == 1:
        return normalize_magnitude(solve(method, problem, **kwargs).x.cpu().numpy())
    op = problem.op

    def normal(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        bounds = np.linspace(0, x.shape[0], workers + 1).round().astype(int)

        def part(block: slice) -> None:
            torch.set_num_threads(1)
            out[block] = op.normal(x[block])

        jobs = [pool.submit(part, slice(int(a), int(c))) for a, c in itertools.pairwise(bounds)]
        for job in jobs:
            job.result()
        return out

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sirem-recon") as pool:
        result = _single_threaded(lambda: solve(method, problem, normal=normal, **kwargs))
    return normalize_magnitude(result.x.cpu().numpy())


def _auto_workers(problem: BaselineProblem) -> int:
    import torch

    if problem.op.device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), problem.b.shape[0] // MIN_FRAMES_PER_WORKER))


def _per_frame(
    method: str,
    problem: BaselineProblem,
    lam: float,
    iters: int,
    progress: Callable[[int], None] | None,
    workers: int | None,
) -> np.ndarray:
    """Wavelet/TV over blocks of frames, in parallel worker threads on the CPU.

    With several workers each thread runs its blocks single-threaded (torch's
    intra-op thread count is per thread), which keeps the speed of intra-op
    threading on an idle machine and avoids its synchronisation stalls on a
    busy one (docs/benchmarks.md). Only the first block reports progress.
    """
    import torch

    n_frames = problem.b.shape[0]
    workers = _auto_workers(problem) if workers is None else max(1, int(workers))
    n_blocks = max(workers, -(-n_frames // FRAME_BLOCK))
    bounds = np.linspace(0, n_frames, min(n_blocks, n_frames) + 1).round().astype(int)
    blocks = [slice(int(a), int(c)) for a, c in itertools.pairwise(bounds)]
    _prepare(problem, workers)
    out = np.empty(tuple(problem.b.shape), dtype=np.float32)

    def run(index: int) -> None:
        block = blocks[index]
        result = solve(
            method,
            problem,
            lam=lam,
            iters=iters,
            frames=block,
            progress=progress if index == 0 else None,
        )
        out[block] = normalize_magnitude(result.x.cpu().numpy())

    if workers == 1:
        for index in range(len(blocks)):
            run(index)
        return out

    def run_single_threaded(index: int) -> None:
        torch.set_num_threads(1)  # this worker thread only
        run(index)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sirem-recon") as pool:
        for job in [pool.submit(run_single_threaded, i) for i in range(len(blocks))]:
            job.result()
    return out
