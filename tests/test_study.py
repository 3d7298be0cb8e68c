"""bench/study.py's acceptance comparisons (the pure part of the study; the study itself runs
through the CLI for about an hour and is not part of the test suite)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[1] / "bench" / "study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("sirem_bench_study", STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(psnr: float, psnr_ls: float) -> dict:
    return {"psnr": psnr, "psnr_ls": psnr_ls, "ssim": 0.9, "ms_per_frame": 1.0,
            "per_utterance": {"u": {"psnr": psnr}}}  # fmt: skip


def test_audio_margins_each_tuned_and_at_shared_weights(study):
    rows = {
        "prior": _row(35.5, 37.2),  # audio network, its own weights
        "prior-no-audio": _row(36.2, 36.9),  # no-audio network, its own weights
        "no-audio-at-prior": _row(34.3, 35.8),  # no-audio network at the prior's weights
        "prior-at-no-audio": _row(36.4, 36.8),  # audio network at the no-audio weights
    }
    checks = study.checks(rows)
    assert checks["prior - prior-no-audio (the audio, each tuned)"] == "-0.70 dB PSNR, +0.30 LS"
    # at the prior's weights: audio network (prior) minus no-audio network (no-audio-at-prior)
    assert checks["the audio at prior's weights"] == "+1.20 dB PSNR, +1.40 LS"
    # at the no-audio weights: audio network (prior-at-no-audio) minus prior-no-audio
    assert checks["the audio at prior-no-audio's weights"] == "+0.20 dB PSNR, -0.10 LS"


def test_cross_rows_name_existing_rows(study):
    for row, (network, weights_of) in study.CROSS_ROWS.items():
        assert row in study.ROWS and network in study.ROWS and weights_of in study.ROWS
        assert network != weights_of
