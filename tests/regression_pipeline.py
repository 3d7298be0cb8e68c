"""The pipeline whose outputs the regression test pins (``tests/test_regression.py``).

Runs synth (the test corpus), prepare, every baseline, 2 epochs of training and reconstruct
through the CLI, and summarizes every output array by its shape, sum, sum of squares and a
few values at fixed positions. ``python tests/regression_pipeline.py OUT.json`` writes the
summary; ``tests/data/regression.json`` was written this way by the code before the
architecture refactor (issue 12), and a change of behaviour must regenerate it on purpose
(say why in the commit).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

CORPUS = ["--subjects", "3", "--utterances", "1", "--seconds", "3", "--seed", "0"]
BASELINES = ("gridding", "wavelet", "tv", "ttv")
ITERS = "10"
PREPARED_KEYS = ("kspace", "traj", "dcf", "smaps", "reference", "truth", "eba", "audio")


def summarize(values: np.ndarray) -> dict:
    """Shape, sums and eight samples of an array (complex as real/imag pairs)."""
    arr = np.asarray(values)
    if np.iscomplexobj(arr):
        arr = np.stack([arr.real, arr.imag], axis=-1)
    flat = arr.astype(np.float64).reshape(-1)
    picks = np.linspace(0, flat.size - 1, 8).round().astype(int) if flat.size else []
    return {
        "shape": list(np.shape(values)),
        "sum": float(flat.sum()),
        "sum_sq": float((flat**2).sum()),
        "samples": [float(flat[i]) for i in picks],
    }


def run(work: Path, prepared: Path | None = None) -> dict:
    """Run the pipeline in ``work`` and return the summaries.

    Args:
        work: an empty scratch folder.
        prepared: an existing prepared file of the corpus (``sirem prepare`` with default
            options of ``sirem synth`` with :data:`CORPUS`), skipping synth and prepare.
    """
    from typer.testing import CliRunner

    from sirem_cli.cli import app

    runner = CliRunner()

    def sirem(*args: object) -> None:
        result = runner.invoke(app, [str(a) for a in args])
        if result.exit_code != 0:
            raise RuntimeError(f"sirem {' '.join(map(str, args))}: {result.output}")

    if prepared is None:
        corpus, prepared = work / "corpus", work / "prepared.h5"
        sirem("synth", corpus, *CORPUS)
        sirem("prepare", corpus, prepared)
    out: dict = {"prepared": {}, "baseline": {}, "sirem": {}}
    with h5py.File(prepared, "r") as f:
        for prefix, group in f["utterances"].items():
            out["prepared"][prefix] = {k: summarize(group[k][()]) for k in PREPARED_KEYS}
    for method in BASELINES:
        target = work / f"{method}.h5"
        sirem("baseline", prepared, target, "--method", method, "--iters", ITERS, "--split", "all")
        out["baseline"][method] = _recon(target)
    ckpt = work / "model.pt"
    # --arm-lr 1e-4: the default when the golden values were written (now 0.05)
    sirem(
        "train", prepared, "--out", ckpt, "--encoder", "mel", "--epochs", "2", "--seed", "0",
        "--arm-lr", "0.0001",
    )  # fmt: skip
    target = work / "sirem.h5"
    sirem("reconstruct", "--ckpt", ckpt, prepared, target, "--split", "all")
    out["sirem"] = _recon(target)
    return out


def _recon(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {p: summarize(g["recon"][()]) for p, g in f["utterances"].items()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        Path(sys.argv[1]).write_text(json.dumps(run(Path(tmp)), indent=1) + "\n")
