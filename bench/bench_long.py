"""Memory of long utterances at 2 arms per frame (issue 13): prepare and ttv, 15 s vs 60 s.

A 60 s scan at N = 2 is about 5,000 frames. prepare reads and writes it in blocks and ttv
reconstructs it in overlapping windows, so their peak memory should stay within 1.5x of the
peak for a 15 s scan. Each case runs in a fresh process; the peak is its own maximum RSS.
ttv runs a few iterations only (memory does not depend on them).

Usage: python bench/bench_long.py [--out DIR] [--short 15] [--long 60] [--iters 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _util import run_isolated, write_json
from rich.console import Console
from rich.table import Table

SYNTH = """
from pathlib import Path
from sirem_cli.api.synth import run_synth
from sirem_cli.synth.corpus import SynthConfig
run_synth(Path({out!r}), SynthConfig(subjects=1, utterances=1, seconds={seconds}), overwrite=True)
result = {{}}
"""

PREPARE = """
import time
from pathlib import Path
from sirem_cli.api.prepare import run_prepare
from sirem_cli.data.prepare import PrepareConfig
t0 = time.perf_counter()
res = run_prepare(Path({root!r}), Path({out!r}), PrepareConfig(arms_per_frame=2, splits=("test=sub009",)),
                  overwrite=True)
result = dict(wall_s=time.perf_counter() - t0, frames=sum(r.frames for r in res.utterances))
"""

TTV = """
import time
from pathlib import Path
from sirem_cli.api.baseline import BaselineConfig, run_baseline
t0 = time.perf_counter()
res = run_baseline([Path({prepared!r})], Path({out!r}),
                   BaselineConfig(method="ttv", iters={iters}, split="test", device="cpu"),
                   overwrite=True)
result = dict(wall_s=time.perf_counter() - t0, frames=sum(r[1] for r in res.rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--short", type=float, default=15.0)
    parser.add_argument("--long", type=float, default=60.0)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, seconds in (("short", args.short), ("long", args.long)):
            corpus, prepared = f"{tmp}/{label}", f"{tmp}/{label}.h5"
            run_isolated(SYNTH.format(out=corpus, seconds=seconds))
            results[f"prepare_{label}"] = run_isolated(PREPARE.format(root=corpus, out=prepared))
            results[f"ttv_{label}"] = run_isolated(
                TTV.format(prepared=prepared, out=f"{tmp}/{label}-ttv.h5", iters=args.iters)
            )
    table = Table(title="Long utterances at 2 arms per frame: peak memory")
    for col in ("case", f"{args.short:g} s", f"{args.long:g} s", "frames", "ratio"):
        table.add_column(col)
    for case in ("prepare", "ttv"):
        short, long = results[f"{case}_short"], results[f"{case}_long"]
        ratio = long["peak_rss_mb"] / short["peak_rss_mb"]
        results[f"{case}_peak_ratio"] = ratio
        table.add_row(
            case,
            f"{short['peak_rss_mb']:.0f} MB",
            f"{long['peak_rss_mb']:.0f} MB",
            f"{short['frames']} / {long['frames']}",
            f"{ratio:.2f}x",
        )
    Console().print(table)
    write_json(args.out / "bench_long.json", results)


if __name__ == "__main__":
    main()
