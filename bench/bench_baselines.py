"""sirem's baselines against BART 0.8 on a `sirem synth` utterance, both run as their users run them.

    python bench/bench_baselines.py [--out DIR] [--repeats 3] [--quick] [--prepared FILE]

The corpus is one `sirem synth` utterance in the USC layout (``--seconds 10.5`` gives 124
13-arm frames after the 10 skipped by ``sirem prepare``), scored against its synthetic truth;
the solvers were not tuned on it. sirem runs through the CLI (``sirem baseline --method M
--iters K --lam L``), and its time is the ``ms_per_frame`` the command records (the first
plans and kernels included). BART runs with all frames of the utterance along dimension 10 in
one call, OMP_NUM_THREADS=2 and the glibc malloc tunables raised:

* gridding: ``fmac ksp dcf`` + ``nufft -a`` + ``fmac -C -s 8`` with the maps (coil combine);
* wavelet: ``pics -R W:3:0:lam -i K -e -S`` (FISTA, step from the power iteration);
* TV: ``pics -R T:3:0:lam -i K -S`` (ADMM),

with weights ``sqrt(dcf)`` and the DCF scaled so that ``sum(dcf) = pi kmax^2`` (the normal
operator close to the identity). Each tool's lambda is swept per iteration count on a subset
of frames (best PSNR wins). Then sirem and BART run interleaved, ``--repeats`` times; times are
medians with their spread. For each BART iteration count K the table gives the time sirem
needs to reach BART's PSNR: the fastest sirem run (over its iteration counts) whose PSNR is at
least BART's.

PSNR is the one ``sirem evaluate`` reports (per frame on magnitudes normalized to [0, 1],
averaged over frames). Writes ``bench_baselines.json`` into ``--out`` and prints tables.
Installs nothing: without ``bart`` on PATH (Debian: ``apt-get install bart``) sirem runs alone.
``--nufft-threads`` measures finufft's threading instead (docs/benchmarks.md, "NUFFT threads").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("gridding", "wavelet", "tv")
BART_REG = {"wavelet": "W", "tv": "T"}
# Lambda grids, steps of sqrt(2) (each tool in its own units); the sweeps pick per iteration count.
BART_LAMS = {
    "wavelet": (0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04, 0.056, 0.08),
    "tv": (0.0025, 0.0035, 0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04),
}
SIREM_LAMS = {
    "wavelet": (0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04),
    "tv": (0.0035, 0.005, 0.007, 0.01, 0.014, 0.02, 0.028),
}
BART_ITERS = (10, 20, 50, 100)
SIREM_ITERS = (3, 5, 10, 15, 20, 30, 50)
THREADS = 2


# -- the corpus -------------------------------------------------------------------------------
def sirem_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "sirem_cli", *(str(a) for a in args)]


def sirem_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_sirem(*args: object) -> None:
    proc = subprocess.run(sirem_cmd(*args), capture_output=True, text=True, env=sirem_env())
    if proc.returncode != 0:
        raise RuntimeError(f"sirem {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")


def make_corpus(work: Path, seconds: float) -> Path:
    """``sirem synth`` (1 subject, 1 utterance) and ``sirem prepare`` -> the prepared file."""
    corpus, prepared = work / "corpus", work / "prepared.h5"
    run_sirem("synth", corpus, "--subjects", 1, "--utterances", 1, "--seconds", seconds)
    run_sirem("prepare", corpus, prepared)
    return prepared


def load_utterance(prepared: Path) -> tuple[str, dict]:
    from sirem_cli.io.prepared import PreparedSet

    ref = PreparedSet([prepared]).select("all")[0]
    data = PreparedSet.read(ref, ["kspace", "traj", "dcf", "smaps", "truth"])
    return ref.prefix, data


def mean_psnr(recon: np.ndarray, truth: np.ndarray) -> float:
    from sirem_cli.metrics.image import psnr

    return float(np.mean(psnr(recon, truth)))


def load() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- BART ---------------------------------------------------------------------------------------
def write_cfl(base: Path, arr: np.ndarray) -> None:
    """BART's cfl/hdr pair: complex64, column-major."""
    arr = np.asarray(arr, dtype=np.complex64)
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape)) + "\n")
    np.asfortranarray(arr).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(n) for n in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")


def dims11(*shape: int) -> tuple[int, ...]:
    return (*shape, *[1] * (11 - len(shape)))


def bart_env(threads: int = THREADS) -> dict[str, str]:
    big = str(1 << 30)
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MALLOC_MMAP_THRESHOLD_": big,
        "MALLOC_TRIM_THRESHOLD_": big,
        "MALLOC_TOP_PAD_": big,
    }


def timed(cmd: list[str], cwd: Path | None, env: dict[str, str]) -> tuple[float, float]:
    """Run a command; (wall s, CPU s of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


class Bart:
    """BART's inputs for the frames of one utterance, written once into a folder."""

    def __init__(self, data: dict, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.dir, self.env = folder, bart_env()
        ksp = data["kspace"]  # (F, C, A, S)
        self.n_frames, n_coils, n_arms, n_samples = ksp.shape
        self.im_shape = tuple(int(n) for n in data["smaps"].shape[1:])
        h, w = self.im_shape
        traj = data["traj"].astype(np.float64)  # (A, S, 2) radians, [..., 0] along rows
        pix = np.zeros((3, n_samples, n_arms), dtype=np.complex64)
        pix[0] = (traj[..., 0] / (2 * np.pi) * h).T
        pix[1] = (traj[..., 1] / (2 * np.pi) * w).T
        kmax = float(np.hypot(pix[0].real, pix[1].real).max())
        dcf = data["dcf"].astype(np.float64)
        dcf = dcf * (np.pi * kmax**2 / dcf.sum())  # sum(dcf) = pi kmax^2
        self.kmax = kmax
        write_cfl(folder / "traj", pix)
        k = ksp.transpose(3, 2, 1, 0).reshape(1, n_samples, n_arms, n_coils, *[1] * 6, -1)
        write_cfl(folder / "ksp", k)  # (1, S, A, C, 1, ..., F)
        write_cfl(folder / "dcf", dcf.T.reshape(dims11(1, n_samples, n_arms)))
        wts = np.sqrt(dcf.T).reshape(dims11(1, n_samples, n_arms))
        wts = np.broadcast_to(wts, (1, n_samples, n_arms, *[1] * 7, self.n_frames))
        write_cfl(folder / "wts", wts)  # pics wants the time dimension of the k-space
        write_cfl(folder / "sens", data["smaps"].transpose(1, 2, 0)[:, :, None, :])

    def run(self, *args: str) -> tuple[float, float]:
        return timed(["bart", *args], self.dir, self.env)

    def image(self, name: str) -> np.ndarray:
        h, w = self.im_shape
        return read_cfl(self.dir / name).reshape(h, w, self.n_frames).transpose(2, 0, 1)

    def gridding(self) -> tuple[np.ndarray, float, float]:
        h, w = self.im_shape
        steps = (
            ("fmac", "ksp", "dcf", "kw"),
            ("nufft", "-a", "-d", f"{h}:{w}:1", "traj", "kw", "cimg"),
            ("fmac", "-C", "-s", "8", "cimg", "sens", "grid"),
        )
        wall = cpu = 0.0
        for step in steps:
            dw, dc = self.run(*step)
            wall, cpu = wall + dw, cpu + dc
        return self.image("grid"), wall, cpu

    @staticmethod
    def pics_args(method: str, lam: float, iters: int) -> list[str]:
        args = ["pics", "-R", f"{BART_REG[method]}:3:0:{lam:g}", "-i", str(iters)]
        if method == "wavelet":
            args.append("-e")
        return [*args, "-S", "-t", "traj", "-p", "wts", "ksp", "sens"]

    def pics(self, method: str, lam: float, iters: int) -> tuple[np.ndarray, float, float]:
        wall, cpu = self.run(*self.pics_args(method, lam, iters), "pics")
        return self.image("pics"), wall, cpu


ORIENTATIONS = {
    "identity": lambda x: x,
    "rot90": lambda x: np.rot90(x, 1, axes=(-2, -1)),
    "rot180": lambda x: np.rot90(x, 2, axes=(-2, -1)),
    "rot270": lambda x: np.rot90(x, 3, axes=(-2, -1)),
    "flip rows": lambda x: x[..., ::-1, :],
    "flip cols": lambda x: x[..., :, ::-1],
    "transpose": lambda x: np.swapaxes(x, -1, -2),
    "anti-transpose": lambda x: np.rot90(np.swapaxes(x, -1, -2), 2, axes=(-2, -1)),
}


def best_orientation(images: np.ndarray, truth: np.ndarray) -> tuple[str, dict[str, float]]:
    from sirem_cli.imaging import normalize_magnitude

    scores = {}
    for name, fn in ORIENTATIONS.items():
        cand = normalize_magnitude(np.ascontiguousarray(fn(images)))
        scores[name] = float(np.corrcoef(cand.ravel(), truth.ravel())[0, 1])
    return max(scores, key=lambda k: scores[k]), scores


# -- sirem --------------------------------------------------------------------------------------
def sirem_run(
    prepared: Path, out: Path, method: str, lam: float | None, iters: int
) -> tuple[np.ndarray, float, float]:
    """``sirem baseline`` in its own process: (frames, recorded ms/frame, process wall s)."""
    from sirem_cli.io.prepared import ReconSet

    args: list[object] = ["baseline", prepared, out, "--method", method, "--split", "all"]
    args += ["--device", "cpu", "--iters", iters, "--overwrite"]
    if lam is not None:
        args += ["--lam", f"{lam:g}"]
    wall, _ = timed(sirem_cmd(*args), None, sirem_env())
    recon = ReconSet(out)
    ref = recon.utterances[0]
    return recon.read(ref.prefix), ref.ms_per_frame, wall


def sirem_sweep(data: dict, frames: np.ndarray, method: str, lams: tuple, iters: tuple) -> dict:
    """PSNR of sirem on a subset of frames for each (lambda, iterations), in this process."""
    from sirem_cli.recon.baselines import reconstruct

    table: dict = {}
    for lam in lams:
        for k in iters:
            recon = reconstruct(
                method,
                data["kspace"][frames],
                data["traj"],
                data["dcf"],
                data["smaps"],
                lam=lam,
                iters=k,
                device="cpu",
            )
            table[(lam, k)] = mean_psnr(recon, data["truth"][frames])
    return table


def bart_sweep(
    bart: Bart, truth: np.ndarray, orient: str, method: str, lams: tuple, iters: tuple
) -> dict:
    from sirem_cli.imaging import normalize_magnitude

    table: dict = {}
    for lam in lams:
        for k in iters:
            img, _, _ = bart.pics(method, lam, k)
            rec = normalize_magnitude(np.ascontiguousarray(ORIENTATIONS[orient](img)))
            table[(lam, k)] = mean_psnr(rec, truth)
    return table


def best_lambda(table: dict, iters: int) -> float:
    return max((lam for lam, k in table if k == iters), key=lambda lam: table[(lam, iters)])


def summary(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--prepared", type=Path, help="use this prepared file (first utterance)")
    parser.add_argument(
        "--seconds", type=float, default=10.5, help="scan length of the synth utterance"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved timed runs of each case"
    )
    parser.add_argument(
        "--sweep-frames", type=int, default=16, help="frames (evenly spaced) for the lambda sweeps"
    )
    parser.add_argument("--bart-iters", default=",".join(map(str, BART_ITERS)))
    parser.add_argument("--sirem-iters", default=",".join(map(str, SIREM_ITERS)))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="1 repeat, fewer iteration counts")
    parser.add_argument("--no-bart", action="store_true", help="run sirem alone")
    parser.add_argument(
        "--nufft-threads", action="store_true", help="only the finufft threading table"
    )
    args = parser.parse_args(argv)
    if args.nufft_threads:
        report = nufft_threads()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "nufft_threads.json").write_text(json.dumps(report, indent=2))
        return 0
    if args.quick:
        args.repeats, args.bart_iters, args.sirem_iters, args.sweep_frames = (
            1,
            "10,100",
            "5,10,20",
            8,
        )
    bart_iters = tuple(int(v) for v in args.bart_iters.split(","))
    sirem_iters = tuple(int(v) for v in args.sirem_iters.split(","))
    methods = tuple(m for m in args.methods.split(",") if m)
    bart_ok = shutil.which("bart") is not None and not args.no_bart
    if not bart_ok and not args.no_bart:
        print("BART is missing (apt-get install bart): running sirem alone", flush=True)

    from sirem_cli.imaging import normalize_magnitude

    work = Path(tempfile.mkdtemp(prefix="sirem-bench-baselines-"))
    try:
        print(f"load {load()}: making the corpus", flush=True)
        prepared = args.prepared or make_corpus(work, args.seconds)
        prefix, data = load_utterance(prepared)
        truth = data["truth"]
        n_frames = truth.shape[0]
        info: dict = {
            "utterance": prefix,
            "prepared": str(args.prepared)
            if args.prepared
            else f"sirem synth --subjects 1 --utterances 1 --seconds {args.seconds}; sirem prepare",
            "frames": int(n_frames),
            "kspace": list(data["kspace"].shape),
            "threads": THREADS,
            "repeats": args.repeats,
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_start": load(),
        }
        sweep_idx = np.unique(
            np.linspace(0, n_frames - 1, min(args.sweep_frames, n_frames)).round().astype(int)
        )
        bart = bart_sub = None
        orient = "identity"
        if bart_ok:
            info["bart_version"] = subprocess.run(
                ["bart", "version"], capture_output=True, text=True
            ).stdout.strip()
            bart = Bart(data, work / "bart")
            info["bart_kmax_pixels"] = bart.kmax
            img, _, _ = bart.gridding()
            orient, scores = best_orientation(img, truth)
            info["bart_orientation"] = {"chosen": orient, "correlation": scores}
            sub = {k: (v[sweep_idx] if k in ("kspace", "truth") else v) for k, v in data.items()}
            bart_sub = Bart(sub, work / "bart_sweep")
        # lambda sweeps: per method and iteration count, best PSNR on the subset
        lam_bart: dict = {}
        lam_sirem: dict = {}
        sweeps: dict = {}
        for method in methods:
            if method == "gridding":
                continue
            print(f"load {load()}: sweeping lambda for {method}", flush=True)
            table = sirem_sweep(data, sweep_idx, method, SIREM_LAMS[method], sirem_iters)
            lam_sirem[method] = {k: best_lambda(table, k) for k in sirem_iters}
            sweeps[f"sirem_{method}"] = {f"{lam:g}@{k}": v for (lam, k), v in table.items()}
            if bart_sub is not None:
                table = bart_sweep(
                    bart_sub, truth[sweep_idx], orient, method, BART_LAMS[method], bart_iters
                )
                lam_bart[method] = {k: best_lambda(table, k) for k in bart_iters}
                sweeps[f"bart_{method}"] = {f"{lam:g}@{k}": v for (lam, k), v in table.items()}
        info["lambda_sweeps"] = sweeps
        info["sweep_frames"] = sweep_idx.tolist()
        # timed runs, interleaved
        runs: dict = {}

        def record(key: tuple, psnr_db: float, ms: float, extra: dict | None = None) -> None:
            entry = runs.setdefault(key, {"psnr": psnr_db, "ms": [], **(extra or {})})
            entry["ms"].append(ms)

        loads = []
        for rep in range(args.repeats):
            for method in methods:
                loads.append(load())
                print(f"load {loads[-1]}: repeat {rep + 1}/{args.repeats}, {method}", flush=True)
                if method == "gridding":
                    cases_sirem = [(None, 1)]
                    cases_bart = [(None, 1)]
                else:
                    cases_sirem = [(lam_sirem[method][k], k) for k in sirem_iters]
                    cases_bart = [(lam_bart[method][k], k) for k in bart_iters] if bart else []
                for lam, k in cases_sirem:
                    frames, ms, _ = sirem_run(prepared, work / "sirem.h5", method, lam, k)
                    record(("sirem", method, k), mean_psnr(frames, truth), ms, {"lam": lam})
                if bart is None:
                    continue
                for lam, k in cases_bart:
                    if method == "gridding":
                        img, wall, cpu = bart.gridding()
                    else:
                        img, wall, cpu = bart.pics(method, lam, k)
                    rec = normalize_magnitude(np.ascontiguousarray(ORIENTATIONS[orient](img)))
                    record(
                        ("bart", method, k),
                        mean_psnr(rec, truth),
                        1e3 * wall / n_frames,
                        {"lam": lam},
                    )
                    runs[("bart", method, k)].setdefault("cpu_ms", []).append(1e3 * cpu / n_frames)
        info["load_during"] = loads
        print(f"load {load()}: cold start", flush=True)
        info["cold_start"] = cold_start(prepared, max(3, args.repeats))
        info["load_end"] = load()
        results = compare(runs, methods, bart is not None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "info": info,
        "runs": [{"tool": t, "method": m, "iters": k, **v} for (t, m, k), v in runs.items()],
        "comparison": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_baselines.json").write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    return 0


def compare(runs: dict, methods: tuple, with_bart: bool) -> list[dict]:
    """Per method and BART iteration count: sirem's fastest run at BART's PSNR or better.

    Gridding is the same computation in both tools: its row compares the times (and lists both
    PSNRs, equal up to the NUFFTs' accuracy).
    """
    rows = []
    for method in methods:
        sirem = {k: v for (t, m, k), v in runs.items() if t == "sirem" and m == method}
        bart = {k: v for (t, m, k), v in runs.items() if t == "bart" and m == method}
        if not with_bart:
            for k, v in sorted(sirem.items()):
                rows.append(
                    {
                        "method": method,
                        "sirem_iters": k,
                        "sirem_lam": v["lam"],
                        "sirem_psnr": v["psnr"],
                        "sirem_ms": summary(v["ms"]),
                    }
                )
            continue
        for k, b in sorted(bart.items()):
            row = {
                "method": method,
                "bart_iters": k,
                "bart_lam": b["lam"],
                "bart_psnr": b["psnr"],
                "bart_ms": summary(b["ms"]),
                "bart_cpu_ms": summary(b["cpu_ms"]),
            }
            if method == "gridding":
                good = [(statistics.median(v["ms"]), kk, v) for kk, v in sirem.items()]
            else:
                good = [
                    (statistics.median(v["ms"]), kk, v)
                    for kk, v in sirem.items()
                    if v["psnr"] >= b["psnr"]
                ]
            if good:
                ms, kk, v = min(good, key=lambda g: g[0])
                row.update(
                    sirem_iters=kk,
                    sirem_lam=v["lam"],
                    sirem_psnr=v["psnr"],
                    sirem_ms=summary(v["ms"]),
                )
                row["ratio"] = ms / row["bart_ms"]["median"]
                row["ratio_spread"] = [min(v["ms"]) / max(b["ms"]), max(v["ms"]) / min(b["ms"])]
            else:
                best = max(sirem.items(), key=lambda kv: kv[1]["psnr"])
                row.update(sirem_iters=None, sirem_best_psnr=best[1]["psnr"], ratio=None)
            rows.append(row)
    return rows


def print_tables(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    info, console = report["info"], Console()
    console.print(
        f"{info['utterance']}: {info['frames']} frames, {info['threads']} threads, {info['repeats']} repeats; load {info['load_start']} -> {info['load_end']}"
    )
    table = Table(
        title="sirem vs BART 0.8: time sirem needs to reach BART's PSNR (ms/frame, median [min-max])"
    )
    for col in (
        "method",
        "BART iters",
        "BART lam",
        "BART PSNR",
        "BART ms/frame",
        "sirem iters",
        "sirem lam",
        "sirem PSNR",
        "sirem ms/frame",
        "sirem/BART",
    ):
        table.add_column(col, justify="right")

    def ms(s: dict) -> str:
        return f"{s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}]"

    for row in report["comparison"]:
        if "bart_psnr" not in row:
            table.add_row(
                row["method"],
                "-",
                "-",
                "-",
                "-",
                str(row["sirem_iters"]),
                "-",
                f"{row['sirem_psnr']:.2f}",
                ms(row["sirem_ms"]),
                "-",
            )
            continue
        if row.get("ratio") is None:
            sirem = ("-", "-", f"best {row['sirem_best_psnr']:.2f}", "not reached", "-")
        else:
            lo, hi = row["ratio_spread"]
            sirem = (
                str(row["sirem_iters"]),
                f"{row['sirem_lam']:g}" if row["sirem_lam"] else "-",
                f"{row['sirem_psnr']:.2f}",
                ms(row["sirem_ms"]),
                f"{row['ratio']:.3f} [{lo:.3f}-{hi:.3f}]",
            )
        lam = f"{row['bart_lam']:g}" if row["bart_lam"] else "-"
        table.add_row(
            row["method"],
            str(row["bart_iters"]),
            lam,
            f"{row['bart_psnr']:.2f}",
            ms(row["bart_ms"]),
            *sirem,
        )
    console.print(table)
    curve = Table(
        title="every timed run (sirem: ms/frame recorded by sirem baseline; median [min-max])"
    )
    for col in ("tool", "method", "iters", "lam", "PSNR", "ms/frame"):
        curve.add_column(col, justify="right")
    for run in report["runs"]:
        lam = f"{run['lam']:g}" if run.get("lam") else "-"
        curve.add_row(
            run["tool"],
            run["method"],
            str(run["iters"]),
            lam,
            f"{run['psnr']:.2f}",
            ms(summary(run["ms"])),
        )
    console.print(curve)
    for method, cold in info.get("cold_start", {}).items():
        console.print(
            f"cold start, {method}: first reconstruction {cold['first_s']['median']:.3f} s, "
            f"second {cold['second_s']['median']:.3f} s, difference {cold['cold_extra_s']['median']:.3f} s "
            f"[{cold['cold_extra_s']['min']:.3f} to {cold['cold_extra_s']['max']:.3f}] "
            f"(imports before it: {cold['imports_s']['median']:.2f} s)"
        )


# -- cold start -----------------------------------------------------------------------------------
_COLD_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
from sirem_cli.io.prepared import PreparedSet
from sirem_cli.recon.baselines import import_backends, reconstruct
import_backends("cpu")
imports = time.perf_counter() - t0
ref = PreparedSet([sys.argv[2]]).select("all")[0]
data = PreparedSet.read(ref, ["kspace", "traj", "dcf", "smaps"])
walls = []
for _ in range(2):
    t = time.perf_counter()
    reconstruct(sys.argv[3], data["kspace"], data["traj"], data["dcf"], data["smaps"],
                lam=0.01, iters=int(sys.argv[4]), device="cpu")
    walls.append(time.perf_counter() - t)
print(json.dumps({"imports_s": imports, "first_s": walls[0], "second_s": walls[1]}))
"""


def cold_start(prepared: Path, repeats: int) -> dict:
    """The first reconstruction of a fresh process (imports done) against the second one of the
    same utterance, which reuses the plans and kernels: the difference is the cold start."""
    out: dict = {}
    for method, iters in (("gridding", 1), ("wavelet", 10)):
        runs = []
        for _ in range(repeats):
            proc = subprocess.run(
                [sys.executable, "-c", _COLD_CHILD, str(ROOT), str(prepared), method, str(iters)],
                capture_output=True,
                text=True,
                env=sirem_env(),
                check=True,
            )
            runs.append(json.loads(proc.stdout))
        extra = [r["first_s"] - r["second_s"] for r in runs]
        out[method] = {
            "iters": iters,
            "cold_extra_s": summary(extra),
            "first_s": summary([r["first_s"] for r in runs]),
            "second_s": summary([r["second_s"] for r in runs]),
            "imports_s": summary([r["imports_s"] for r in runs]),
        }
        print(
            f"cold start {method}: first {out[method]['first_s']['median']:.3f} s, second "
            f"{out[method]['second_s']['median']:.3f} s, extra {out[method]['cold_extra_s']['median']:.3f} s "
            f"(imports {out[method]['imports_s']['median']:.2f} s)",
            flush=True,
        )
    return out


# -- NUFFT threads --------------------------------------------------------------------------
_THREADS_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import finufft
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.nufft._finufft import FinufftOp
traj = to_radians(vd_spiral()[0]).reshape(-1, 2)
x, y = (np.ascontiguousarray(traj[:, i], np.float32) for i in (0, 1))
rng = np.random.default_rng(0)
out = {}
for n in (1, 8, 800):
    data = (rng.standard_normal((n, len(x))) + 0j).astype(np.complex64)
    runs = {}
    for nth in (1, 2):
        plan = finufft.Plan(1, (84, 84), n_trans=n, eps=1e-4, isign=1, dtype="complex64",
                            nthreads=nth)
        plan.setpts(x, y)
        runs[f"omp{nth}"] = lambda plan=plan: plan.execute(data)
    if n > 1:
        op = FinufftOp(traj, (84, 84), n_threads=2)
        runs["workers2"] = lambda op=op: op.adjoint(data)
    best = {k: np.inf for k in runs}
    for _ in range(max(3, 240 // n)):
        for name, fn in runs.items():  # interleaved
            t0 = time.perf_counter(); fn(); best[name] = min(best[name], time.perf_counter() - t0)
    out[n] = {k: 1e6 * v / n for k, v in best.items()}
print(json.dumps(out))
"""


def nufft_threads() -> dict:
    """us per type-1 transform (84x84, 13x630 points, complex64, eps 1e-4): finufft with 1
    or 2 OpenMP threads, with the default and the PASSIVE OpenMP wait policy, and sirem's
    2 worker threads of single-threaded plans. Each policy runs in its own process."""
    results = {}
    for policy in ("default", "PASSIVE"):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        proc = subprocess.run(
            [sys.executable, "-c", _THREADS_CHILD, str(ROOT)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[policy] = json.loads(proc.stdout)
    for policy, table in results.items():
        for n, row in table.items():
            cells = "  ".join(f"{k} {v:7.0f}" for k, v in row.items())
            print(f"OMP_WAIT_POLICY={policy:8s} n_trans={n:>4}: {cells}  (us/transform)")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
