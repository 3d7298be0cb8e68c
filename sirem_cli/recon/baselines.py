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

The methods, their labels and default weights are the registry
:mod:`sirem_cli.recon.registry`. Frames may acquire any N of the utterance's interleaves
(``arms``, prepared format version 2): the operator is
:class:`~sirem_cli.mri.sense.FrameSenseOp`, one NUFFT plan and Toeplitz kernel per interleaf
set.

This module's top level is import-light: torch and the NUFFT load inside the functions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sirem_cli.errors import InputError, NonFiniteError, ShapeError
from sirem_cli.imaging import all_finite, normalize_magnitude
from sirem_cli.recon.registry import baseline_spec

#: Frames reconstructed together by the per-frame methods (bounds memory).
FRAME_BLOCK = 512

#: Fewest frames per worker thread for the per-frame methods.
MIN_FRAMES_PER_WORKER = 4

#: Most frames per block when several worker threads share the per-frame methods' blocks.
BALANCE_BLOCK = 32


def default_lambda(method: str) -> float:
    """The default relative lambda of a method (0 for gridding, which has none)."""
    return baseline_spec(method).default_lam


def _validate(
    kspace: Any, traj: Any, dcf: Any, smaps: Any, arms: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ksp = np.asarray(kspace)
    if ksp.ndim != 4 or min(ksp.shape) < 1:
        raise ShapeError(f"kspace: expected shape (F, C, N, S), got {ksp.shape}")
    if not np.iscomplexobj(ksp):
        raise ShapeError(f"kspace: expected complex64 data, got {ksp.dtype}")
    _, n_coils, n_arms, n_samples = ksp.shape
    traj_arr = np.asarray(traj)
    n_table = n_arms if arms is None else (traj_arr.shape[0] if traj_arr.ndim == 3 else -1)
    if traj_arr.shape != (n_table, n_samples, 2) or not np.issubdtype(traj_arr.dtype, np.floating):
        raise ShapeError(
            f"traj: expected a float ({'I' if arms is not None else n_arms}, {n_samples}, 2) "
            f"interleaf table in radians, got {traj_arr.dtype} {traj_arr.shape}"
        )
    dcf_arr = np.asarray(dcf)
    if dcf_arr.shape != (n_table, n_samples) or not np.issubdtype(dcf_arr.dtype, np.floating):
        raise ShapeError(
            f"dcf: expected float ({n_table}, {n_samples}), got {dcf_arr.dtype} {dcf_arr.shape}"
        )
    if arms is not None and np.shape(arms) != (ksp.shape[0], n_arms):
        raise ShapeError(f"arms: expected ({ksp.shape[0]}, {n_arms}), got {np.shape(arms)}")
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
    if baseline_spec(method).solver is not None and not (
        math.isfinite(float(lam)) and float(lam) > 0
    ):
        raise InputError(f"lam: expected a positive number for {method}, got {lam}")
    if isinstance(iters, bool) or int(iters) != iters or int(iters) < 1:
        raise InputError(f"iters: expected a positive integer, got {iters}")


class BaselineProblem:
    """The data of one utterance set up for the solvers.

    Args:
        kspace: (F, C, N, S) complex k-space, N arms per frame.
        traj: (I, S, 2) float radians/pixel, the interleaf table (I = N without ``arms``).
        dcf: (I, S) float density compensation.
        smaps: (C, H, W) complex sensitivities.
        arms: (F, N) int interleaves of each frame (None: every frame holds all I in order).
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        eps: NUFFT accuracy (None: default).
        scale: the lambda scale when these frames are part of a longer utterance (None:
            ``max |A^H W y|`` of these frames).

    Attributes:
        op: A, the :class:`~sirem_cli.mri.sense.FrameSenseOp`.
        weights: W, the DCF as a diagonal operator on k-space.
        normal: A^H W A (Toeplitz), a :class:`~sirem_cli.mri.sense.FrameNormalOp`.
        y: (F, C, N, S) complex64 k-space tensor.
        b: (F, H, W) complex64, A^H W y.
        scale: max |b|, the lambda scale (computed on first use).
    """

    def __init__(
        self,
        kspace: Any,
        traj: Any,
        dcf: Any,
        smaps: Any,
        *,
        arms: Any = None,
        device: Any = "cpu",
        eps: float | None = None,
        scale: float | None = None,
    ) -> None:
        import torch

        from sirem_cli.mri.sense import FrameSenseOp

        ksp, traj_arr, dcf_arr, maps = _validate(kspace, traj, dcf, smaps, arms)
        self.op = FrameSenseOp(traj_arr, maps, arms, n_frames=ksp.shape[0], device=device, eps=eps)
        self.weights = self.op.weighting(dcf_arr)
        self.normal = self.op.normal_op(dcf_arr)
        self.y = torch.as_tensor(
            np.ascontiguousarray(ksp, dtype=np.complex64), device=self.op.device
        )
        self.b = self.op.adjoint(self.y, weights=self.weights)  # A^H W y, no weighted copy
        # NaN/inf anywhere in k-space reaches b (finite smaps and dcf are checked above);
        # checking the (8x smaller) image is cheaper than scanning k-space.
        if not all_finite(self.b):
            raise NonFiniteError("kspace: contains NaN or infinite values")
        self._lipschitz: float | None = None
        self._scale: float | None = scale

    def data_term_constant(self, frames: slice | None = None) -> float:
        """1/2 ||W^(1/2) y||^2 over all frames or a slice of them."""
        import torch

        y = self.y if frames is None else self.y[frames]
        w = self.weights.weights if frames is None else self.weights.weights[frames]
        return 0.5 * float((w * torch.view_as_real(y).square().sum(-1)).sum())

    @property
    def scale(self) -> float:
        """max |A^H W y| over the utterance: the lambda scale."""
        if self._scale is None:
            self._scale = float(self.b.abs().max())
        return self._scale

    def lipschitz(self) -> float:
        """L: 1.01 x the power-iteration estimate of the largest eigenvalue of A^H W A."""
        if self._lipschitz is None:
            est = self.normal.max_eigenvalue(iters=30)
            self._lipschitz = 1.01 * est if est > 0 else 1.0
        return self._lipschitz


@dataclass(frozen=True)
class PriorTerm:
    """A per-frame prior image for methods that couple frames (``ttv``): the solve adds
    ``mu/2 ||M^(1/2)(x - s p)||^2`` (:func:`sirem_cli.recon.prior.prior_solve`).

    Attributes:
        prior: (F, H, W) complex prior frames p (any scale: s is fitted to the data).
        weight: M, (F, H, W) or (H, W) real >= 0, or None (1).
        mu: weight relative to L, the largest eigenvalue of A^H W A (0: plain ``ttv``).
        motion: relax temporal TV where the prior frames move
            (:func:`sirem_cli.recon.prior.motion_time_weight`; 0: off).
        uncertainty: relax temporal TV where the weight M is low (same function; 0: off).
    """

    prior: Any
    weight: Any = None
    mu: float = 0.0
    motion: float = 0.0
    uncertainty: float = 0.0


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
    prior: PriorTerm | None = None,
) -> Any:
    """Run one regularized method on a :class:`BaselineProblem`.

    Args:
        method: an iterative method of :mod:`sirem_cli.recon.registry`.
        problem: the set-up data.
        lam: relative lambda (see the module notes); the objective uses
            ``lam * problem.scale``.
        iters: iterations.
        lam_spatial: for methods with a spatial weight (``ttv``), a relative isotropic-TV
            weight added per frame.
        track_objective: record the objective after every iteration.
        progress: called with the iteration number.
        frames: solve only these frames (methods that do not couple frames). Lambda scale
            and L stay those of the utterance.
        normal: the normal operator to use (default ``problem.normal`` of those frames).
        prior: a :class:`PriorTerm` (``ttv`` only): the speech prior's data-consistent solve.

    Returns:
        The :class:`~sirem_cli.recon.solvers.SolverResult` (complex x of the frames), or with
        ``prior`` a :class:`~sirem_cli.recon.prior.PriorSolveResult`.
    """
    from sirem_cli.recon import solvers

    spec = baseline_spec(method)
    _check_params(method, lam, iters)
    if spec.solver is None:
        raise InputError(f"solve: {method} has no iterative solver; use reconstruct()")
    if (
        frames is not None
        and spec.couples_frames
        and problem.b[frames].shape[0] != problem.b.shape[0]
    ):
        raise InputError(f"solve: {method} couples all frames; it cannot run on a subset")
    if lam_spatial < 0 or not math.isfinite(lam_spatial):
        raise InputError(f"lam_spatial: expected a number >= 0, got {lam_spatial}")
    if lam_spatial > 0 and not spec.spatial_weight:
        raise InputError(f"lam_spatial: {method} has no spatial weight")
    b = problem.b if frames is None else problem.b[frames]
    if normal is None:
        normal = problem.normal.forward if frames is None else problem.normal.frames(frames).forward
    if prior is not None:
        return _prior_solve(method, problem, b, normal, prior, lam, lam_spatial, iters, progress)
    solver = getattr(solvers, spec.solver)
    return solver(
        normal,
        b,
        lam=float(lam) * problem.scale,
        lam_spatial=float(lam_spatial) * problem.scale,
        lipschitz=problem.lipschitz(),
        iters=int(iters),
        data_const=problem.data_term_constant(frames) if track_objective else 0.0,
        track_objective=track_objective,
        progress=progress,
    )


def _prior_solve(
    method: str,
    problem: BaselineProblem,
    b: Any,
    normal: Callable[[Any], Any],
    prior: PriorTerm,
    lam: float,
    lam_spatial: float,
    iters: int,
    progress: Callable[[int], None] | None,
) -> Any:
    import torch

    from sirem_cli.recon.prior import prior_solve

    if method != "ttv":
        raise InputError(f"a prior image applies to --method ttv only, not {method}")
    frames = torch.as_tensor(prior.prior).to(device=b.device, dtype=b.dtype)
    weight = None if prior.weight is None else torch.as_tensor(prior.weight).to(b.device)
    return prior_solve(
        normal,
        b,
        frames,
        mu=float(prior.mu),
        weight=weight,
        lam_spatial=float(lam_spatial) * problem.scale,
        lam_time=float(lam) * problem.scale,
        lipschitz=problem.lipschitz(),
        iters=int(iters),
        progress=progress,
        motion=float(prior.motion),
        uncertainty=float(prior.uncertainty),
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
    arms: Any = None,
    device: Any = "cpu",
    progress: Callable[[int], None] | None = None,
    lam_spatial: float = 0.0,
    eps: float | None = None,
    workers: int | None = None,
    scale: float | None = None,
    normalize: bool = True,
    prior: PriorTerm | None = None,
) -> np.ndarray:
    """Reconstruct an utterance with a baseline method.

    Args:
        method: one of :data:`~sirem_cli.recon.registry.BASELINES`.
        kspace: (F, C, N, S) complex64 k-space (normalized to max magnitude 1 per
            utterance in prepared files; any scale works, see the module notes).
        traj: (I, S, 2) float32 radians/pixel in [-pi, pi), the interleaf table.
        dcf: (I, S) float32 density compensation.
        smaps: (C, H, W) complex64 coil sensitivities.
        lam: relative regularization weight (> 0; ignored by gridding).
        iters: iterations of the iterative methods (>= 1).
        arms: (F, N) interleaves of each frame (None: all I in table order, N = I).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        progress: called with the iteration number, 1 to ``iters`` once each (for the
            per-frame methods: the iterations done per frame, averaged over the blocks).
        lam_spatial: methods with a spatial weight only: relative weight of an added
            spatial isotropic TV.
        eps: NUFFT accuracy (None: 1e-4).
        workers: CPU threads for the per-frame methods, each solving a block of frames with
            one torch thread (None: ``torch.get_num_threads()``, at most one per
            :data:`MIN_FRAMES_PER_WORKER` frames; 1 uses torch's intra-op threads).
        scale: the lambda scale (None: ``max |A^H W y|`` of these frames); a window of a
            longer utterance passes the utterance's.
        normalize: return per-frame max-normalized magnitudes (False: the complex solution).
        prior: ``ttv`` only: a :class:`PriorTerm` for these frames (mu = 0: plain ``ttv``).

    Returns:
        (F, H, W) float32 magnitudes, each frame divided by its maximum (complex64 images
        with ``normalize=False``).

    Raises:
        ShapeError: wrong shapes or dtypes.
        InputError: NaN/inf values, an unknown method, lam <= 0, iters <= 0.
    """
    spec = baseline_spec(method)
    _check_params(method, lam, iters)
    problem = _setup(
        lambda: BaselineProblem(
            kspace, traj, dcf, smaps, arms=arms, device=device, eps=eps, scale=scale
        ),
        workers,
    )
    if spec.solver is None:
        if progress is not None:
            progress(1)
        x = problem.b.cpu().numpy()
    elif spec.couples_frames:
        x = _all_frames(method, problem, lam, int(iters), lam_spatial, progress, workers, prior)
    else:
        x = _per_frame(method, problem, lam, int(iters), progress, workers)
    return normalize_magnitude(x) if normalize else np.asarray(x, dtype=np.complex64)


def import_backends(device: Any = "cpu") -> None:
    """Import what a reconstruction runs on (torch, the SENSE operators, the solvers and the
    device's NUFFT backend) now rather than inside the first :func:`reconstruct`.

    A command that times :func:`reconstruct` calls this first, so that the recorded time of
    its first utterance holds that utterance's set-up (plans, kernels, L) but not the one-off
    imports (about 1-2 s of torch on a 2-core machine) and the first full garbage collection
    after them.
    """
    import gc
    import importlib

    import pywt  # noqa: F401  (the wavelet solver's filters)

    import sirem_cli.mri.sense
    import sirem_cli.recon.solvers  # noqa: F401  (torch)
    from sirem_cli.nufft.backend import select_backend

    choice = select_backend(device)
    importlib.import_module("finufft" if choice.name == "finufft" else "cufinufft")
    # Collect now the garbage of hundreds of thousands of new objects: otherwise the first
    # full collection falls inside the first reconstruction (90 ms measured).
    gc.collect()


def _single_threaded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh thread whose torch ops use one thread."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    def call() -> Any:
        torch.set_num_threads(1)  # this thread only
        return fn()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sirem-recon") as pool:
        return pool.submit(call).result()


def _setup(make: Callable[[], BaselineProblem], workers: int | None) -> BaselineProblem:
    """Build the problem with one torch thread in this thread (unless ``workers == 1``).

    Its heavy part, A^H W y, runs on the NUFFT's own worker threads; the rest are small
    element-wise passes, which torch's intra-op threads only slow down: on a busy machine
    each parallel region waits milliseconds for a descheduled OpenMP thread.
    """
    return make() if workers == 1 else _single_threaded(make)


def _prepare(problem: BaselineProblem, workers: int) -> None:
    """L, the Toeplitz kernels and the lambda scale, before any worker thread starts."""

    def prepare() -> None:
        problem.lipschitz()
        problem.normal.prepare()
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
    prior: PriorTerm | None = None,
) -> np.ndarray:
    """Methods that couple frames: one solver over all frames; with several workers the
    normal operator is split over frame blocks in worker threads and everything runs
    single-threaded. Returns the complex (F, H, W) solution."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    workers = _auto_workers(problem) if workers is None else max(1, int(workers))
    _prepare(problem, workers)
    kwargs = {
        "lam": lam,
        "iters": iters,
        "lam_spatial": lam_spatial,
        "progress": progress,
        "prior": prior,
    }
    if workers == 1:
        return solve(method, problem, **kwargs).x.cpu().numpy()
    bounds = np.linspace(0, problem.b.shape[0], workers + 1).round().astype(int)
    blocks = [slice(int(a), int(c)) for a, c in itertools.pairwise(bounds)]
    parts = [problem.normal.frames(block) for block in blocks]

    def normal(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)

        def part(index: int) -> None:
            torch.set_num_threads(1)
            out[blocks[index]] = parts[index].forward(x[blocks[index]])

        for job in [pool.submit(part, i) for i in range(len(blocks))]:
            job.result()
        return out

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sirem-recon") as pool:
        result = _single_threaded(lambda: solve(method, problem, normal=normal, **kwargs))
    return result.x.cpu().numpy()


def _auto_workers(problem: BaselineProblem) -> int:
    import torch

    if problem.op.device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), problem.b.shape[0] // MIN_FRAMES_PER_WORKER))


class _MergedProgress:
    """One iteration count for blocks of frames solved in turn or at once: after each block
    iteration, ``progress`` gets every new value of ``floor(sum_b done_b n_b / F)`` (the
    iterations done per frame on average), once each and in order."""

    def __init__(self, progress: Callable[[int], None], sizes: list[int]) -> None:
        import threading

        self.progress, self.sizes = progress, sizes
        self.done = [0] * len(sizes)
        self.total, self.reported = sum(sizes), 0
        self.lock = threading.Lock()

    def block(self, index: int) -> Callable[[int], None]:
        def update(iteration: int) -> None:
            with self.lock:
                self.done[index] = iteration
                level = sum(d * n for d, n in zip(self.done, self.sizes, strict=True)) // self.total
                while self.reported < level:
                    self.reported += 1
                    self.progress(self.reported)

        return update


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
    busy one (docs/benchmarks.md). The blocks hold at most :data:`BALANCE_BLOCK` frames
    and the workers take them in turn, so a core taken by another process delays the
    result by about one block, not by its fixed share of the frames. Returns the
    complex (F, H, W) solution.
    """
    import torch

    n_frames = problem.b.shape[0]
    workers = _auto_workers(problem) if workers is None else max(1, int(workers))
    block_size = FRAME_BLOCK if workers == 1 else BALANCE_BLOCK
    n_blocks = max(workers, -(-n_frames // block_size))
    bounds = np.linspace(0, n_frames, min(n_blocks, n_frames) + 1).round().astype(int)
    blocks = [slice(int(a), int(c)) for a, c in itertools.pairwise(bounds)]
    _prepare(problem, workers)
    out = np.empty(tuple(problem.b.shape), dtype=np.complex64)
    merged = None
    if progress is not None:
        merged = _MergedProgress(progress, [b.stop - b.start for b in blocks])

    def run(index: int) -> None:
        block = blocks[index]
        result = solve(
            method,
            problem,
            lam=lam,
            iters=iters,
            frames=block,
            progress=None if merged is None else merged.block(index),
        )
        out[block] = result.x.cpu().numpy()

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
