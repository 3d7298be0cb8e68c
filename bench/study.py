"""The speech-prior study (issue 14), through the CLI (``make study``).

For each anatomy spread and arms per frame this synthesizes a corpus of held-out speakers
(``sirem synth``, 16 speakers by default: 10 train / 2 validation / 4 test), prepares it at N
arms per frame, and reconstructs the test speakers with

* ``gridding``; ``wavelet``, ``tv`` and ``ttv`` with ``--lam auto`` (tuned on validation);
* ``xbar``: ttv plus the prior p = x_bar (``sirem train --model prior --epochs 0``: the
  untrained network predicts no deviation), weights tuned on validation;
* ``prior``: the speech prior (``sirem train --model prior``) and ``prior-no-audio``, its
  ablation (the same network and training with the audio zeroed);
* ``no-audio-at-prior`` and ``prior-at-no-audio``: the 2 x 2 of network and solve weights,
  each network reconstructed at the other's tuned (mu, lam_t, lam_s, motion) (``sirem
  reconstruct --weights-from``), so that the audio is also compared with the solve held fixed;
* ``sirem`` (the paper's model as published, ``--fusion convex``) and ``residual``
  (``--fusion residual``), both trained with the mel encoder against the truth,

all iterative methods at the same ``--iters``, all learned ones against the truth. Every row is
scored against the truth on the test speakers: PSNR and SSIM on per-frame max-normalized
magnitudes (as ``sirem evaluate``), their scale-invariant variants (a per-frame least-squares
scale first), and the ms/frame each command recorded. Per utterance it also records the PSNR
of each row, for the "never below ttv - 0.1 dB" check.

Writes ``study.json``, ``study.md`` and ``frames.png`` (one test frame of every row beside the
truth) under ``--out``; intermediate files stay there so a run can be resumed (finished steps
are skipped). Usage::

    python bench/study.py --out bench_out/study [--spread 1 0.5 0] [--arms 2 13] [--rows ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, child_env, write_json

sys.path.insert(0, str(ROOT))

SIREM = [sys.executable, "-m", "sirem_cli"]
ROWS = (
    "gridding", "wavelet", "tv", "ttv", "xbar", "prior", "prior-no-audio",
    "no-audio-at-prior", "prior-at-no-audio", "sirem", "residual",
)  # fmt: skip
#: The shared-weights rows: row -> (network's row, the row whose tuned solve weights it uses).
CROSS_ROWS = {
    "no-audio-at-prior": ("prior-no-audio", "prior"),
    "prior-at-no-audio": ("prior", "prior-no-audio"),
}


def _run(args: list[str], log: Path) -> None:
    with log.open("a") as handle:
        handle.write(f"$ sirem {' '.join(args)}\n")
        handle.flush()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*SIREM, *args], stdout=handle, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT
        )
        handle.write(f"# {time.perf_counter() - t0:.1f} s, exit {proc.returncode}\n")
    if proc.returncode != 0:
        raise SystemExit(f"study: `sirem {' '.join(args)}` failed; see {log}")


def _step(out: Path, args: list[str], log: Path) -> Path:
    """Run ``sirem args`` unless ``out`` exists (a resumed study)."""
    if not out.exists():
        _run(args, log)
    return out


def reconstruct_rows(case: Path, prepared: Path, rows: list[str], opts: argparse.Namespace) -> dict:
    """Write one reconstruction file per row; returns row -> recon path."""
    log = case / "study.log"
    iters = str(opts.iters)
    files: dict[str, Path] = {}
    tune = ["--lam-frames", str(opts.tune_frames), "--iters", iters]
    for method in ("gridding", "wavelet", "tv", "ttv"):
        if method in rows:
            extra = [] if method == "gridding" else ["--lam", "auto", *tune]
            out = case / f"{method}.h5"
            files[method] = _step(
                out, ["baseline", str(prepared), str(out), "--method", method, *extra], log
            )
    prior_cases = {
        "xbar": ["--epochs", "0"],
        "prior": ["--epochs", str(opts.prior_epochs)],
        "prior-no-audio": ["--epochs", str(opts.prior_epochs), "--no-audio"],
    }
    tv_weights: list[str] = []
    if (
        "ttv" in files
    ):  # the prior starts from ttv's tuned weights (and tunes mu and 1 or 2/3 of them)
        from sirem_cli.io.prepared import ReconSet

        config = ReconSet(files["ttv"]).config
        tv_weights = ["--lam", str(config["lam"]), "--lam-spatial", str(config["lam_spatial"])]
    for row, extra in prior_cases.items():
        if row not in rows:
            continue
        ckpt, out = case / f"{row}.pt", case / f"{row}.h5"
        train = [
            "train",
            str(prepared),
            "--model",
            "prior",
            "--out",
            str(ckpt),
            *extra,
            *tv_weights,
        ]
        _step(ckpt, [*train, "--iters", iters, "--tune-frames", str(opts.tune_frames)], log)
        files[row] = _step(out, ["reconstruct", "--ckpt", str(ckpt), str(prepared), str(out)], log)
    files.update(cross_rows(case, prepared, rows, files, log))
    fusion_cases = {"sirem": "convex", "residual": "residual"}
    for row, fusion in fusion_cases.items():
        if row not in rows:
            continue
        ckpt, out = case / f"{row}.pt", case / f"{row}.h5"
        train = [
            "train", str(prepared), "--encoder", "mel", "--target", "truth", "--fusion", fusion,
            "--epochs", str(opts.sirem_epochs), "--out", str(ckpt),
        ]  # fmt: skip
        _step(ckpt, train, log)
        files[row] = _step(out, ["reconstruct", "--ckpt", str(ckpt), str(prepared), str(out)], log)
    return files


def cross_rows(case: Path, prepared: Path, rows: list[str], files: dict, log: Path) -> dict:
    """Each prior network reconstructed at the other's tuned solve weights
    (``sirem reconstruct --weights-from``; both rows needed)."""
    out_files: dict[str, Path] = {}
    for row, (network, weights_of) in CROSS_ROWS.items():
        if row not in rows:
            continue
        if network not in files or weights_of not in files:
            raise SystemExit(f"study: row {row} needs the rows {network} and {weights_of}")
        out = case / f"{row}.h5"
        ckpt, other = case / f"{network}.pt", case / f"{weights_of}.pt"
        args = ["reconstruct", "--ckpt", str(ckpt), str(prepared), str(out)]
        out_files[row] = _step(out, [*args, "--weights-from", str(other)], log)
    return out_files


def score(prepared: Path, files: dict[str, Path]) -> dict[str, Any]:
    """Per row: mean over test utterances of PSNR/SSIM (max-normalized and LS), ms/frame,
    and each utterance's PSNR."""
    from sirem_cli.io.prepared import PreparedSet, ReconSet
    from sirem_cli.metrics.image import psnr, psnr_ls, ssim, ssim_ls

    refs = PreparedSet([prepared]).select("test")
    truths = {r.prefix: PreparedSet.read(r, ["truth"])["truth"] for r in refs}
    table: dict[str, Any] = {}
    for row, path in files.items():
        recon = ReconSet(path)
        per: dict[str, dict[str, float]] = {}
        ms = []
        for ref in recon.utterances:
            x, t = recon.read(ref.prefix), truths[ref.prefix]
            per[ref.prefix] = {
                "psnr": float(np.mean(psnr(x, t))),
                "ssim": float(np.mean(ssim(x, t))),
                "psnr_ls": float(np.mean(psnr_ls(x, t))),
                "ssim_ls": float(np.mean(ssim_ls(x, t))),
            }
            ms.append(ref.ms_per_frame)
        table[row] = {
            **{k: float(np.mean([p[k] for p in per.values()])) for k in next(iter(per.values()))},
            "ms_per_frame": float(np.mean(ms)),
            "per_utterance": per,
        }
    return table


def frames_figure(prepared: Path, files: dict[str, Path], out: Path) -> None:
    """One mid-utterance frame of the first test utterance for every row, beside the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sirem_cli.io.prepared import PreparedSet, ReconSet

    ref = PreparedSet([prepared]).select("test")[0]
    t = ref.n_frames // 2
    truth = PreparedSet.read(ref, ["truth"], frames=slice(t, t + 1))["truth"][0]
    panels = [("truth", truth)] + [
        (row, ReconSet(p).read(ref.prefix)[t]) for row, p in files.items()
    ]
    fig, axes = plt.subplots(2, len(panels), figsize=(1.9 * len(panels), 4.2))
    for i, (name, image) in enumerate(panels):
        axes[0, i].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(name, fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
        if i:
            axes[1, i].imshow(np.abs(image - truth), cmap="magma", vmin=0, vmax=0.3)
        else:
            axes[1, 0].text(0.5, 0.5, "|error| vs truth\n(colour 0 to 0.3)", ha="center",
                            va="center", fontsize=8, transform=axes[1, 0].transAxes)  # fmt: skip
    fig.suptitle(f"{ref.prefix}, frame {t} (test speaker)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any], opts: argparse.Namespace) -> str:
    lines = [
        "# Speech-prior study (make study)",
        "",
        f"Held-out speakers ({opts.subjects} synthetic speakers, 10/2/4 train/val/test by "
        f"`sirem prepare`'s default split), {opts.seconds} s each, against the truth; iterative "
        f"methods {opts.iters} iterations; prior {opts.prior_epochs} epochs; SIREM "
        f"{opts.sirem_epochs} epochs.",
        "",
    ]
    for key, case in results.items():
        lines += [f"## {key}", ""]
        lines.append("| row | PSNR dB | SSIM | PSNR-LS dB | SSIM-LS | ms/frame |")
        lines.append("|---|---|---|---|---|---|")
        for row, s in case["rows"].items():
            lines.append(
                f"| {row} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['psnr_ls']:.2f} | "
                f"{s['ssim_ls']:.3f} | {s['ms_per_frame']:.1f} |"
            )
        lines.append("")
        checks = case.get("checks", {})
        for name, value in checks.items():
            lines.append(f"- {name}: {value}")
        lines.append("")
    return "\n".join(lines)


def _margin(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Row a minus row b in PSNR and PSNR-LS."""
    return f"{a['psnr'] - b['psnr']:+.2f} dB PSNR, {a['psnr_ls'] - b['psnr_ls']:+.2f} LS"


def checks(rows: dict[str, Any]) -> dict[str, str]:
    """The acceptance comparisons that the rows allow, stated as measured."""
    out: dict[str, str] = {}
    if "prior" in rows and "ttv" in rows:
        p, t = rows["prior"], rows["ttv"]
        out["prior - ttv"] = (
            f"{p['psnr'] - t['psnr']:+.2f} dB PSNR, {p['ssim'] - t['ssim']:+.3f} SSIM"
        )
        worst = min(
            p["per_utterance"][u]["psnr"] - t["per_utterance"][u]["psnr"]
            for u in p["per_utterance"]
        )
        out["worst utterance, prior - ttv"] = f"{worst:+.2f} dB"
        out["time prior / ttv"] = f"{p['ms_per_frame'] / t['ms_per_frame']:.2f}x"
    if "prior" in rows and "prior-no-audio" in rows:
        out["prior - prior-no-audio (the audio, each tuned)"] = _margin(
            rows["prior"], rows["prior-no-audio"]
        )
    for row, (network, weights_of) in CROSS_ROWS.items():
        if row in rows and weights_of in rows:  # the audio at one set of solve weights
            pair = (rows[row], rows[weights_of])
            audio, mute = pair if network == "prior" else pair[::-1]
            out[f"the audio at {weights_of}'s weights"] = _margin(audio, mute)
    if "xbar" in rows and "ttv" in rows:
        out["xbar - ttv"] = f"{rows['xbar']['psnr'] - rows['ttv']['psnr']:+.2f} dB PSNR"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/study"))
    parser.add_argument("--spread", type=float, nargs="+", default=[1.0])
    parser.add_argument("--arms", type=int, nargs="+", default=[2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--tune-frames", type=int, default=64)
    parser.add_argument("--prior-epochs", type=int, default=20)
    parser.add_argument("--sirem-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for spread in opts.spread:
        corpus = opts.out / f"corpus-spread{spread:g}"
        for arms in opts.arms:
            key = f"spread {spread:g}, N = {arms}"
            case = opts.out / f"spread{spread:g}-n{arms}"
            case.mkdir(parents=True, exist_ok=True)
            log = case / "study.log"
            _step(
                corpus,
                [
                    "synth", str(corpus), "--subjects", str(opts.subjects), "--utterances", "1",
                    "--seconds", str(opts.seconds), "--anatomy-spread", str(spread),
                    "--seed", str(opts.seed),
                ],
                log,
            )  # fmt: skip
            prepared = _step(
                case / "prepared.h5",
                ["prepare", str(corpus), str(case / "prepared.h5"), "--arms-per-frame", str(arms)],
                log,
            )
            files = reconstruct_rows(case, prepared, opts.rows, opts)
            rows = score(prepared, files)
            results[key] = {"rows": rows, "checks": checks(rows)}
            frames_figure(prepared, files, case / "frames.png")
            write_json(
                opts.out / "study.json",
                {"options": vars(opts) | {"out": str(opts.out)}, "results": results},
            )
            (opts.out / "study.md").write_text(markdown(results, opts) + "\n")
            print(markdown({key: results[key]}, opts), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
