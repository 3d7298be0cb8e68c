"""CPU NUFFT backend on finufft: the only module that imports finufft.

Threads: every finufft plan here is single-threaded (``nthreads=1``). A batch of
``n_trans`` transforms is split into contiguous chunks, one per worker thread, each run
by its own plan in a shared thread pool (finufft releases the GIL). This gives the same
or better speed than finufft's own OpenMP threads on batches and avoids their two
pathologies measured on this 2-core machine (docs/benchmarks.md, "NUFFT threads"):
with the default OpenMP wait policy a 2-thread single transform is about 8 times slower
than one thread, and under CPU contention a 2-thread batch can be 10 to 30 times slower
(spinning workers); OMP_WAIT_POLICY=PASSIVE cures that but costs 20-40 % on batches.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from sirem_cli.errors import InputError
from sirem_cli.nufft.base import HostNufftOp

#: A batch needs at least this many transforms per worker before workers are added.
MIN_TRANS_PER_WORKER = 4

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
        super().__init__(traj, im_shape, **kwargs)
        self._pts: dict[str, tuple[np.ndarray, np.ndarray]] = {}

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
        """The cached single-threaded plan for a chunk; ``slot`` separates workers."""

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

        return self._cached_plan((nufft_type, cdtype, n_trans, slot), make)

    def _execute(self, nufft_type: int, data: np.ndarray, cdtype: str) -> np.ndarray:
        n_trans = data.shape[0]
        if nufft_type == 1:
            out = np.empty((n_trans, *self.im_shape), dtype=cdtype)
        else:
            out = np.empty((n_trans, self.n_points), dtype=cdtype)
        workers = self.workers_for(n_trans)
        if workers == 1:
            self._plan(nufft_type, cdtype, n_trans, 0).execute(data, out=out)
            return out
        bounds = np.linspace(0, n_trans, workers + 1).round().astype(int)
        jobs = []
        for slot in range(workers):
            lo, hi = int(bounds[slot]), int(bounds[slot + 1])
            plan = self._plan(nufft_type, cdtype, hi - lo, slot)
            jobs.append(_pool().submit(plan.execute, data[lo:hi], out[lo:hi]))
        for job in jobs:
            job.result()
        return out
