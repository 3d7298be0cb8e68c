"""USC corpus file names, discovery, reference reconstructions and audio."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.usc import (
    Prefix,
    discover,
    parse_prefix,
    read_recon,
    read_wav,
    write_recon,
    write_wav,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def assert_one_line(exc: pytest.ExceptionInfo, path: Path, *phrases: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg


# --------------------------------------------------------------------------- prefixes


def test_parse_prefix():
    assert parse_prefix("sub009_2drt_01_vcv1_r1") == Prefix("sub009", 1, "vcv1", 1)
    assert parse_prefix("sub061_2drt_17_topic1") == Prefix("sub061", 17, "topic1", None)
    assert parse_prefix("sub035_2drt_05_shibboleth_r2") == Prefix("sub035", 5, "shibboleth", 2)
    for bad in ("sub61_2drt_17_topic1", "sub061_2drt_17_Topic1", "sub061_17_topic1",
                "sub061_2drt_17_topic1_raw", "sub061_2drt_17_topic12"):  # fmt: skip
        with pytest.raises(InputError):
            parse_prefix(bad)


# --------------------------------------------------------------------------- discovery


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    """A USC tree with a leading folder and an Annot-16 tree elsewhere."""
    usc = tmp_path / "usc" / "dataset"  # leading folder before subNNN/
    annot = tmp_path / "elsewhere" / "75SpeakerAnnot16"
    for prefix in ("sub061_2drt_17_topic1", "sub009_2drt_01_vcv1_r1", "sub009_2drt_01_vcv1_r2"):
        subj = prefix[:6]
        for kind, suffix in (("raw", "_raw.h5"), ("recon", "_recon.h5"), ("audio", "_audio.wav")):
            touch(usc / subj / "2drt" / kind / f"{prefix}{suffix}")
        touch(annot / subj / "track" / f"{prefix}_track.mat")
    touch(usc / "sub061" / "2drt" / "video" / "sub061_2drt_17_topic1_video.mp4")
    touch(annot / "sub061" / "alignment" / "sub061_2drt_17_topic1_text.TextGrid")
    # An older layout without 2drt/ and only a raw file.
    touch(usc / "sub015" / "raw" / "sub015_2drt_01_vcv1_r1_raw.h5")
    # A track without any USC file.
    touch(annot / "sub074" / "track" / "sub074_2drt_12_picture1_track.mat")
    # Files that must be ignored.
    touch(usc / "README.md")
    touch(usc / "sub061" / "2drt" / "raw" / "sub061_2drt_17_topic1_raw.h5.bak")
    touch(usc / "sub061" / "2drt" / "raw" / "._sub061_2drt_17_topic1_raw.h5")
    touch(usc / "sub061" / "2drt" / "raw" / "sub61_2drt_17_topic1_raw.h5")
    gt = annot / "hand_ground_truth" / "ground_truth_json"
    touch(gt / "sub061_2drt_17_topic1_track_frame-530.json")
    return usc, annot


def test_discover_joins_usc_and_annot16(corpus):
    usc, annot = corpus
    found = discover(usc.parent, annot=annot.parent)
    assert [u.prefix for u in found] == [
        "sub009_2drt_01_vcv1_r1",
        "sub009_2drt_01_vcv1_r2",
        "sub015_2drt_01_vcv1_r1",
        "sub061_2drt_17_topic1",
        "sub074_2drt_12_picture1",
    ]
    by = {u.prefix: u for u in found}
    topic = by["sub061_2drt_17_topic1"]
    assert topic.subject == "sub061"
    assert topic.raw == usc / "sub061/2drt/raw/sub061_2drt_17_topic1_raw.h5"
    assert topic.recon == usc / "sub061/2drt/recon/sub061_2drt_17_topic1_recon.h5"
    assert topic.audio == usc / "sub061/2drt/audio/sub061_2drt_17_topic1_audio.wav"
    assert topic.video == usc / "sub061/2drt/video/sub061_2drt_17_topic1_video.mp4"
    assert topic.track == annot / "sub061/track/sub061_2drt_17_topic1_track.mat"
    assert topic.textgrid == annot / "sub061/alignment/sub061_2drt_17_topic1_text.TextGrid"
    assert topic.truth is None
    assert by["sub009_2drt_01_vcv1_r2"].info == Prefix("sub009", 1, "vcv1", 2)
    assert by["sub009_2drt_01_vcv1_r1"].textgrid is None
    assert by["sub015_2drt_01_vcv1_r1"].recon is None
    assert by["sub074_2drt_12_picture1"].raw is None
    assert by["sub074_2drt_12_picture1"].track is not None
    # Without annot, the Annot-16 files are not found (only the given folders are searched).
    alone = {u.prefix: u for u in discover(usc)}
    assert alone["sub061_2drt_17_topic1"].track is None
    assert "sub074_2drt_12_picture1" not in alone


def test_discover_subject_filter(corpus):
    usc, annot = corpus
    found = discover(usc, annot=annot, subjects=["sub009"])
    assert [u.prefix for u in found] == ["sub009_2drt_01_vcv1_r1", "sub009_2drt_01_vcv1_r2"]
    with pytest.raises(InputError, match=r"no \*_raw\.h5 files found for subjects sub074"):
        discover(usc, annot=annot, subjects=["sub074"])


def test_discover_synthetic_corpus_layout(tmp_path):
    out = tmp_path / "OUT"
    prefix = "sub061_2drt_17_topic1"
    touch(out / "usc75" / "sub061" / "2drt" / "raw" / f"{prefix}_raw.h5")
    touch(out / "usc75" / "sub061" / "2drt" / "recon" / f"{prefix}_recon.h5")
    touch(out / "usc75" / "sub061" / "2drt" / "audio" / f"{prefix}_audio.wav")
    touch(out / "annot16" / "sub061" / "track" / f"{prefix}_track.mat")
    touch(out / "annot16" / "sub061" / "alignment" / f"{prefix}_text.TextGrid")
    touch(out / "truth" / f"{prefix}_truth.h5")
    (whole,) = discover(out)
    assert whole.raw and whole.recon and whole.audio and whole.track and whole.textgrid
    assert whole.truth == out / "truth" / f"{prefix}_truth.h5"
    (split,) = discover(out / "usc75", annot=out / "annot16")
    assert split.raw == whole.raw and split.track == whole.track and split.truth is None
    # annot inside root: the same files are reached twice, which is not a duplicate.
    (again,) = discover(out, annot=out / "annot16")
    assert again.track == whole.track


def test_discover_duplicates_name_both(tmp_path):
    a = touch(tmp_path / "a" / "sub061_2drt_17_topic1_raw.h5")
    b = touch(tmp_path / "b" / "sub061_2drt_17_topic1_raw.h5")
    with pytest.raises(InputError) as exc:
        discover(tmp_path)
    assert str(a) in str(exc.value) and str(b) in str(exc.value)
    assert "duplicate raw" in str(exc.value)


def test_discover_errors(tmp_path):
    with pytest.raises(InputError) as exc:
        discover(tmp_path / "nope")
    assert_one_line(exc, tmp_path / "nope", "no such folder")
    touch(tmp_path / "sub061_2drt_17_topic1_audio.wav")
    with pytest.raises(InputError) as exc:
        discover(tmp_path)
    assert str(exc.value) == f"{tmp_path}: no *_raw.h5 files found"
    with pytest.raises(InputError):
        discover(tmp_path, annot=tmp_path / "missing")


def test_discover_follows_symlinks_without_looping(tmp_path):
    real = tmp_path / "store"
    raw = touch(real / "sub061" / "2drt" / "raw" / "sub061_2drt_17_topic1_raw.h5")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(real, root / "linked")  # a linked folder is searched
    os.symlink(root, root / "linked" / "loop")  # a cycle must not hang
    os.symlink(tmp_path / "gone", root / "sub009_2drt_01_vcv1_r1_raw.h5")  # broken: ignored
    (u,) = discover(root)
    assert u.raw == root / "linked" / raw.relative_to(real)


# --------------------------------------------------------------------------- recon


def test_recon_round_trip_not_transposed(tmp_path):
    path = tmp_path / "x_recon.h5"
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 1, (5, 6, 7))  # H != W: a transpose would show
    write_recon(path, frames)
    with h5py.File(path, "r") as f:
        assert f["recon"].dtype == np.float64 and f["recon"].shape == (5, 6, 7)
        for name, value in (("lambda_t", 0.08), ("lambda_s", 0.0), ("iterations", 150.0)):
            assert f[name].shape == (1, 1) and f[name].dtype == np.float64
            assert f[name][0, 0] == value
    got = read_recon(path)
    assert got.dtype == np.float32 and got.shape == (5, 6, 7)
    np.testing.assert_allclose(got, frames, rtol=1e-6)
    write_recon(path, frames, extras=False)
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == ["recon"]


def test_recon_reads_only_recon(tmp_path):
    path = tmp_path / "y_recon.h5"
    with h5py.File(path, "w") as f:
        f["recon"] = np.ones((2, 4, 4))
        f["other"] = np.full((3, 3, 3), np.nan)  # a bad extra dataset is not read
    assert read_recon(path).shape == (2, 4, 4)


@pytest.mark.parametrize(
    ("case", "phrase"),
    [
        ("missing", "no /recon dataset"),
        ("2d", "expected 3-D"),
        ("nan", "NaN/Inf in /recon"),
        ("text", "not a readable HDF5 file"),
    ],
)
def test_recon_errors(tmp_path, case, phrase):
    path = tmp_path / f"{case}_recon.h5"
    if case == "text":
        path.write_text("hello")
    else:
        with h5py.File(path, "w") as f:
            if case == "missing":
                f["lambda_t"] = np.zeros((1, 1))
            elif case == "2d":
                f["recon"] = np.zeros((4, 4))
            else:
                data = np.zeros((3, 4, 4))
                data[1, 2, 2] = np.inf
                f["recon"] = data
    with pytest.raises(FormatError) as exc:
        read_recon(path)
    assert_one_line(exc, path, phrase)


# --------------------------------------------------------------------------- audio


def test_wav_round_trip_pcm16_and_clipping(tmp_path):
    path = tmp_path / "x_audio.wav"
    rng = np.random.default_rng(1)
    audio = rng.uniform(-0.9, 0.9, 4000)
    audio[10], audio[11] = 3.0, -5.0
    write_wav(path, audio)
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (20000, 1, "PCM_16")
    got, rate = read_wav(path)
    assert rate == 20000 and got.dtype == np.float32 and got.shape == (4000,)
    keep = np.ones(4000, bool)
    keep[10:12] = False
    np.testing.assert_allclose(got[keep], audio[keep], atol=1.0 / 32767 + 1e-7)
    assert got[10] == pytest.approx(1.0, abs=1e-4) and got[11] == pytest.approx(-1.0, abs=1e-4)
    write_wav(path, audio[:100, None], sample_rate=16000)
    assert read_wav(path)[1] == 16000
    with pytest.raises(ShapeError):
        write_wav(path, np.zeros((10, 2)))


def test_wav_takes_channel_zero(tmp_path):
    path = tmp_path / "st_audio.wav"
    left = np.linspace(-0.5, 0.5, 500)
    soundfile.write(str(path), np.stack([left, -left], axis=1), 20000, subtype="PCM_24")
    got, _ = read_wav(path)
    np.testing.assert_allclose(got, left, atol=1e-6)


def test_wav_errors(tmp_path):
    with pytest.raises(InputError) as exc:
        read_wav(tmp_path / "missing_audio.wav")
    assert_one_line(exc, tmp_path / "missing_audio.wav", "no such file")
    bad = tmp_path / "bad_audio.wav"
    bad.write_bytes(b"RIFF\x00\x01garbage" * 10)
    with pytest.raises(FormatError) as exc:
        read_wav(bad)
    assert_one_line(exc, bad, "not a readable audio file")
