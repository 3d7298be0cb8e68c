"""Benchmark sirem's baselines against BART on one synthetic utterance.

    python bench/bench_baselines.py [--frames N] [--out DIR] [--threads T] [--iters 100]

Builds a synthetic utterance (a moving vocal-tract-like phantom x 8 smooth coil maps,
13 x 630 variable-density spiral, complex Gaussian noise, k-space normalized to max
magnitude 1) and reconstructs it with gridding, l1-wavelet and TV in sirem and, when
``bart`` is on PATH (Debian package ``bart``), in BART (``nufft -a``, ``pics -R W``,
``pics -R T``) with all frames along BART's time dimension in one call, the same thread
count (OMP_NUM_THREADS), glibc malloc tunables raised and a precomputed FISTA step
``-s``. Times are wall-clock, in the same run; BART's include process start and file
I/O (as a user runs it), sirem's include operator set-up (plans, Toeplitz kernel,
Lipschitz estimate). PSNR is against the ground truth, per frame on magnitudes
normalized to [0, 1], averaged over frames. BART's output orientation is matched to
the truth once, by trying the 8 flips/rotations on the gridding result.

Prints a table and writes ``bench_baselines.json`` into ``--out``. Installs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

H = W = 84
N_COILS = 8

# Relative lambdas. sirem: its own scale (sirem_cli/recon/baselines.py). BART: lambda on
# BART's internally scaled data; the defaults are the best of the sweep recorded in
# docs/benchmarks.md (rerun it with --bart-sweep).
SIREM_LAM = {"wavelet": None, "tv": None}  # None: sirem's default_lambda
BART_LAM = {"wavelet": 0.05, "tv": 0.02}
BART_SWEEP = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


# -- synthetic utterance ------------------------------------------------------------------
def _ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return ((u / rx) ** 2 + (v / ry) ** 2 <= 1.0).astype(np.float64)


def phantom(n_frames: int, size: int = H, seed: int = 0) -> np.ndarray:
    """A moving midsagittal-like phantom: head, airway, tongue, lips, velum.

    Returns:
        (F, size, size) float64 in [0, 1], each frame with maximum 1.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size  # 0..1
    frames = np.empty((n_frames, size, size))
    phase = rng.uniform(0, 2 * np.pi, 3)
    for f in range(n_frames):
        t = f / 8.0
        img = 0.55 * _ellipse(yy, xx, 0.5, 0.5, 0.44, 0.40)  # head
        img += 0.15 * _ellipse(yy, xx, 0.28, 0.55, 0.14, 0.22)  # brain-ish
        img -= 0.50 * _ellipse(yy, xx, 0.55, 0.35, 0.30, 0.05, 0.15)  # airway (dark)
        tongue_y = 0.58 + 0.05 * np.sin(t + phase[0])
        tongue_x = 0.42 + 0.03 * np.cos(0.7 * t + phase[1])
        img += 0.45 * _ellipse(yy, xx, tongue_y, tongue_x, 0.10, 0.16, 0.3)  # tongue
        lip = 0.02 * (1 + np.sin(1.3 * t + phase[2]))
        img += 0.35 * _ellipse(yy, xx, 0.62 - lip, 0.14, 0.04, 0.05)  # upper lip
        img += 0.35 * _ellipse(yy, xx, 0.72 + lip, 0.14, 0.04, 0.05)  # lower lip
        img += 0.25 * _ellipse(yy, xx, 0.42, 0.58, 0.03, 0.09, -0.4 + 0.2 * np.sin(t))  # velum
        img += 0.2 * _ellipse(yy, xx, 0.85, 0.6, 0.06, 0.2)  # larynx
        # smooth shading (coil-independent tissue contrast variation) and fine texture
        img *= 1 + 0.15 * np.sin(2 * np.pi * (1.3 * yy + 0.4 * xx) + phase[1])
        img += 0.05 * (img > 0.2) * np.sin(2 * np.pi * 9 * xx) * np.sin(2 * np.pi * 7 * yy)
        img = np.clip(img, 0, None)
        frames[f] = img / img.max()
    return frames


def coil_maps(n_coils: int = N_COILS, size: int = H, seed: int = 1) -> np.ndarray:
    """Smooth complex sensitivities with sum_c |S_c|^2 = 1 everywhere: (C, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    maps = []
    for c in range(n_coils):
        ang = 2 * np.pi * c / n_coils + rng.normal(0, 0.1)
        cy, cx = 0.7 * np.sin(ang), 0.7 * np.cos(ang)
        mag = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.35**2))
        ph = rng.uniform(-np.pi, np.pi) + 2.0 * (rng.normal() * yy + rng.normal() * xx)
        maps.append(mag * np.exp(1j * ph))
    maps = np.asarray(maps)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return maps.astype(np.complex64)


def synthetic_utterance(n_frames: int, *, noise: float = 0.01, seed: int = 0) -> dict:
    """Phantom x coil maps -> spiral k-space with noise, normalized to max magnitude 1."""
    from sirem_cli.mri.spiral import to_radians, vd_spiral
    from sirem_cli.nufft import make_nufft

    truth = phantom(n_frames, H, seed)
    smaps = coil_maps(N_COILS, H, seed + 1)
    traj_c, dcf_s = vd_spiral()
    traj = to_radians(traj_c).astype(np.float32)  # (A, S, 2)
    dcf = np.broadcast_to(dcf_s, traj.shape[:2]).astype(np.float32)
    op = make_nufft(traj, (H, W), eps=1e-9)
    coil_images = truth[:, None] * smaps[None].astype(np.complex128)  # (F, C, H, W)
    ksp = op.forward(coil_images).reshape(n_frames, N_COILS, *traj.shape[:2])
    rng = np.random.default_rng(seed + 2)
    sigma = noise * np.abs(ksp).max()
    ksp = ksp + sigma / np.sqrt(2) * (
        rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape)
    )
    ksp /= np.abs(ksp).max()
    return {
        "kspace": ksp.astype(np.complex64),
        "traj": traj,
        "dcf": dcf,
        "smaps": smaps,
        "truth": truth.astype(np.float32),
        "traj_cycles": traj_c,
    }


def psnr(recon: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames of the PSNR (data range 1) of [0, 1]-normalized magnitudes."""
    mse = np.mean((recon.astype(np.float64) - truth) ** 2, axis=(1, 2))
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-20))))


def normalize(frames: np.ndarray) -> np.ndarray:
    mag = np.abs(frames).astype(np.float32)
    peak = mag.reshape(mag.shape[0], -1).max(axis=1)
    return mag / np.where(peak > 0, peak, 1)[:, None, None]


# -- BART -----------------------------------------------------------------------------------
def write_cfl(base: Path, arr: np.ndarray) -> None:
    """BART's cfl/hdr pair: complex64, column-major."""
    arr = np.asarray(arr, dtype=np.complex64)
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape)) + "\n")
    np.asfortranarray(arr).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(n) for n in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    data = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    return data.reshape(dims, order="F")


def _bart_dims(*shape: int) -> tuple[int, ...]:
    dims = list(shape) + [1] * (11 - len(shape))
    return tuple(dims)


def bart_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    big = str(1 << 30)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MALLOC_MMAP_THRESHOLD_=big,
        MALLOC_TRIM_THRESHOLD_=big,
        MALLOC_TOP_PAD_=big,
    )
    return env


def run_bart(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(["bart", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bart {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return wall


class Bart:
    """BART inputs for one utterance written once into a folder."""

    def __init__(self, data: dict, folder: Path, threads: int) -> None:
        self.dir = folder
        self.env = bart_env(threads)
        ksp = data["kspace"]  # (F, C, A, S)
        n_frames, n_coils, n_arms, n_samples = ksp.shape
        self.n_frames = n_frames
        traj_pix = np.zeros((3, n_samples, n_arms), dtype=np.complex64)
        traj_pix[0] = data["traj_cycles"][..., 0].T * H
        traj_pix[1] = data["traj_cycles"][..., 1].T * W
        write_cfl(folder / "traj", traj_pix)
        k_bart = ksp.transpose(3, 2, 1, 0)  # (S, A, C, F)
        k_bart = k_bart.reshape(1, n_samples, n_arms, n_coils, 1, 1, 1, 1, 1, 1, n_frames)
        write_cfl(folder / "ksp", k_bart)
        dcf = data["dcf"].T  # (S, A)
        dcf11 = dcf.reshape(_bart_dims(1, n_samples, n_arms))
        write_cfl(folder / "ksp_dcf", k_bart * dcf11)
        wts = np.broadcast_to(np.sqrt(dcf11), _bart_dims(1, n_samples, n_arms, *[1] * 7, n_frames))
        write_cfl(folder / "wts", wts)
        write_cfl(folder / "sens", data["smaps"].transpose(1, 2, 0)[:, :, None, :])
        self.smaps = data["smaps"]

    def nufft_scale(self, traj: np.ndarray) -> float:
        """||F_bart x|| / ||F_sirem x|| for a test image (BART's NUFFT normalization)."""
        from sirem_cli.nufft import make_nufft

        rng = np.random.default_rng(5)
        img = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))).astype(np.complex64)
        write_cfl(self.dir / "probe_img", img[:, :, None])
        run_bart(["nufft", "traj", "probe_img", "probe_ksp"], self.dir, self.env)
        ours = make_nufft(traj, (H, W)).forward(img)
        return float(np.linalg.norm(read_cfl(self.dir / "probe_ksp")) / np.linalg.norm(ours))

    def gridding(self) -> tuple[np.ndarray, float]:
        wall = run_bart(
            ["nufft", "-a", "-d", f"{H}:{W}:1", "traj", "ksp_dcf", "grid"], self.dir, self.env
        )
        coil_imgs = read_cfl(self.dir / "grid").reshape(H, W, N_COILS, self.n_frames)
        combined = np.einsum("hwcf,chw->fhw", coil_imgs, self.smaps.conj())
        return combined, wall

    def pics(
        self, reg: str, lam: float, iters: int, step: float | None, out: str
    ) -> tuple[np.ndarray, float]:
        args = ["pics", "-i", str(iters), "-R", f"{reg}:3:0:{lam}", "-t", "traj", "-p", "wts"]
        if step is not None:
            args += ["-s", f"{step:.6g}"]
        wall = run_bart([*args, "ksp", "sens", out], self.dir, self.env)
        return read_cfl(self.dir / out).reshape(H, W, self.n_frames).transpose(2, 0, 1), wall


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
    scores = {}
    for name, fn in ORIENTATIONS.items():
        cand = normalize(np.ascontiguousarray(fn(images)))
        scores[name] = float(np.corrcoef(cand.ravel(), truth.ravel())[0, 1])
    return max(scores, key=lambda k: scores[k]), scores


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


# -- main -------------------------------------------------------------------------------------
def time_sirem(method: str, data: dict, lam: float | None, iters: int) -> tuple[np.ndarray, float]:
    from sirem_cli.recon.baselines import default_lambda, reconstruct

    lam_used = default_lambda(method) if lam is None else lam
    t0 = time.perf_counter()
    recon = reconstruct(
        method,
        data["kspace"],
        data["traj"],
        data["dcf"],
        data["smaps"],
        lam=lam_used if method != "gridding" else 1.0,
        iters=iters,
    )
    return recon, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--noise", type=float, default=0.01, help="noise std / max|k|")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per method; the fastest counts"
    )
    parser.add_argument("--no-bart", action="store_true", help="run sirem alone")
    parser.add_argument(
        "--bart-sweep",
        action="store_true",
        help="first sweep BART's lambda on the first 10 frames (best PSNR wins)",
    )
    parser.add_argument(
        "--nufft-threads",
        action="store_true",
        help="only measure finufft threading (1/2 OpenMP threads, wait policies, "
        "worker threads) and exit",
    )
    parser.add_argument("--lam-wavelet", type=float, default=SIREM_LAM["wavelet"])
    parser.add_argument("--lam-tv", type=float, default=SIREM_LAM["tv"])
    parser.add_argument("--bart-lam-wavelet", type=float, default=BART_LAM["wavelet"])
    parser.add_argument("--bart-lam-tv", type=float, default=BART_LAM["tv"])
    args = parser.parse_args(argv)
    if args.nufft_threads:
        report = nufft_threads()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "nufft_threads.json").write_text(json.dumps(report, indent=2))
        return 0

    import torch

    torch.set_num_threads(args.threads)
    from sirem_cli.nufft import make_nufft  # noqa: F401  (warm the import before timing)
    from sirem_cli.recon.baselines import BaselineProblem, default_lambda

    data = synthetic_utterance(args.frames, noise=args.noise)
    truth = data["truth"]
    bart_ok = shutil.which("bart") is not None and not args.no_bart
    if not bart_ok and not args.no_bart:
        print("BART is missing (apt-get install bart); running sirem alone")
    lam = {
        "wavelet": args.lam_wavelet if args.lam_wavelet is not None else default_lambda("wavelet"),
        "tv": args.lam_tv if args.lam_tv is not None else default_lambda("tv"),
    }
    bart_lam = {"wavelet": args.bart_lam_wavelet, "tv": args.bart_lam_tv}
    rows: list[dict] = []
    info: dict = {
        "frames": args.frames,
        "iters": args.iters,
        "threads": args.threads,
        "coils": N_COILS,
        "samples": list(data["kspace"].shape[2:]),
        "image": [H, W],
        "noise": args.noise,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "lam_sirem": lam,
        "lam_bart": bart_lam,
    }
    tmp = Path(tempfile.mkdtemp(prefix="sirem-bart-"))
    try:
        bart = Bart(data, tmp, args.threads) if bart_ok else None
        step = None
        orient = "identity"
        if bart is not None:
            info["bart_version"] = subprocess.run(
                ["bart", "version"], capture_output=True, text=True
            ).stdout.strip()
            scale = bart.nufft_scale(data["traj"])
            problem = BaselineProblem(data["kspace"][:1], data["traj"], data["dcf"], data["smaps"])
            lip_bart = scale**2 * problem.lipschitz() / 1.01
            step = 0.95 / lip_bart
            info.update(bart_nufft_scale=scale, bart_lipschitz=lip_bart, bart_step=step)
            if args.bart_sweep:
                info["bart_sweep"] = sweep_bart(data, tmp, args, step)
                for m in ("wavelet", "tv"):
                    bart_lam[m] = max(info["bart_sweep"][m], key=lambda k: info["bart_sweep"][m][k])
                    bart_lam[m] = float(bart_lam[m])
        for method in ("gridding", "wavelet", "tv"):
            row: dict = {"method": method}
            best = np.inf
            for _ in range(args.repeats):
                recon, wall = time_sirem(method, data, lam.get(method), args.iters)
                best = min(best, wall)
            row.update(sirem_ms=1e3 * best / args.frames, sirem_psnr=psnr(recon, truth))
            if bart is not None:
                best = np.inf
                for _ in range(args.repeats):
                    if method == "gridding":
                        img, wall = bart.gridding()
                        orient, scores = best_orientation(img, truth)
                        info["bart_orientation"] = {"chosen": orient, "correlation": scores}
                        row["bart_command"] = "nufft -a"
                    else:
                        reg = "W" if method == "wavelet" else "T"
                        img, wall = bart.pics(
                            reg,
                            bart_lam[method],
                            args.iters,
                            step if reg == "W" else None,
                            f"pics_{reg}",
                        )
                        row["bart_command"] = (
                            f"pics -R {reg}:3:0:{bart_lam[method]} -i {args.iters}"
                            + (f" -s {step:.4g}" if reg == "W" else "")
                        )
                    best = min(best, wall)
                bart_recon = normalize(np.ascontiguousarray(ORIENTATIONS[orient](img)))
                row.update(bart_ms=1e3 * best / args.frames, bart_psnr=psnr(bart_recon, truth))
                row["ratio"] = row["sirem_ms"] / row["bart_ms"]
            rows.append(row)
            print_row(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"info": info, "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_baselines.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def sweep_bart(data: dict, tmp: Path, args: argparse.Namespace, step: float) -> dict:
    """BART PSNR for each lambda in BART_SWEEP on the first 10 frames."""
    sub = {
        k: (v[: min(10, args.frames)] if k in ("kspace", "truth") else v) for k, v in data.items()
    }
    folder = tmp / "sweep"
    folder.mkdir()
    bart = Bart(sub, folder, args.threads)
    grid, _ = bart.gridding()
    orient, _ = best_orientation(grid, sub["truth"])
    out: dict = {"wavelet": {}, "tv": {}}
    for method, reg in (("wavelet", "W"), ("tv", "T")):
        for lam in BART_SWEEP:
            img, _ = bart.pics(reg, lam, args.iters, step if reg == "W" else None, "sweep")
            rec = normalize(np.ascontiguousarray(ORIENTATIONS[orient](img)))
            out[method][lam] = psnr(rec, sub["truth"])
            print(f"  BART sweep {method} lambda {lam:g}: PSNR {out[method][lam]:.2f} dB")
    return out


def print_row(row: dict) -> None:
    text = f"{row['method']:9s} sirem {row['sirem_ms']:8.2f} ms/frame  PSNR {row['sirem_psnr']:6.2f} dB"
    if "bart_ms" in row:
        text += (
            f" | BART {row['bart_ms']:8.2f} ms/frame  PSNR {row['bart_psnr']:6.2f} dB"
            f" | ratio {row['ratio']:.3f}"
        )
    print(text, flush=True)


def print_table(report: dict) -> None:
    rows = report["results"]
    has_bart = any("bart_ms" in r for r in rows)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        for row in rows:
            print_row(row)
        return
    info = report["info"]
    table = Table(
        title=f"Baselines, {info['frames']} frames x {info['coils']} coils, "
        f"{info['iters']} iterations, {info['threads']} threads"
    )
    for col in ("method", "sirem ms/frame", "sirem PSNR dB") + (
        ("BART ms/frame", "BART PSNR dB", "sirem/BART time") if has_bart else ()
    ):
        table.add_column(col, justify="right")
    for row in rows:
        cells = [row["method"], f"{row['sirem_ms']:.2f}", f"{row['sirem_psnr']:.2f}"]
        if has_bart:
            cells += [f"{row['bart_ms']:.2f}", f"{row['bart_psnr']:.2f}", f"{row['ratio']:.3f}"]
        table.add_row(*cells)
    Console().print(table)


if __name__ == "__main__":
    raise SystemExit(main())
