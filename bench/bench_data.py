"""Benchmarks of `sirem synth` and `sirem prepare`.

* synth: seconds and peak memory to synthesize one minute of scan (one utterance of 60 s).
* prepare: throughput (frames/s) and peak memory for 1 and for 4 utterances; the peak must not
  grow with the number of utterances (one utterance in memory at a time).

Usage: python bench/bench_data.py [--out DIR] [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _util import run_isolated, write_json
from rich.console import Console
from rich.table import Table

SYNTH = """
import time
from pathlib import Path
from sirem_cli.api.synth import run_synth
from sirem_cli.synth.corpus import SynthConfig
t0 = time.perf_counter()
res = run_synth(Path({out!r}), SynthConfig(subjects={subjects}, utterances={utterances},
                        seconds={seconds}), overwrite=True)
result = dict(wall_s=time.perf_counter() - t0, scan_s=sum(u.seconds for u in res.utterances))
"""

PREPARE = """
import time
from pathlib import Path
from sirem_cli.api.prepare import run_prepare
from sirem_cli.data.prepare import PrepareConfig
t0 = time.perf_counter()
res = run_prepare(Path({root!r}), Path({out!r}), PrepareConfig(subjects={subjects!r}), overwrite=True)
wall = time.perf_counter() - t0
frames = sum(r.frames for r in res.utterances)
result = dict(wall_s=wall, frames=frames, utterances=len(res.utterances), frames_per_s=frames / wall)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        one_min = run_isolated(
            SYNTH.format(out=f"{tmp}/minute", subjects=1, utterances=1, seconds=args.seconds)
        )
        rows.append(
            [
                "synth 1 x 60 s scan",
                f"{one_min['wall_s']:.1f} s",
                f"{one_min['scan_s'] / one_min['wall_s']:.2f} x real time",
                f"{one_min['peak_rss_mb']:.0f} MB",
            ]
        )
        corpus = f"{tmp}/corpus"
        run_isolated(SYNTH.format(out=corpus, subjects=4, utterances=1, seconds=15))
        results = {"synth_minute": one_min}
        for label, subjects in (("1", ("sub009",)), ("4", ())):
            res = run_isolated(
                PREPARE.format(root=corpus, out=f"{tmp}/p{label}.h5", subjects=subjects)
            )
            results[f"prepare_{label}"] = res
            rows.append(
                [
                    f"prepare {res['utterances']} x 15 s utterance(s)",
                    f"{res['wall_s']:.1f} s",
                    f"{res['frames_per_s']:.0f} frames/s",
                    f"{res['peak_rss_mb']:.0f} MB",
                ]
            )
    ratio = results["prepare_4"]["peak_rss_mb"] / results["prepare_1"]["peak_rss_mb"]
    results["prepare_peak_ratio_4_vs_1"] = ratio
    table = Table(title="sirem synth / prepare")
    for col in ("case", "wall", "throughput", "peak RSS"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"prepare peak memory, 4 utterances vs 1: {ratio:.2f}x")
    write_json(args.out / "bench_data.json", results)


if __name__ == "__main__":
    main()
