"""CPU NUFFT backend on finufft: the only module that imports finufft.

Threads: every finufft plan here is single-threaded (``nthreads=1``). A batch of
``n_trans`` transforms is cut into pieces of :data:`CHUNK` transforms (the remainder into
powers of two, :func:`pieces`) that worker threads take from a shared queue, each running
them with its own plans (finufft releases the GIL; the calling thread is one of the
workers). This gives the same or better speed than finufft's own OpenMP threads on batches
and avoids their two pathologies measured on this 2-core machine (docs/benchmarks.md,
"NUFFT threads"): with the default OpenMP wait policy a 2-thread single transform is about
8 times slower than one thread, and under CPU contention a 2-thread batch can be 10 to 30
times slower (spinning workers); OMP_WAIT_POLICY=PASSIVE cures that but costs 20-40 % on
batches. The queue balances the load when another process takes one of the cores.

Plans: because the pieces have fixed sizes, a plan is made once per (direction, dtype,
piece size, worker) and serves every batch size, so utterances of any length on one
trajectory reuse the plans of the first (a plan's ``n_trans`` only sets how many
transforms one ``execute`` runs; with one thread finufft spreads and transforms them one at
a time, so the results do not depend on how a batch is cut).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.nufft.base import HostNufftOp

#: A batch needs at least this many transforms per worker before workers are added.
MIN_TRANS_PER_WORKER = 4

#: Transforms per plan execution (a batch's pieces; see :func:`pieces`).
CHUNK = 32

_COMPLEX = ("complex64", "complex128")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def available_cpus() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_workers(n_trans: int) -> int:
    """Worker threads for a batch of ``n_trans`` transforms (see the module notes)."""
    return max(1, min(available_cpus(), n_trans // MIN_TRANS_PER_WORKER))


def pieces(n_trans: int, chunk: int = CHUNK, group: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of the pieces a batch of ``n_trans`` transforms is run in.

    In units of ``group`` transforms (``n_trans`` a multiple of it): full chunks of
    ``max(1, chunk // group)`` units, then the remainder in decreasing powers of two, so a
    batch of any length uses at most ``log2(chunk) + 1`` piece sizes.
    """
    units, per = n_trans // group, max(1, chunk // group)
    out = [(lo, lo + per) for lo in range(0, units - units % per, per)]
    start, size = units - units % per, 1 << per.bit_length()
    while start < units:
        size //= 2
        if units - start >= size:
            out.append((start, start + size))
            start += size
    return [(lo * group, hi * group) for lo, hi in out]


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=max(2, available_cpus()), thread_name_prefix="sirem-nufft"
            )
        return _POOL


class FinufftOp(HostNufftOp):
    """finufft-backed 2D NUFFT on the CPU; see :class:`~sirem_cli.nufft.base.NufftOp`.

    ``n_threads`` is the number of worker threads a batch is split over (None: one per
    :data:`MIN_TRANS_PER_WORKER` transforms, at most one per CPU).
    """

    backend = "finufft"

    def __init__(self, traj: Any, im_shape: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_plans", 64)  # pieces x directions x dtypes x workers
        super().__init__(traj, im_shape, **kwargs)
        self._pts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._plan_lock = threading.Lock()

    def _points(self, cdtype: str) -> tuple[np.ndarray, np.ndarray]:
        pts = self._pts.get(cdtype)
        if pts is None:
            real = np.float32 if cdtype == "complex64" else np.float64
            pts = (
                np.ascontiguousarray(self.traj[:, 0], dtype=real),
                np.ascontiguousarray(self.traj[:, 1], dtype=real),
            )
            self._pts[cdtype] = pts
        return pts

    def workers_for(self, n_trans: int) -> int:
        """Worker threads used for a batch of ``n_trans`` transforms."""
        if self.n_threads is not None:
            return max(1, min(self.n_threads, n_trans))
        return auto_workers(n_trans)

    def _plan(self, nufft_type: int, cdtype: str, n_trans: int, slot: int) -> Any:
        """The cached single-threaded plan for a piece; ``slot`` separates workers."""

        def make() -> Any:
            import finufft

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plan = finufft.Plan(
                    nufft_type,
                    self.im_shape,
                    **self.plan_kwargs(nufft_type, cdtype, n_trans, {"nthreads": 1}),
                )
            for warning in caught:
                text = str(warning.message)
                if "does not have attribute" in text:  # finufft only warns about a bad name
                    raise InputError(f"plan_opts: finufft {text.removeprefix('Warning: ')}")
                warnings.warn(warning.message, warning.category, stacklevel=2)  # pass the rest on
            x, y = self._points(cdtype)
            plan.setpts(x, y)
            return plan

        with self._plan_lock:  # workers look plans up concurrently
            return self._cached_plan((nufft_type, cdtype, n_trans, slot), make)

    def _execute(self, nufft_type: int, data: np.ndarray, cdtype: str) -> np.ndarray:
        n_trans = data.shape[0]
        if nufft_type == 1:
            out = np.empty((n_trans, *self.im_shape), dtype=cdtype)
        else:
            out = np.empty((n_trans, self.n_points), dtype=cdtype)
        self._run(nufft_type, data, cdtype, lambda lo, hi: out[lo:hi])
        return out

    def adjoint_blocks(
        self,
        kspace: Any,
        consume: Callable[[int, int, Any], None],
        *,
        group: int = 1,
        weights: Any = None,
    ) -> None:
        """See :meth:`NufftOp.adjoint_blocks`: each worker thread weights its pieces and runs
        them into its own scratch arrays, and hands the images to ``consume`` from that
        thread."""
        data = np.asarray(kspace)
        cdtype = data.dtype.name
        if data.ndim != 2 or data.shape[1] != self.n_points or cdtype not in _COMPLEX:
            raise ShapeError(
                f"kspace: expected complex (n, {self.n_points}), got {data.dtype} {data.shape}"
            )
        n_trans, k = data.shape
        if n_trans % group:
            raise ShapeError(f"kspace: {n_trans} transforms are not a multiple of group={group}")
        wts = None
        if weights is not None:
            wts = np.asarray(weights).reshape(-1, k)
            if wts.shape[0] != n_trans // group:
                raise ShapeError(f"weights: expected ({n_trans // group}, {k}), got {wts.shape}")
        data = np.ascontiguousarray(data)
        size = max(1, CHUNK // group) * group
        scratch: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

        def buffers(slot: int) -> tuple[np.ndarray, np.ndarray | None]:
            bufs = scratch.get(slot)
            if bufs is None:
                images = np.empty((size, *self.im_shape), dtype=cdtype)
                weighted = None if wts is None else np.empty((size, k), dtype=cdtype)
                bufs = scratch[slot] = (images, weighted)
            return bufs

        def source(lo: int, hi: int, slot: int) -> np.ndarray:
            if wts is None:
                return data[lo:hi]
            out = buffers(slot)[1][: hi - lo]  # type: ignore[index]
            np.multiply(
                data[lo:hi].reshape(-1, group, k),
                wts[lo // group : hi // group, None, :],
                out=out.reshape(-1, group, k),
            )
            return out

        def target(lo: int, hi: int, slot: int) -> np.ndarray:
            return buffers(slot)[0][: hi - lo]

        with self._lock:
            self._run(1, data, cdtype, target, consume, group=group, source=source)

    def _run(
        self,
        nufft_type: int,
        data: np.ndarray,
        cdtype: str,
        target: Callable[..., np.ndarray],
        consume: Callable[[int, int, np.ndarray], None] | None = None,
        group: int = 1,
        source: Callable[[int, int, int], np.ndarray] | None = None,
    ) -> None:
        """Run a batch in pieces on the worker threads (the caller is worker 0).

        A piece lo..hi reads ``source(lo, hi, slot)`` (default ``data[lo:hi]``) and writes
        ``target(lo, hi)`` (``target(lo, hi, slot)`` when ``consume`` is given), after which
        ``consume(lo, hi, result)`` gets the result in the same thread.
        """
        n_trans = data.shape[0]
        todo = deque(pieces(n_trans, group=group))
        workers = min(self.workers_for(n_trans), len(todo))

        def work(slot: int) -> None:
            while True:
                try:
                    lo, hi = todo.popleft()  # atomic: each piece goes to one worker
                except IndexError:
                    return
                plan = self._plan(nufft_type, cdtype, hi - lo, slot)
                piece = data[lo:hi] if source is None else source(lo, hi, slot)
                if consume is None:
                    plan.execute(piece, out=target(lo, hi))
                else:
                    result = target(lo, hi, slot)
                    plan.execute(piece, out=result)
                    consume(lo, hi, result)

        jobs = [_pool().submit(work, slot) for slot in range(1, workers)]
        try:
            work(0)  # the calling thread is worker 0
        finally:
            for job in jobs:
                job.result()
