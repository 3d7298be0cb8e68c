"""Annot-16 dense track files: writer, reader and the loadmat(simplify_cells) conventions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.annot16 import (
    ANNOT16_SPEAKERS,
    ARTICULATOR_SEGMENT,
    SEGMENT_IDS,
    frame_articulators,
    read_track,
    write_track,
)

NAMES = sorted(ARTICULATOR_SEGMENT)


def random_frames(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Frames with a random subset of articulators, polylines of 1..20 points in 0..84."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        names = [name for name in NAMES if rng.random() < 0.7]
        frames.append({nm: rng.uniform(0, 84, (int(rng.integers(1, 21)), 2)) for nm in names})
    return frames


def test_tables():
    assert len(ANNOT16_SPEAKERS) == 16 and len(set(ANNOT16_SPEAKERS)) == 16
    assert all(s.startswith("sub") and len(s) == 6 for s in ANNOT16_SPEAKERS)
    assert SEGMENT_IDS[(0, 2)] == "tongue" and SEGMENT_IDS[(2, 5)] == "upper_lip"
    assert len(SEGMENT_IDS) == 9
    assert all(SEGMENT_IDS[ARTICULATOR_SEGMENT[n]] == n for n in ARTICULATOR_SEGMENT)


def test_write_track_matches_the_real_loadmat_conventions(tmp_path):
    path = tmp_path / "sub061_2drt_17_topic1_track.mat"
    tongue = np.array([[52.0, 37.0], [50.0, 40.0], [47.5, 44.0]])  # upright image pixels
    lip = np.array([[10.0, 60.0], [11.0, 62.0]])
    velum = np.array([[60.0, 30.0]])
    frames = [{"tongue": tongue, "lower_lip": lip, "velum": velum}] * 3
    write_track(path, frames)
    assert scipy.io.whosmat(str(path)) == [("trackdata", (1, 3), "struct")]
    recs = scipy.io.loadmat(str(path), simplify_cells=True)["trackdata"]
    assert isinstance(recs, list) and len(recs) == 3
    for k, rec in enumerate(recs):
        assert rec["frameNo"] == k + 1
        assert rec["template"] == 1
        segs = rec["contours"]["segment"]
        assert isinstance(segs, list) and len(segs) == 4
    seg0 = recs[0]["contours"]["segment"][0]
    # segment 0 holds tongue (i=2) then lower lip (i=4), centred y-up: (x - 42, 42 - y)
    expected = np.array([[10.0, 5.0], [8.0, 2.0], [5.5, -2.0], [-32.0, -18.0], [-31.0, -20.0]])
    np.testing.assert_array_equal(seg0["v"], expected)
    np.testing.assert_array_equal(seg0["i"], [2, 2, 2, 4, 4])
    assert seg0["v"].shape == (5, 2)
    seg2 = recs[0]["contours"]["segment"][2]
    np.testing.assert_array_equal(np.ravel(seg2["v"]), [18.0, 12.0])
    assert np.size(recs[0]["contours"]["segment"][3]["v"]) == 0
    # and back through our reader
    got = read_track(path)
    assert [f.frame_no for f in got] == [1, 2, 3]
    assert all(len(f.segments) == 4 for f in got)
    assert got[0].segments[2][0].shape == (1, 2)
    arts = frame_articulators(got[1])
    assert set(arts) == {"tongue", "lower_lip", "velum"}
    np.testing.assert_allclose(arts["tongue"], tongue, atol=1e-12)
    np.testing.assert_allclose(arts["velum"], velum, atol=1e-12)


def test_track_round_trip_random(tmp_path):
    path = tmp_path / "r_track.mat"
    frames = random_frames(60, seed=0)
    write_track(path, frames, template=7)
    got = read_track(path)
    assert len(got) == 60
    for k, (frame, rec) in enumerate(zip(frames, got, strict=True)):
        assert rec.frame_no == k + 1 and rec.template == 7
        arts = frame_articulators(rec)
        assert set(arts) == set(frame)
        for name, pts in frame.items():
            np.testing.assert_allclose(arts[name], pts, atol=1e-12)


def test_single_frame_and_non_square_image(tmp_path):
    path = tmp_path / "one_track.mat"
    pts = np.array([[3.0, 4.0], [5.0, 6.0]])
    write_track(path, [{"chin": pts}], width=100, height=60)
    (rec,) = read_track(path)  # a (1, 1) struct is squeezed to a dict by loadmat
    np.testing.assert_allclose(rec.segments[0][0], [[-47.0, 26.0], [-45.0, 24.0]])
    np.testing.assert_allclose(frame_articulators(rec, 100, 60)["chin"], pts)


def test_non_finite_vertices_mark_holes(tmp_path):
    path = tmp_path / "nan_track.mat"
    tongue = np.array([[40.0, 40.0], [np.nan, np.nan], [44.0, 41.0]])
    write_track(path, [{"tongue": tongue, "epiglottis": np.full((2, 2), np.nan)}])
    (rec,) = read_track(path)
    v, ids = rec.segments[0]
    assert v.shape == (5, 2) and np.isnan(v).sum() == 6
    assert ids.tolist() == [1, 1, 2, 2, 2]  # epiglottis (i=1) before tongue (i=2)
    arts = frame_articulators(rec)
    assert "epiglottis" not in arts  # no finite vertex left
    np.testing.assert_allclose(arts["tongue"], tongue)  # the hole stays, as one NaN row
    # leading / trailing NaNs are dropped and a run of NaNs becomes one break
    path = tmp_path / "runs_track.mat"
    nan = [np.nan, np.nan]
    lips = np.array([nan, [10.0, 10.0], [12.0, 10.0], nan, nan, [20.0, 12.0], nan])
    write_track(path, [{"lower_lip": lips}])
    got = frame_articulators(read_track(path)[0])["lower_lip"]
    np.testing.assert_allclose(got, [[10.0, 10.0], [12.0, 10.0], nan, [20.0, 12.0]])


def test_unknown_identities_ignored(tmp_path):
    path = tmp_path / "u_track.mat"
    seg = np.empty((1, 4), dtype=[("v", object), ("i", object), ("mu", object)])
    for s in range(4):
        seg[0, s]["v"] = np.array([[1.0, 2.0], [3.0, 4.0]])
        seg[0, s]["i"] = np.array([[2.0], [9.0]])  # 9 is unmapped; segment 3 is unmapped
        seg[0, s]["mu"] = np.zeros((1, 1))
    contours = np.empty((1, 1), dtype=[("segment", object)])
    contours[0, 0]["segment"] = seg
    rec = np.empty((1, 1), dtype=[("frameNo", object), ("template", object), ("contours", object)])
    rec[0, 0]["frameNo"], rec[0, 0]["template"], rec[0, 0]["contours"] = 1.0, 3.0, contours
    scipy.io.savemat(str(path), {"trackdata": rec})
    arts = frame_articulators(read_track(path)[0])
    assert set(arts) == {"tongue", "pharyngeal_wall", "velum"}
    np.testing.assert_allclose(arts["tongue"], [[43.0, 40.0]])


def _struct(**fields):
    arr = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        arr[0, 0][k] = v
    return arr


@pytest.mark.parametrize(
    ("case", "phrase"),
    [
        ("no_trackdata", "no trackdata variable"),
        ("no_contours", "lacks frameNo or contours"),
        ("bad_frame", "frameNo is 1.5"),
        ("odd_v", "expected (P, 2)"),
        ("ids", "3 vertices but 2 identities"),
        ("text", "not a readable MAT file"),
    ],
)
def test_read_track_errors(tmp_path, case, phrase):
    path = tmp_path / f"{case}_track.mat"
    seg = _struct(v=np.zeros((3, 2)), i=np.ones((3, 1)), mu=np.zeros((1, 1)))
    if case == "no_trackdata":
        scipy.io.savemat(str(path), {"other": np.zeros(3)})
    elif case == "no_contours":
        scipy.io.savemat(str(path), {"trackdata": _struct(frameNo=1.0, template=1.0)})
    elif case == "bad_frame":
        rec = _struct(frameNo=1.5, template=1.0, contours=_struct(segment=seg))
        scipy.io.savemat(str(path), {"trackdata": rec})
    elif case in ("odd_v", "ids"):
        if case == "odd_v":
            seg = _struct(v=np.zeros((3, 1)), i=np.ones((3, 1)), mu=0.0)
        else:
            seg = _struct(v=np.zeros((3, 2)), i=np.ones((2, 1)), mu=0.0)
        rec = _struct(frameNo=1.0, template=1.0, contours=_struct(segment=seg))
        scipy.io.savemat(str(path), {"trackdata": rec})
    else:
        path.write_text("MATLAB 5.0 MAT-file, but not really\n")
    with pytest.raises(FormatError) as exc:
        read_track(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}:") and phrase in msg, msg


def test_track_missing_file_and_bad_frames(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_track(tmp_path / "missing_track.mat")
    with pytest.raises(ShapeError, match="unknown articulator 'lips'"):
        write_track(tmp_path / "x_track.mat", [{"lips": np.zeros((2, 2))}])
    with pytest.raises(ShapeError):
        write_track(tmp_path / "x_track.mat", [{"tongue": np.zeros((2, 3))}])


def test_track_of_a_long_utterance(tmp_path):
    """2,000 frames (a ~24 s utterance) keep their order and numbering (speed: bench/)."""
    frames = random_frames(2000, seed=1)
    path = tmp_path / "long_track.mat"
    write_track(path, frames)
    got = read_track(path)
    assert len(got) == 2000 and got[-1].frame_no == 2000
