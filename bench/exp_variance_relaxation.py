"""Experiment (docs/study.md, "the stronger ablation"): the no-audio speech-prior network with
temporal TV relaxed where its own predicted variance is high.

The speech prior relaxes temporal TV where its predicted frames move (``motion``); a network
without audio predicts frames constant in time, so that relaxation is the identity for it. Here
the no-audio network's precision weight M_t (from its predicted variance) drives the relaxation
instead: ``w = 1 / (1 + mean_t(1 - M_t) / tau)``. Not a sirem option (yet): this script swaps
the relaxation inside :mod:`sirem_cli.recon.prior` for its own run.

    python bench/exp_variance_relaxation.py CASE val 128 '[["tau1 mu.3 f1", 1.0, 0.3, 1.0]]'
    python bench/exp_variance_relaxation.py CASE test 0 '[["tau1 mu.3 f1", 1.0, 0.3, 1.0]]'

CASE is a study case folder (``prepared.h5`` and ``prior-no-audio.pt``); each setting is
[name, tau, mu, TV factor] (the factor scales ttv's own weights, read from the checkpoint);
the third argument is the middle frames per utterance (0: whole utterances). Prints PSNR,
PSNR-LS and SSIM against the truth, averaged over the split's utterances.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sirem_cli.recon.prior as recon_prior
from sirem_cli.api.prior import (
    SolveWeights,
    UtterancePrior,
    read_prior,
    solve_utterance,
    utterance_inputs,
)
from sirem_cli.imaging import normalize_magnitude
from sirem_cli.io.prepared import PreparedSet
from sirem_cli.metrics.image import psnr, psnr_ls, ssim

STATE: dict = {}
_PRIOR_SOLVE, _MOTION_WEIGHT = recon_prior.prior_solve, recon_prior.motion_time_weight


def _prior_solve(normal, b, prior, *, weight=None, **kw):
    STATE["M"] = weight  # the precision weight of this window, for the relaxation below
    return _PRIOR_SOLVE(normal, b, prior, weight=weight, **kw)


def _variance_weight(prior, motion):
    tau = STATE.get("tau")
    if not tau:
        return _MOTION_WEIGHT(prior, motion)
    m = STATE["M"]
    uncertain = (1 - m).mean(dim=0) if m.ndim == 3 else 1 - m
    return 1.0 / (1.0 + uncertain / tau)


def main(case: Path, split: str, n_frames: int, settings: list) -> None:
    recon_prior.prior_solve, recon_prior.motion_time_weight = _prior_solve, _variance_weight
    model, info, static = read_prior(case / "prior-no-audio.pt")
    ttv = (float(info["ttv_lam"]), float(info["ttv_lam_spatial"]))
    refs = PreparedSet([case / "prepared.h5"]).select(split)
    for name, tau, mu, factor in settings:
        STATE.clear()
        STATE["tau"] = tau
        weights = SolveWeights(mu, ttv[0] * factor, ttv[1] * factor, int(info["iters"]), 0.0)
        scores = []
        for ref in refs:
            n = min(n_frames, ref.n_frames) if n_frames else ref.n_frames
            start = (ref.n_frames - n) // 2
            block = slice(start, start + n)
            truth = normalize_magnitude(PreparedSet.read(ref, ["truth"], frames=block)["truth"])
            ctx, xbar = utterance_inputs(ref, int(info["n_mels"]), int(info["half_context"]))
            prior = UtterancePrior(model, ctx, xbar, None, info.get("prior_weight", "precision"),
                                   static)  # fmt: skip
            recon = solve_utterance(ref, prior, weights, "cpu", window=max(512, n), frames=block)
            scores.append([np.mean(f(recon, truth)) for f in (psnr, psnr_ls, ssim)])
        mean = np.mean(scores, axis=0)
        per = [round(float(s[0]), 2) for s in scores]
        print(f"{split} {name}: PSNR {mean[0]:.2f} PSNR-LS {mean[1]:.2f} SSIM {mean[2]:.4f} "
              f"per utterance {per}", flush=True)  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
    print(f"{time.perf_counter() - t0:.0f} s")
