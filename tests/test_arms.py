"""Frames of N arms (issue 13): prepare at N = 2, references, alignment, ttv, layouts, v1 files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from sirem_cli.cli import app
from sirem_cli.io.prepared import PreparedSet, ReconSet
from sirem_cli.io.usc import read_recon
from sirem_cli.metrics.image import psnr

runner = CliRunner()


def _sirem(*args: object, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def _first(path: Path, split: str = "test"):
    return PreparedSet([path]).select(split)[0]


def test_two_arm_frames_rotate_and_take_the_recon_frame_of_the_same_acquisitions(
    prepared_n2, synth_corpus
):
    ref = _first(prepared_n2)
    data = PreparedSet.read(ref)
    attrs = data["attrs"]
    n_frames = ref.n_frames
    assert attrs["arms_per_frame"] == 2 and attrs["n_interleaves"] == 13
    assert data["kspace"].shape[2] == 2 and data["arms"].shape == (n_frames, 2)
    assert data["traj"].shape[0] == 13 and data["xbar"].shape == data["smaps"].shape[1:]
    # the interleaves rotate: consecutive frames hold different pairs, all 13 are used
    assert len({tuple(a) for a in data["arms"][:13]}) == 13
    assert set(np.unique(data["arms"])) == set(range(13))
    assert np.all(np.diff(data["arms"], axis=1) > 0)  # sorted within a frame
    # frame t holds acquisitions 2t, 2t + 1: exactly /recon frame t (counted from the scan start)
    first = attrs["skip_acquisitions"] // 2
    assert np.array_equal(data["ref_index"], first + np.arange(n_frames))
    assert attrs["frame_rate_hz"] == pytest.approx(1 / (2 * attrs["tr_s"]))
    assert np.allclose(data["frame_time"], (data["ref_index"] * 2 + 1) * attrs["tr_s"])
    (recon_path,) = synth_corpus.rglob(f"{ref.prefix}_recon.h5")
    recon = read_recon(recon_path)
    upright = np.swapaxes(recon[data["ref_index"]], -1, -2)
    expected = upright / upright.reshape(n_frames, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(data["reference"], expected, rtol=1e-6, atol=1e-7)


def test_ttv_with_lam_auto_beats_gridding_by_10_db_and_frames_are_pixel_aligned(
    prepared_n2, tmp_path
):
    """Held-out speaker, against the truth: ttv (weights tuned on the validation speaker)
    is >= 10 dB above gridding at N = 2, and shifting it by one pixel costs several dB."""
    grid, ttv = tmp_path / "g.h5", tmp_path / "t.h5"
    _sirem("baseline", prepared_n2, grid, "--method", "gridding")
    out = _sirem(
        "baseline", prepared_n2, ttv, "--method", "ttv", "--lam", "auto",
        "--iters", "30", "--lam-frames", "16",
    )  # fmt: skip
    assert "lambda search" in out
    config = json.loads(ReconSet(ttv).attrs["config"])
    assert config["lam_target"] == "truth" and len(config["lam_scores"]) == 20
    ref = _first(prepared_n2)
    truth = PreparedSet.read(ref, ["truth"])["truth"]
    scores = {
        name: float(np.mean(psnr(ReconSet(path).read(ref.prefix), truth)))
        for name, path in (("gridding", grid), ("ttv", ttv))
    }
    print(scores)
    assert scores["ttv"] >= scores["gridding"] + 10.0
    recon = ReconSet(ttv).read(ref.prefix)
    for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = np.roll(recon, shift, axis=(1, 2))
        assert float(np.mean(psnr(moved, truth))) < scores["ttv"] - 2.0, shift
    assert ReconSet(ttv).utterances[0].n_frames == ref.n_frames
    with h5py.File(ttv, "r") as f:
        rate = f["utterances"][ref.prefix].attrs["frame_rate_hz"]
    assert rate == pytest.approx(ref.frame_rate_hz)


def test_thirteen_arms_is_version_1_with_arms_and_xbar_added(prepared_file, tmp_path):
    """N = 13 stores what version 1 stored; a version-1 file reconstructs identically."""
    ref = _first(prepared_file)
    data = PreparedSet.read(ref)
    assert np.array_equal(data["arms"], np.tile(np.arange(13), (ref.n_frames, 1)))
    old = tmp_path / "v1.h5"
    shutil.copy(prepared_file, old)
    with h5py.File(old, "a") as f:
        f.attrs["format_version"] = 1
        for group in f["utterances"].values():
            for name in ("arms", "xbar"):
                del group[name]
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _sirem("baseline", prepared_file, a, "--method", "tv", "--iters", "5")
    _sirem("baseline", old, b, "--method", "tv", "--iters", "5")
    assert np.array_equal(ReconSet(a).read(ref.prefix), ReconSet(b).read(ref.prefix))


def test_bad_arms_per_frame_is_one_line(synth_corpus, tmp_path):
    for value, needle in (("14", "outside 1..13"), ("0", "--arms-per-frame must be >= 1")):
        out = _sirem("prepare", synth_corpus, tmp_path / "p.h5", "--arms-per-frame", value, code=2)
        assert needle in out and "Traceback" not in out
        assert not (tmp_path / "p.h5").exists()


def test_a_flat_layout_plugs_in(synth_corpus, prepared_n2, tmp_path):
    """Another lab's export: one folder of <utterance>_{raw.h5,recon.h5,audio.wav}, any names,
    no annotations. It prepares through the flat layout to the same k-space."""
    ref = _first(prepared_n2)
    flat = tmp_path / "flat"
    flat.mkdir()
    name = f"speaker{ref.subject[3:]}_take1"
    for suffix in ("_raw.h5", "_recon.h5", "_audio.wav"):
        (source,) = synth_corpus.rglob(f"{ref.prefix}{suffix}")
        shutil.copy(source, flat / f"{name}{suffix}")
    out = tmp_path / "flat.h5"
    table = _sirem("prepare", flat, out, "--arms-per-frame", "2")
    assert name in table
    (got,) = PreparedSet([out]).utterances
    assert got.subject == f"speaker{ref.subject[3:]}" and got.arms_per_frame == 2
    mine = PreparedSet.read(got)
    theirs = PreparedSet.read(ref)
    assert "eba" not in mine and mine["attrs"]["has_annotations"] == 0
    assert np.array_equal(mine["kspace"], theirs["kspace"])
    assert np.array_equal(mine["arms"], theirs["arms"])
    config = PreparedSet([out]).configs[out]
    assert config["layout"] == "flat"
