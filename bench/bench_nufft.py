"""NUFFT backends: finufft on the CPU against cufinufft on CUDA, at the USC geometry.

The work of `sirem reconstruct`'s MRI branch: the adjoint (type 1) of 8 coils x 13 arms x 630
samples per frame onto 84 x 84, and the forward (type 2) back, in batches of frames (64, the
reconstruct default). Each backend is timed in this run; the table gives ms per frame, the speed-up
against finufft, and the relative difference between the two backends' outputs (complex64,
default accuracy). Without a usable CUDA NUFFT the CUDA rows say why and the CPU rows still run.

With ``--sweep`` (CUDA only) it also times cufinufft's plan options for the adjoint at the same
geometry (gpu_method, gpu_maxbatchsize, upsampfac), each against the finufft output.

Usage: python bench/bench_nufft.py [--out DIR] [--frames 256] [--batch 64] [--repeats 3] [--sweep]
"""

from __future__ import annotations

import argparse
import time

from _util import write_json
from rich.console import Console
from rich.table import Table


def _timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _batched(apply, data, batch: int, sync):
    """A call of ``apply`` over ``data`` in batches of ``batch`` frames, then ``sync()``."""

    def call() -> list:
        out = [apply(data[i : i + batch]) for i in range(0, len(data), batch)]
        sync()
        return out

    return call


def sweep_cufinufft(rad, shape, kspace, reference, batch: int, repeats: int) -> list[dict]:
    """Time cufinufft's type-1 plan options on ``kspace`` (F, C, K) against ``reference``."""
    import itertools

    import numpy as np
    import torch

    from sirem_cli.nufft import make_nufft

    frames, coils = kspace.shape[:2]
    data = torch.from_numpy(kspace).cuda()
    rows = []
    grid = itertools.product((1, 2), (0, 8, 64, batch * coils), (2.0, 1.25))
    for method, maxbatch, upsamp in grid:
        opts = dict(gpu_method=method, gpu_maxbatchsize=maxbatch, upsampfac=upsamp)
        if method == 1:
            opts["gpu_sort"] = 1
        row: dict = dict(opts)
        try:
            op = make_nufft(rad, shape, device="cuda", plan_opts=opts)
            adjoint = _batched(op.adjoint, data, batch, torch.cuda.synchronize)
            row["adjoint_ms_per_frame"] = 1000 * _timed(adjoint, repeats) / frames
            got = adjoint()[0].cpu().numpy()
            row["rel_diff"] = float(np.linalg.norm(got - reference) / np.linalg.norm(reference))
        except Exception as exc:  # an unsupported combination: say so in the table
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:80]
        rows.append(row)
    return rows


def main() -> None:
    import numpy as np
    import torch

    from sirem_cli.mri.spiral import to_radians, vd_spiral
    from sirem_cli.nufft import backend, make_nufft

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="also sweep cufinufft plan options")
    args = parser.parse_args()

    traj, _ = vd_spiral()
    rad = to_radians(traj.reshape(-1, 2))
    shape = (84, 84)
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((args.frames, args.coils, rad.shape[0])) * (1 + 1j)).astype(
        np.complex64
    )
    image = (rng.standard_normal((args.frames, args.coils, *shape)) * (1 + 1j)).astype(np.complex64)

    def run(op, k, x, sync):
        adjoint = _batched(op.adjoint, k, args.batch, sync)
        forward = _batched(op.forward, x, args.batch, sync)
        return {
            "adjoint_ms_per_frame": 1000 * _timed(adjoint, args.repeats) / args.frames,
            "forward_ms_per_frame": 1000 * _timed(forward, args.repeats) / args.frames,
            "adjoint_first": adjoint()[0],
            "forward_first": forward()[0],
        }

    results: dict = {"frames": args.frames, "batch": args.batch, "coils": args.coils}
    cpu = run(make_nufft(rad, shape, device="cpu"), kspace, image, lambda: None)
    ok, reason = backend.cuda_status()
    results["cuda_status"] = reason
    cases = {"finufft (CPU)": cpu}
    if ok:
        k_gpu, x_gpu = torch.from_numpy(kspace).cuda(), torch.from_numpy(image).cuda()
        gpu = run(make_nufft(rad, shape, device="cuda"), k_gpu, x_gpu, torch.cuda.synchronize)
        for key in ("adjoint", "forward"):
            a = gpu[f"{key}_first"].cpu().numpy()
            b = cpu[f"{key}_first"]
            gpu[f"{key}_rel_diff"] = float(np.linalg.norm(a - b) / np.linalg.norm(b))
        results["gpu_name"] = torch.cuda.get_device_name()
        cases["cufinufft (CUDA)"] = gpu

    table = Table(title=f"NUFFT, {args.coils} coils x {rad.shape[0]} samples -> 84 x 84 per frame")
    for col in ("backend", "adjoint ms/frame", "forward ms/frame", "speed-up", "rel. diff"):
        table.add_column(col)
    for name, case in cases.items():
        speed = cpu["adjoint_ms_per_frame"] / case["adjoint_ms_per_frame"]
        diff = case.get("adjoint_rel_diff")
        table.add_row(
            name,
            f"{case['adjoint_ms_per_frame']:.3f}",
            f"{case['forward_ms_per_frame']:.3f}",
            f"{speed:.1f}x",
            "reference" if diff is None else f"{diff:.1e}",
        )
        results[name] = {k: v for k, v in case.items() if not k.endswith("_first")}
    console = Console()
    console.print(table)
    if not ok:
        console.print(f"CUDA not measured: {reason}")
    if ok and args.sweep:
        rows = sweep_cufinufft(rad, shape, kspace, cpu["adjoint_first"], args.batch, args.repeats)
        results["cuda_sweep"] = rows
        sweep = Table(title="cufinufft adjoint plan options (sirem default: gpu_method 1)")
        for col in ("gpu_method", "maxbatch", "upsampfac", "ms/frame", "rel. diff"):
            sweep.add_column(col)
        for row in rows:
            ms = row.get("adjoint_ms_per_frame")
            sweep.add_row(
                str(row["gpu_method"]),
                str(row["gpu_maxbatchsize"]),
                str(row["upsampfac"]),
                f"{ms:.3f}" if ms is not None else row["error"],
                f"{row['rel_diff']:.1e}" if "rel_diff" in row else "",
            )
        console.print(sweep)
    write_json(__import__("pathlib").Path(args.out) / "bench_nufft.json", results)


if __name__ == "__main__":
    main()
