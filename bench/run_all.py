"""Run every benchmark (make bench). Each writes a rich table and a JSON file under --out."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "bench_data.py",
    "bench_long.py",
    "bench_baselines.py",
    "bench_model.py",
    "bench_nufft.py",
    "bench_prior.py",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--only", nargs="*", default=None, help="subset of " + ", ".join(SCRIPTS))
    args = parser.parse_args()
    failed = []
    for script in SCRIPTS:
        if args.only and script not in args.only and script.removesuffix(".py") not in args.only:
            continue
        print(f"== {script}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), "--out", str(args.out)])
        if code:
            failed.append(script)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
