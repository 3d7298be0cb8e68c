"""The SIREM audio ablation on synthetic corpora, through the CLI (``make ablation``).

For each anatomy spread (``sirem synth --anatomy-spread``) this synthesizes a corpus of held-out
speakers, prepares it and grids the test split with all 13 arms; for each case (arm selection
and fusion mode) it
trains SIREM with and without audio, reconstructs the test speakers with both models and with
the audio model's MRI branch alone (gridding of the same arm-weighted k-space), and scores all
of them against the ground truth. This is issue 5's acceptance experiment:

* SIREM beats its ``--no-audio`` ablation,
* SIREM beats its MRI branch alone,
* the learned profile settles near the budget K,

with full 13-arm gridding beside them (at K = 2 the model sees far less data).

Writes ``ablation.json`` and ``ablation.md`` under ``--out``; every intermediate file stays there
too, so a run can be inspected or resumed (finished steps are skipped).

Usage::

    python bench/ablation.py --out bench_out/ablation [--spread 1 0] [--cases soft:static ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, child_env, write_json

SIREM = [sys.executable, "-m", "sirem_cli"]


def _run(args: list[str], log: Path, threads: int | None = None) -> None:
    env = child_env(
        {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else None
    )
    with log.open("a") as handle:
        handle.write("$ sirem " + " ".join(args) + "\n")
        handle.flush()
        proc = subprocess.run(
            [*SIREM, *args], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    if proc.returncode != 0:
        raise SystemExit(f"ablation: `sirem {' '.join(args)}` failed; see {log}")


def _mean_rows(metrics_csv: Path) -> dict[str, dict[str, float]]:
    """method -> {psnr, ssim, n_frames} from the ``mean`` rows against the truth."""
    rows: dict[str, dict[str, float]] = {}
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["row"] == "mean" and row["target"] == "truth":
                rows[row["method"]] = {
                    "psnr": float(row["psnr"]),
                    "ssim": float(row["ssim"]),
                    "n_frames": int(row["n_frames"]),
                }
    return rows


def _profile(log_json: Path) -> list[float]:
    """The arm weights p of the kept checkpoint's epoch (the best validation PSNR)."""
    records = json.loads(log_json.read_text())["records"]
    scored = [r for r in records if r.get("val_psnr") is not None]
    best = max(scored, key=lambda r: r["val_psnr"]) if scored else records[-1]
    return [float(v) for v in best["p"]]


def run_case(
    root: Path,
    prepared: Path,
    gridding: Path,
    arm_select: str,
    eba: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train, reconstruct and evaluate one arm selection and fusion mode on one corpus."""
    case = root / f"{arm_select}-{eba}"
    case.mkdir(parents=True, exist_ok=True)
    log = case / "commands.log"
    common = [
        "--encoder",
        "mel",
        "--epochs",
        str(args.epochs),
        "--arm-lr",
        str(args.arm_lr),
        "--arm-select",
        arm_select,
        "--eba",
        eba,
        "--seed",
        str(args.seed),
    ]
    models = {"sirem": case / "sirem.pt", "sirem-no-audio": case / "sirem-no-audio.pt"}
    todo = [(name, path) for name, path in models.items() if not path.exists()]
    threads = 1 if args.jobs > 1 and len(todo) > 1 else None

    def train(item: tuple[str, Path]) -> None:
        name, path = item
        extra = ["--no-audio"] if name.endswith("no-audio") else []
        _run(
            ["train", str(prepared), *common, *extra, "--out", str(path)],
            case / f"train-{name}.log",
            threads,
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(train, todo))
    train_s = time.perf_counter() - started
    recons = {
        "sirem": (models["sirem"], "fused"),
        "sirem-no-audio": (models["sirem-no-audio"], "fused"),
        "sirem-mri": (models["sirem"], "mri"),
    }
    for name, (ckpt, branch) in recons.items():
        out = case / f"{name}.h5"
        if not out.exists():
            _run(
                ["reconstruct", "--ckpt", str(ckpt), str(prepared), str(out), "--branch", branch],
                log,
            )
    metrics = case / "metrics"
    if not (metrics / "metrics.csv").exists():
        files = [str(case / f"{name}.h5") for name in recons] + [str(gridding)]
        _run(
            [
                "evaluate",
                *files,
                *("--target", "truth", "--prepared", str(prepared)),
                *("--metrics", "psnr,ssim", "--out", str(metrics)),
            ],
            log,
        )
    scores = _mean_rows(metrics / "metrics.csv")
    p_audio = _profile(models["sirem"].with_suffix(".log.json"))
    p_ablation = _profile(models["sirem-no-audio"].with_suffix(".log.json"))
    k = 2
    used = sorted(range(len(p_audio)), key=lambda a: -p_audio[a])[:k]
    result = {
        "arm_select": arm_select,
        "eba": eba,
        "scores": scores,
        "p": p_audio,
        "p_no_audio": p_ablation,
        "sum_p": sum(p_audio),
        "sum_p_applied": float(k) if arm_select == "topk" else sum(p_audio),
        "topk_arms": used if arm_select == "topk" else None,
        "train_wall_s": round(train_s, 1),
    }
    sirem, ablation, mri = (scores[m]["psnr"] for m in ("sirem", "sirem-no-audio", "sirem-mri"))
    result["gain_over_no_audio_db"] = sirem - ablation
    result["gain_over_mri_branch_db"] = sirem - mri
    result["checks"] = {
        "audio_beats_no_audio": sirem > ablation,
        "beats_mri_branch": sirem > mri,
        "profile_near_budget": abs(result["sum_p_applied"] - k) <= 0.25 * k,
    }
    return result


def audio_bound(prepared: Path, ridge: float = 1.0) -> dict[str, float]:
    """How much of a held-out speaker's articulator pixels the audio can explain linearly.

    Ridge regression from the standardized mel embeddings to the reference frames, fitted on the
    train speakers; PSNR against the truth on the test speakers, weighted by the mean training
    explained-by-audio map (the static fusion map, where the audio branch is used). Beside it:
    the best constant image (what the w/o-audio decoder can learn) and each test speaker's own
    mean image (an oracle that knows the speaker's anatomy).
    """
    import numpy as np

    from sirem_cli.api.audio import utterance_embeddings
    from sirem_cli.io.prepared import PreparedSet
    from sirem_cli.models.encoders import make_encoder

    encoder = make_encoder("mel")
    split: dict[str, list[dict[str, np.ndarray]]] = {"train": [], "test": []}
    for ref in PreparedSet([prepared]).utterances:
        if ref.split in split:
            data = PreparedSet.read(ref, ["reference", "truth", "eba"])
            data["emb"], _ = utterance_embeddings(ref, encoder)
            split[ref.split].append(data)

    def stack(part: str, key: str) -> np.ndarray:
        return np.concatenate([d[key].reshape(len(d[key]), -1) for d in split[part]])

    x, y = stack("train", "emb"), stack("train", "reference")
    weight = stack("train", "eba").mean(axis=0)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    y_mean = y.mean(axis=0)
    coef = np.linalg.solve(z.T @ z + ridge * len(z) * np.eye(z.shape[1]), z.T @ (y - y_mean))

    def score(pred: np.ndarray, truth: np.ndarray) -> float:
        err = ((pred - truth) ** 2 * weight).sum(axis=1) / weight.sum()
        return float(np.mean(10 * np.log10(1.0 / err)))

    rows = {"constant": [], "audio_linear": [], "speaker_mean_oracle": []}
    for d in split["test"]:
        truth = d["truth"].reshape(len(d["truth"]), -1)
        z_test = (d["emb"] - mean) / std
        rows["constant"].append(score(np.broadcast_to(y_mean, truth.shape), truth))
        rows["audio_linear"].append(score(np.clip(z_test @ coef + y_mean, 0, 1), truth))
        own = d["reference"].reshape(len(truth), -1).mean(axis=0)
        rows["speaker_mean_oracle"].append(score(np.broadcast_to(own, truth.shape), truth))
    return {name: float(np.mean(values)) for name, values in rows.items()}


def run_spread(spread: float, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Synthesize and prepare one corpus, then run every arm-selection mode on it."""
    root = Path(args.out) / f"spread-{spread:g}"
    root.mkdir(parents=True, exist_ok=True)
    log = root / "commands.log"
    corpus, prepared, gridding = root / "corpus", root / "prepared.h5", root / "gridding.h5"
    if not corpus.exists():
        _run(
            [
                "synth",
                str(corpus),
                *("--subjects", str(args.subjects), "--utterances", str(args.utterances)),
                *("--seconds", str(args.seconds), "--seed", str(args.seed)),
                *("--anatomy-spread", str(spread)),
            ],
            log,
        )
    if not prepared.exists():
        _run(["prepare", str(corpus), str(prepared)], log)
    if not gridding.exists():
        _run(["baseline", str(prepared), str(gridding), "--method", "gridding"], log)
    bound = audio_bound(prepared)
    print(f"spread {spread:g}: fusion-region PSNR of the test speakers {bound}", flush=True)
    results = []
    for case in args.cases:
        arm_select, _, eba = case.partition(":")
        result = run_case(root, prepared, gridding, arm_select, eba or "static", args)
        result["anatomy_spread"] = spread
        result["audio_bound"] = bound
        results.append(result)
        print(_markdown([result]).splitlines()[-1], flush=True)
    return results


_HEADER = (
    "| anatomy spread | arms | fusion | full 13-arm gridding | MRI branch alone | SIREM w/o audio "
    "| SIREM | sum p (applied) | SIREM - w/o audio | SIREM - MRI branch |\n"
    "|---|---|---|---|---|---|---|---|---:|---:|"
)


def _markdown(results: list[dict[str, Any]]) -> str:
    lines = [_HEADER]
    for r in results:

        def cell(method: str, scores: dict[str, Any] = r["scores"]) -> str:
            return f"{scores[method]['psnr']:.2f} / {scores[method]['ssim']:.3f}"

        arms = r["arm_select"] + (f" {r['topk_arms']}" if r["topk_arms"] else "")
        lines.append(
            f"| {r['anatomy_spread']:g} | {arms} | {r['eba']} | {cell('gridding')} "
            f"| {cell('sirem-mri')} | {cell('sirem-no-audio')} | {cell('sirem')} "
            f"| {r['sum_p']:.2f} ({r['sum_p_applied']:.2f}) "
            f"| {r['gain_over_no_audio_db']:+.2f} dB | {r['gain_over_mri_branch_db']:+.2f} dB |"
        )
    return "\n".join(lines)


def _bound_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| anatomy spread | constant image | linear audio | test speaker's own mean (oracle) |",
        "|---|---|---|---|",
    ]
    seen = set()
    for r in results:
        if r["anatomy_spread"] in seen:
            continue
        seen.add(r["anatomy_spread"])
        b = r["audio_bound"]
        lines.append(
            f"| {r['anatomy_spread']:g} | {b['constant']:.2f} | {b['audio_linear']:.2f} "
            f"| {b['speaker_mean_oracle']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out/ablation")
    parser.add_argument("--spread", type=float, nargs="+", default=[1.0, 0.0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["soft:static", "topk:static", "topk:learned"],
        help="ARM_SELECT:EBA pairs (soft|topk : static|learned)",
    )
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--utterances", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--arm-lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="trainings run side by side")
    args = parser.parse_args()
    started = time.perf_counter()
    results = [r for spread in args.spread for r in run_spread(spread, args)]
    out = Path(args.out)
    write_json(
        out / "ablation.json",
        {"settings": vars(args), "results": results, "wall_s": time.perf_counter() - started},
    )
    table = _markdown(results)
    bounds = _bound_markdown(results)
    (out / "ablation.md").write_text(
        "PSNR (dB) / SSIM against the ground truth, test speakers, mean over utterances.\n\n"
        f"{table}\n\nPSNR (dB) inside the fusion region (see audio_bound):\n\n{bounds}\n"
    )
    print(table)
    print(bounds)


if __name__ == "__main__":
    main()
