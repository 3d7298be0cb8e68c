"""The speech prior's cost against temporal TV at the same iterations (issue 14, make bench).

    python bench/bench_prior.py [--out DIR] [--repeats 3] [--iters 60] [--seconds 8]

Builds a 3-speaker ``sirem synth`` corpus, prepares it at 2 arms per frame and writes a
speech-prior checkpoint with fixed weights (``--epochs 0 --no-tune``: the network's cost does
not depend on its training; ``--motion`` and ``--uncertainty`` set, so the per-pixel temporal
weight is formed and applied). Then, interleaved ``--repeats`` times, it reconstructs the test
utterance with ``sirem baseline --method ttv`` and with ``sirem reconstruct --ckpt prior.pt``
at the same weights (lam_t, lam_s) and iterations, and compares the ms/frame each command
records (everything after the imports: features, network, plans, kernels, the solve). Prints a
table and writes ``bench_prior.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, child_env, write_json

sys.path.insert(0, str(ROOT))

LAM, LAM_S, MU, MOTION, UNSURE = 0.05, 0.003, 0.1, 0.01, 1.0


def sirem(*args: object) -> None:
    cmd = [sys.executable, "-m", "sirem_cli", *(str(a) for a in args), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"bench_prior: sirem {' '.join(map(str, args))} failed:\n{proc.stderr}")


def ms_per_frame(path: Path) -> float:
    from sirem_cli.io.prepared import ReconSet

    refs = ReconSet(path).utterances
    frames = sum(r.n_frames for r in refs)
    return sum(r.ms_per_frame * r.n_frames for r in refs) / frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8.0)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sirem-bench-prior-") as tmp:
        work = Path(tmp)
        corpus, prepared, ckpt = work / "corpus", work / "p.h5", work / "prior.pt"
        sirem("synth", corpus, "--subjects", 3, "--utterances", 1, "--seconds", opts.seconds)
        sirem("prepare", corpus, prepared, "--arms-per-frame", 2)
        sirem(
            "train", prepared, "--model", "prior", "--epochs", 0, "--no-tune", "--mu", MU,
            "--lam", LAM, "--lam-spatial", LAM_S, "--motion", MOTION, "--uncertainty", UNSURE,
            "--iters", opts.iters, "--out", ckpt,
        )  # fmt: skip
        runs: dict[str, list[float]] = {"ttv": [], "speech prior": []}
        for i in range(opts.repeats):
            ttv, prior = work / f"ttv{i}.h5", work / f"prior{i}.h5"
            sirem(
                "baseline", prepared, ttv, "--method", "ttv", "--lam", LAM, "--lam-spatial",
                LAM_S, "--iters", opts.iters,
            )  # fmt: skip
            sirem("reconstruct", "--ckpt", ckpt, prepared, prior)
            runs["ttv"].append(ms_per_frame(ttv))
            runs["speech prior"].append(ms_per_frame(prior))
        from sirem_cli.io.prepared import ReconSet

        frames = ReconSet(work / "ttv0.h5").utterances[0].n_frames
    medians = {k: statistics.median(v) for k, v in runs.items()}
    ratio = medians["speech prior"] / medians["ttv"]
    report = {
        "iters": opts.iters,
        "frames": frames,
        "repeats": opts.repeats,
        "ms_per_frame": runs,
        "median_ms_per_frame": medians,
        "ratio_prior_over_ttv": ratio,
    }
    write_json(opts.out / "bench_prior.json", report)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"speech prior vs ttv, {frames} frames of 2 arms, {opts.iters} iterations")
    for col in ("method", "ms/frame (median)", "runs"):
        table.add_column(col)
    for name, values in runs.items():
        table.add_row(name, f"{medians[name]:.1f}", ", ".join(f"{v:.1f}" for v in values))
    Console().print(table)
    print(f"ratio speech prior / ttv: {ratio:.2f}x (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
