"""Issue 2 acceptance: the synthetic corpus has the real layout, read with plain h5py/scipy."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import soundfile
from typer.testing import CliRunner

from sirem_cli.cli import app

TR = 6.004e-3


def _files(corpus: Path, kind: str) -> list[Path]:
    pattern = {
        "raw": "*_raw.h5",
        "recon": "*_recon.h5",
        "audio": "*_audio.wav",
        "track": "*_track.mat",
        "tg": "*_text.TextGrid",
        "truth": "*_truth.h5",
    }[kind]
    return sorted(corpus.rglob(pattern))


def test_layout_and_prefixes(synth_corpus):
    raws = _files(synth_corpus, "raw")
    assert len(raws) == 3
    for raw in raws:
        prefix = raw.name.removesuffix("_raw.h5")
        subject = prefix[:6]
        assert raw == synth_corpus / "usc75" / subject / "2drt" / "raw" / f"{prefix}_raw.h5"
        for sub, name in (("recon", "_recon.h5"), ("audio", "_audio.wav")):
            assert (synth_corpus / "usc75" / subject / "2drt" / sub / f"{prefix}{name}").exists()
        assert (synth_corpus / "annot16" / subject / "track" / f"{prefix}_track.mat").exists()
        assert (
            synth_corpus / "annot16" / subject / "alignment" / f"{prefix}_text.TextGrid"
        ).exists()
        assert (synth_corpus / "truth" / f"{prefix}_truth.h5").exists()
        assert subject in {"sub009", "sub013", "sub022"}  # the first Annot-16 speakers
        assert prefix.endswith("_2drt_17_topic1")


def _read_raw_plain(path: Path):
    with h5py.File(path, "r") as f:
        xml = f["dataset/xml"][0]
        rec = f["dataset/data"][:]
    head = rec["head"]
    data = np.stack([d.reshape(8, 630, 2) for d in rec["data"]])
    traj = np.stack([t.reshape(630, 3) for t in rec["traj"]])
    return xml, head, data[..., 0] + 1j * data[..., 1], traj


def test_raw_file_structure(synth_corpus):
    xml, head, data, traj = _read_raw_plain(_files(synth_corpus, "raw")[0])
    ns = len(head)
    assert ns % 13 != 0 and ns // 13 >= 2  # 13 F + r with r > 0
    assert data.shape == (ns, 8, 630) and traj.shape == (ns, 630, 3)
    assert np.all(head["number_of_samples"] == 630) and np.all(head["active_channels"] == 8)
    assert np.all(head["trajectory_dimensions"] == 3) and np.all(head["sample_time_us"] == 0)
    assert np.array_equal(head["idx"]["repetition"], np.arange(ns))
    il = head["idx"]["kspace_encode_step_1"].astype(int)
    assert np.array_equal(il[13:26], il[:13]) and sorted(il[:13]) == list(range(13))
    assert not np.array_equal(il[:13], np.arange(13))
    radius = np.hypot(traj[..., 0], traj[..., 1])
    assert radius.max() == pytest.approx(0.5, abs=1e-6)
    assert traj[0, 0, 2] == 0 and traj[..., 2].max() == pytest.approx(1.0)
    assert np.all(np.isfinite(data))
    root = ET.fromstring(xml.decode() if isinstance(xml, bytes) else xml)
    text = {el.tag.split("}")[-1]: (el.text or "") for el in root.iter()}
    assert text["receiverChannels"] == "8" and float(text["TR"]) == pytest.approx(6.004)
    assert text["trajectory"] == "spiral"
    params = {
        el.find("{*}name").text: el.find("{*}value").text
        for el in root.iter()
        if el.tag.endswith("userParameterLong")
    }
    assert params == {"readTime_ns": "2520", "simplingTime_ns": "4", "repetitionTime_ns": "6004"}
    sizes = [el for el in root.iter() if el.tag.endswith("matrixSize")]
    assert all(s.find("{*}x").text == "84" and s.find("{*}y").text == "84" for s in sizes)
    fov = next(el for el in root.iter() if el.tag.endswith("fieldOfView_mm"))
    assert float(fov.find("{*}x").text) == 200.0


def _grid_rss(kspace: np.ndarray, traj: np.ndarray, n: int = 84) -> np.ndarray:
    """Independent separable NDFT gridding: coord = traj * n (cycles), axis 0 with kx, +i sign."""
    u = np.arange(n) - n // 2
    w = traj[..., :2].reshape(-1, 2) * 2 * np.pi
    a = np.exp(1j * np.outer(w[:, 0], u))  # (K, n)
    b = np.exp(1j * np.outer(w[:, 1], u))
    dcf = traj[..., 2].reshape(-1)
    imgs = [a.T @ ((k.reshape(-1) * dcf)[:, None] * b) for k in kspace]
    return np.sqrt(sum(np.abs(i) ** 2 for i in imgs))


def _corr(x, y):
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def test_recon_matches_fliplr_of_gridding_and_no_other_orientation(synth_corpus):
    raw = _files(synth_corpus, "raw")[0]
    _, _, data, traj = _read_raw_plain(raw)
    with h5py.File(str(raw).replace("/raw/", "/recon/").replace("_raw.h5", "_recon.h5"), "r") as f:
        recon = f["recon"][()]
    assert recon.dtype == np.float64 and recon.shape == (len(data) // 2, 84, 84)
    t = 20  # a steady-state 13-arm frame
    arms = slice(13 * t, 13 * t + 13)
    img = _grid_rss(np.moveaxis(data[arms], 1, 0), traj[arms])
    ref = recon[(13 * t + 6) // 2]
    candidates = {}
    for k in range(4):
        rot = np.rot90(img, k)
        candidates[f"rot{k}"] = _corr(rot, ref)
        candidates[f"rot{k}-fliplr"] = _corr(np.fliplr(rot), ref)
    best = candidates.pop("rot0-fliplr")
    assert best > 0.95
    assert max(candidates.values()) < best - 0.15


def test_recon_transpose_is_the_upright_truth(synth_corpus):
    truth_path = _files(synth_corpus, "truth")[0]
    prefix = truth_path.name.removesuffix("_truth.h5")
    with h5py.File(truth_path, "r") as f:
        truth = f["truth"][()]
        smaps = f["smaps"][()]
        labels = f["labels"][()]
        params = f["params"][()]
        names = json.loads(f.attrs["param_names"])
    recon_path = next(synth_corpus.rglob(f"{prefix}_recon.h5"))
    with h5py.File(recon_path, "r") as f:
        recon = f["recon"][()]
    assert truth.shape == recon.shape and labels.shape == recon.shape
    assert smaps.shape == (8, 84, 84) and smaps.dtype == np.complex64
    assert params.shape == (recon.shape[0], len(names))
    assert _corr(recon[50].T, truth[50]) > 0.99
    # upright: the face (lips) is on the left: more tissue signal in the left third at mouth height
    assert np.ptp(params, axis=0).max() > 0  # articulators move


def test_audio_track_and_textgrid(synth_corpus):
    from sirem_cli.io.textgrid import read_textgrid

    raw = _files(synth_corpus, "raw")[0]
    prefix = raw.name.removesuffix("_raw.h5")
    with h5py.File(raw, "r") as f:
        ns = f["dataset/data"].shape[0]
    info = soundfile.info(next(synth_corpus.rglob(f"{prefix}_audio.wav")))
    assert info.samplerate == 20000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames / 20000 == pytest.approx(ns * TR + 0.03, abs=1e-3)
    track = scipy.io.loadmat(next(synth_corpus.rglob(f"{prefix}_track.mat")), simplify_cells=True)[
        "trackdata"
    ]
    assert len(track) == ns // 2
    assert [r["frameNo"] for r in track[:3]] == [1, 2, 3]
    segs = track[10]["contours"]["segment"]
    assert len(segs) == 4 and segs[0]["v"].shape[1] == 2
    assert set(np.unique(segs[0]["i"]).astype(int)) <= {1, 2, 4, 5}
    v = segs[0]["v"]
    assert np.all(np.abs(v) <= 42)  # centred coordinates
    tg_path = next(synth_corpus.rglob(f"{prefix}_text.TextGrid"))
    assert tg_path.read_bytes()[:2] in (b"\xfe\xff", b"\xff\xfe")  # UTF-16 with BOM
    tiers = read_textgrid(tg_path)
    assert list(tiers)[:2] == ["words", "phones"]
    for intervals in tiers.values():
        assert intervals[0].xmin == 0 and intervals[-1].xmax == pytest.approx(
            info.frames / 20000, abs=1e-6
        )
        assert all(a.xmax == pytest.approx(b.xmin) for a, b in itertools.pairwise(intervals))
    labels = {iv.text for iv in tiers["phones"]} - {""}
    assert labels and all(lab.rstrip("012").isalpha() and lab.isupper() for lab in labels)


def test_synth_is_deterministic(tmp_path):
    from sirem_cli.api.synth import run_synth
    from sirem_cli.synth.corpus import SynthConfig

    outs = []
    for name in ("a", "b"):
        run_synth(tmp_path / name, SynthConfig(subjects=1, utterances=1, seconds=1.0, seed=5))
        raw = next((tmp_path / name).rglob("*_raw.h5"))
        with h5py.File(raw, "r") as f:
            outs.append(np.concatenate([d for d in f["dataset/data"]["data"]]))
        outs.append(next((tmp_path / name).rglob("*_audio.wav")).read_bytes())
    assert np.array_equal(outs[0], outs[2]) and outs[1] == outs[3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "0"], "--seconds"),
        (["--subject", "sub999"], "unknown subject"),
        (["--subjects", "40"], "--subjects"),
        (["--anatomy-spread", "1.5"], "--anatomy-spread"),
        (["--anatomy-spread", "nan"], "--anatomy-spread"),
    ],
)
def test_bad_arguments_one_line(tmp_path, args, message):
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_unwritable_or_existing_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(
        app, ["synth", str(blocker / "out"), "--seconds", "1", "--subjects", "1"]
    )
    assert result.exit_code == 2 and "cannot write" in result.output
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "x").write_text("keep")
    result = CliRunner().invoke(app, ["synth", str(existing), "--seconds", "1", "--subjects", "1"])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (existing / "x").read_text() == "keep"
