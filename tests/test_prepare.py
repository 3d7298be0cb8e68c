"""Issue 3 acceptance: prepared data checked against the generator's ground truth, and every error."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soxr
from typer.testing import CliRunner

from sirem_cli.cli import app
from sirem_cli.errors import FormatError
from sirem_cli.io.ismrmrd import RawWriter, read_raw
from sirem_cli.io.prepared import PreparedSet

SKIP = 10


def _groups(prepared_file):
    ds = PreparedSet([prepared_file])
    return ds, [(u, ds.read(u)) for u in ds.utterances]


def _truth(corpus: Path, prefix: str):
    with h5py.File(corpus / "truth" / f"{prefix}_truth.h5", "r") as f:
        return {k: f[k][()] for k in ("truth", "smaps", "labels")}


def _corr(x, y):
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def test_frames_alignment_and_reference(prepared_file, synth_corpus):
    ds, groups = _groups(prepared_file)
    assert {u.split for u in ds.utterances} == {"train", "val", "test"}
    for ref, data in groups:
        ns = int(data["attrs"]["n_acquisitions"])
        n_frames = ns // 13 - SKIP
        assert data["kspace"].shape == (n_frames, 8, 13, 630)
        t = np.arange(SKIP, SKIP + n_frames)
        assert np.array_equal(data["ref_index"], (13 * t + 6) // 2)
        assert np.allclose(data["frame_time"], (13 * t + 6.5) * 6.004e-3)
        truth = _truth(synth_corpus, ref.prefix)
        corrs = [
            _corr(data["reference"][j], truth["truth"][k]) for j, k in enumerate(data["ref_index"])
        ]
        assert min(corrs) > 0.99
        assert data["truth"].shape == data["reference"].shape
        assert np.abs(data["kspace"]).max() == pytest.approx(1.0)  # utterance normalization
        assert data["reference"].max() <= 1 and data["reference"].min() >= 0
        assert data["attrs"]["orientation"] == "transpose,flip0"  # upright = rot90(gridding)


def test_gridding_of_prepared_data_is_upright_and_pixel_aligned(prepared_file):
    """The plain adjoint of the stored data matches the reference with no shift or flip."""
    from sirem_cli.nufft import make_nufft

    _, groups = _groups(prepared_file)
    _, data = groups[0]
    op = make_nufft(data["traj"], (84, 84))
    k = data["kspace"][5] * data["dcf"][None]
    coil = np.asarray(op.adjoint(k.reshape(8, -1)))
    img = np.abs(np.sum(np.conj(data["smaps"]) * coil, axis=0))
    ref = data["reference"][5]
    shifts = {
        (a, b): _corr(np.roll(img, (a, b), axis=(0, 1)), ref)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
    }
    assert max(shifts, key=shifts.get) == (0, 0)
    assert shifts[(0, 0)] > 0.9


def test_coil_maps_match_the_true_maps_in_the_object(prepared_file, synth_corpus):
    _, groups = _groups(prepared_file)
    ref, data = groups[0]
    truth = _truth(synth_corpus, ref.prefix)
    true = truth["smaps"] / np.sqrt(np.sum(np.abs(truth["smaps"]) ** 2, axis=0))
    est = data["smaps"]
    support = truth["truth"].mean(axis=0) > 0.3
    coherence = np.abs(np.sum(np.conj(est) * true, axis=0)) / (
        np.sqrt(np.sum(np.abs(est) ** 2, axis=0)) + 1e-12
    )
    # coherence 1 = the same maps up to a per-pixel common phase (Walsh maps are phase-referenced)
    assert np.median(coherence[support]) > 0.97
    assert np.mean(coherence[support] > 0.9) > 0.9


def test_each_arm_is_the_same_interleaf_in_every_frame(prepared_file, synth_corpus):
    _, groups = _groups(prepared_file)
    ref, data = groups[0]
    raw = read_raw(next(synth_corpus.rglob(f"{ref.prefix}_raw.h5")))
    il = raw.interleaf
    n = data["kspace"].shape[0]
    ratios = []
    for t in (SKIP, SKIP + n // 2, SKIP + n - 1):
        block = np.arange(13 * t, 13 * t + 13)
        acq = block[np.argsort(il[block])]  # independent re-binning by interleaf
        ratios.append(data["kspace"][t - SKIP, 0] / raw.data[acq, 0])
    # the stored sample / raw sample is the fixed fold-in phase and scale: identical in every frame
    assert np.allclose(ratios[0], ratios[1], rtol=1e-3) and np.allclose(
        ratios[0], ratios[2], rtol=1e-3
    )


def test_audio_windows_hold_the_resampled_samples(prepared_file, synth_corpus):
    from sirem_cli.io.usc import read_wav

    _, groups = _groups(prepared_file)
    ref, data = groups[0]
    wav, rate = read_wav(next(synth_corpus.rglob(f"{ref.prefix}_audio.wav")))
    expected = soxr.resample(wav, rate, 16000, quality="HQ")
    assert np.allclose(data["audio"], expected, atol=1e-6)
    centre = np.rint(data["frame_time"] * 16000).astype(int)
    half = round(0.25 * 16000)
    assert np.array_equal(data["audio_window"], np.stack([centre - half, centre + half], axis=1))
    start, stop = data["audio_window"][3]
    assert np.array_equal(data["audio"][start:stop], expected[start:stop])


def test_eba_covers_the_moving_articulators(prepared_file, synth_corpus):
    from scipy.ndimage import binary_dilation

    from sirem_cli.synth.labels import ARTICULATORS

    _, groups = _groups(prepared_file)
    ref, data = groups[0]
    truth = _truth(synth_corpus, ref.prefix)
    ids = [
        i
        for i, name in ARTICULATORS.items()
        if name in ("tongue", "upper_lip", "lower_lip", "velum")
    ]
    covered = []
    for j, k in enumerate(data["ref_index"]):
        moving = np.isin(truth["labels"][k], ids)
        edge = moving & binary_dilation(truth["labels"][k] == 0)  # air-tissue boundary
        covered.append(np.mean(data["eba"][j][edge] > 0.1))
    assert np.mean(covered) > 0.9
    assert data["labels"].dtype == np.uint8 and data["labels"].max() > 0


# ----------------------------------------------------------------------------- errors


def _copy_one(corpus: Path, dst: Path) -> dict[str, Path]:
    raw = sorted(corpus.rglob("*_raw.h5"))[0]
    prefix = raw.name.removesuffix("_raw.h5")
    out = {}
    for src in corpus.rglob(f"{prefix}_*"):
        target = dst / src.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
        out[src.name.removeprefix(prefix + "_")] = target
    return out


def _prepare(root: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["prepare", str(root), str(out), *extra])


def _rewrite_raw(path: Path, *, data=None, traj=None, interleaf=None):
    scan = read_raw(path)
    data = scan.data if data is None else data
    traj = scan.traj if traj is None else traj
    interleaf = scan.interleaf if interleaf is None else interleaf
    path.unlink()
    with RawWriter(path, scan.header, n_samples=traj.shape[1], traj_dims=traj.shape[2]) as w:
        w.append(data, traj, interleaf)


def _assert_failed(result, out: Path, *needles: str):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())


def test_missing_recon_is_skipped_or_fails_with_strict(synth_corpus, tmp_path):
    files = _copy_one(synth_corpus, tmp_path / "c")
    files["recon.h5"].unlink()
    out = tmp_path / "p.h5"
    result = _prepare(tmp_path / "c", out)
    _assert_failed(result, out, "no utterance has raw, recon and audio")
    result = _prepare(tmp_path / "c", out, "--strict")
    _assert_failed(result, out, "no recon", "--strict")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("truncate", "raw.h5: not"),
        ("not_hdf5", "raw.h5: not"),
        ("no_data", "dataset/data"),
        ("traj_width", "trajectory width"),
        ("kmax", "max |k|"),
        ("period", "changes within the utterance"),
        ("nan", "NaN"),
        ("recon_frames", "reference frames, expected"),
        ("track_records", "track records"),
        ("short_audio", "much shorter than the scan"),
    ],
)
def test_bad_input_one_line_no_output(synth_corpus, tmp_path, damage, needle):
    files = _copy_one(synth_corpus, tmp_path / "c")
    raw = files["raw.h5"]
    if damage == "truncate":
        raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 3])
    elif damage == "not_hdf5":
        raw.write_text("this is not an HDF5 file")
    elif damage == "no_data":
        with h5py.File(raw, "a") as f:
            del f["dataset/data"]
    elif damage == "traj_width":
        scan = read_raw(raw)
        _rewrite_raw(raw, traj=scan.traj[..., :2].copy())
    elif damage == "kmax":
        scan = read_raw(raw)
        traj = scan.traj.copy()
        traj[..., :2] *= 2
        _rewrite_raw(raw, traj=traj)
    elif damage == "period":
        scan = read_raw(raw)
        il = scan.interleaf.copy()
        il[20] = il[21]
        _rewrite_raw(raw, interleaf=il)
    elif damage == "nan":
        scan = read_raw(raw)
        data = scan.data.copy()
        data[40, 3, 100] = np.nan
        _rewrite_raw(raw, data=data)
    elif damage == "recon_frames":
        with h5py.File(files["recon.h5"], "a") as f:
            keep = f["recon"][:-10]
            del f["recon"]
            f["recon"] = keep
    elif damage == "track_records":
        import scipy.io

        track = scipy.io.loadmat(files["track.mat"])
        scipy.io.savemat(files["track.mat"], {"trackdata": track["trackdata"][:, :-5]})
    elif damage == "short_audio":
        import soundfile

        audio, rate = soundfile.read(files["audio.wav"])
        soundfile.write(files["audio.wav"], audio[: len(audio) // 3], rate, subtype="PCM_16")
    out = tmp_path / "p.h5"
    before = {p: p.read_bytes() for p in files.values() if damage != "no_data"}
    result = _prepare(tmp_path / "c", out)
    _assert_failed(result, out, needle)
    assert len([ln for ln in result.output.strip().splitlines() if ln.startswith("error")]) == 1
    for path, content in before.items():
        assert path.read_bytes() == content  # inputs never modified


def test_empty_root_unwritable_and_existing_out(synth_corpus, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "p.h5"
    _assert_failed(_prepare(empty, out), out, "no *_raw.h5")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _prepare(synth_corpus, blocker / "p.h5")
    assert result.exit_code == 2 and "cannot write" in result.output
    out.write_text("existing")
    result = _prepare(synth_corpus, out)
    assert result.exit_code == 2 and "already exists" in result.output
    assert out.read_text() == "existing"


def test_per_subject_runs_agree_with_one_run_and_read_as_one_dataset(
    synth_corpus, tmp_path, prepared_file
):
    full = PreparedSet([prepared_file])
    parts = []
    for subject in sorted({u.subject for u in full.utterances}):
        out = tmp_path / f"{subject}.h5"
        result = _prepare(synth_corpus, out, "--subject", subject)
        assert result.exit_code == 0, result.output
        parts.append(out)
    joined = PreparedSet(parts)
    assert {(u.prefix, u.split) for u in joined.utterances} == {
        (u.prefix, u.split) for u in full.utterances
    }


def test_coil_window_option_changes_the_maps_and_is_recorded(synth_corpus, tmp_path, prepared_file):
    full = PreparedSet([prepared_file])
    ref = full.utterances[0]
    out = tmp_path / "wide.h5"
    result = _prepare(synth_corpus, out, "--subject", ref.subject, "--coil-window", "20")
    assert result.exit_code == 0, result.output
    wide = PreparedSet([out])
    assert wide.configs[out]["coil_window"] == 20
    assert full.configs[prepared_file]["coil_window"] == 5
    assert wide.read(wide.find(ref.prefix), [])["attrs"]["coil_window"] == 20
    default, smoothed = (
        full.read(ref, ["smaps"])["smaps"],
        wide.read(wide.find(ref.prefix), ["smaps"])["smaps"],
    )
    truth = _truth(synth_corpus, ref.prefix)
    support = truth["truth"].mean(axis=0) > 0.3
    coherence = np.abs(np.sum(np.conj(smoothed) * default, axis=0))
    assert np.median(coherence[support]) > 0.95  # the same maps, smoothed differently
    assert not np.allclose(smoothed, default, atol=1e-3)
    bad = _prepare(synth_corpus, tmp_path / "bad.h5", "--coil-window", "0")
    assert bad.exit_code != 0 and "--coil-window" in bad.output
    assert not (tmp_path / "bad.h5").exists()


def test_utterance_without_annotations_is_prepared_without_eba(synth_corpus, tmp_path):
    files = _copy_one(synth_corpus, tmp_path / "c")
    files["track.mat"].unlink()
    out = tmp_path / "p.h5"
    result = _prepare(tmp_path / "c", out)
    assert result.exit_code == 0, result.output
    assert "without annotations" in result.output
    ds = PreparedSet([out])
    data = ds.read(ds.utterances[0])
    assert "eba" not in data and "labels" not in data
    assert not data["attrs"]["has_annotations"]


@contextlib.contextmanager
def _lock_held(path: Path, seconds: float):
    """A child process holding ``path`` open for writing (HDF5's lock) for ``seconds``."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, h5py\n"
            "f = h5py.File(sys.argv[1], 'r+')\n"
            "print('locked', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
            "f.close()\n",
            str(path),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_readers_wait_for_a_writer_holding_the_lock(prepared_file, tmp_path, monkeypatch):
    """Two `sirem train` on one prepared file: one caches embeddings while the other reads."""
    import sirem_cli.io.prepared as prepared_io

    path = tmp_path / "prepared.h5"
    shutil.copy(prepared_file, path)
    with _lock_held(path, 1.5):
        started = time.monotonic()
        assert len(PreparedSet([path]).utterances) == 3  # waits for the lock, then reads
        assert time.monotonic() - started > 0.5
    # a lock that is never released: one clear error after the wait
    monkeypatch.setattr(prepared_io, "LOCK_WAIT_S", 0.3)
    with _lock_held(path, 30), pytest.raises(FormatError, match="locked by another process"):
        PreparedSet([path])


def test_audio_tolerance_is_honoured(synth_corpus, tmp_path):
    """Audio 1.5 s longer than the scan fails at the default tolerance (1 s) and passes with
    --audio-tolerance 2 (the frames' windows are unchanged: sample 0 is the scan start)."""
    import soundfile

    files = _copy_one(synth_corpus, tmp_path / "c")
    audio, rate = soundfile.read(files["audio.wav"])
    soundfile.write(
        files["audio.wav"], np.concatenate([audio, np.zeros(int(1.5 * rate))]), rate,
        subtype="PCM_16",
    )  # fmt: skip
    out = tmp_path / "p.h5"
    _assert_failed(_prepare(tmp_path / "c", out), out, "--audio-tolerance")
    result = _prepare(tmp_path / "c", out, "--audio-tolerance", "2")
    assert result.exit_code == 0, result.output
