from pathlib import Path

import h5py
import numpy as np
import pytest

from sirem_cli.errors import FormatError, InputError, OutputError
from sirem_cli.io.prepared import PreparedSet, PreparedWriter, ReconSet, ReconWriter, open_h5
from sirem_cli.io.schema import PREPARED_VERSION, UTTERANCE_DATASETS, render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "hdf5-format.md"


def test_format_doc_matches_schema_module():
    text = DOC.read_text()
    begin, end = "<!-- schema:begin -->\n", "<!-- schema:end -->"
    assert begin in text and end in text
    embedded = text.split(begin, 1)[1].split(end, 1)[0]
    assert embedded == render_markdown(), "docs/hdf5-format.md is stale: regenerate its tables"
    for spec in UTTERANCE_DATASETS:
        assert f"`{spec.name}`" in text


def _utterance(n_frames=3, c=2, a=13, s=16, h=8):
    rng = np.random.default_rng(0)
    return {
        "kspace": (rng.standard_normal((n_frames, c, a, s)) + 0j).astype(np.complex64),
        "traj": rng.uniform(-3, 3, (a, s, 2)).astype(np.float32),
        "dcf": np.ones((a, s), np.float32),
        "smaps": np.ones((c, h, h), np.complex64),
        "reference": rng.random((n_frames, h, h)).astype(np.float32),
        "ref_index": np.arange(n_frames, dtype=np.int64),
        "frame_time": np.arange(n_frames, dtype=np.float64),
        "audio": np.zeros(100, np.float32),
        "audio_window": np.zeros((n_frames, 2), np.int64),
        "arms": np.tile(np.arange(a, dtype=np.int16), (n_frames, 1)),
        "xbar": np.ones((h, h), np.complex64),
    }


def test_prepared_round_trip_several_files(tmp_path):
    paths = []
    for i, split in enumerate(["train", "test"]):
        path = tmp_path / f"p{i}.h5"
        with PreparedWriter(path, config={"k": i}) as w:
            w.write_utterance(
                f"sub00{i}_2drt_17_topic1", {"subject": f"sub00{i}", "split": split}, _utterance()
            )
        paths.append(path)
    ds = PreparedSet(paths)
    assert [u.split for u in ds.utterances] == ["train", "test"]
    assert ds.select("test")[0].prefix == "sub001_2drt_17_topic1"
    data = ds.read(ds.select("train")[0])
    assert np.array_equal(data["kspace"], _utterance()["kspace"])
    with h5py.File(paths[0], "r") as f:  # plain h5py sees the documented layout
        assert f.attrs["format"] == "sirem-prepared"
        assert f.attrs["format_version"] == PREPARED_VERSION
        assert f["utterances/sub000_2drt_17_topic1/kspace"].attrs["dims"] == "F,C,N,S"
        assert f["utterances/sub000_2drt_17_topic1/traj"].attrs["dims"] == "I,S,2"
    with pytest.raises(InputError, match="no utterances in the val split"):
        ds.select("val")
    with pytest.raises(InputError, match="also in"):
        PreparedSet([paths[0], paths[0]])


def test_inconsistent_shapes_and_wrong_format_are_refused(tmp_path):
    bad = _utterance()
    bad["reference"] = bad["reference"][:2]
    path = tmp_path / "bad.h5"
    with PreparedWriter(path, config={}) as w:
        w.write_utterance("sub001_2drt_17_topic1", {"subject": "sub001", "split": "train"}, bad)
    with pytest.raises(FormatError, match="F = 2"):
        PreparedSet([path])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(FormatError, match="not a sirem-prepared file"):
        open_h5(other, expect="sirem-prepared")
    future = tmp_path / "future.h5"
    with h5py.File(future, "w") as f:
        f.attrs["format"] = "sirem-prepared"
        f.attrs["format_version"] = PREPARED_VERSION + 1
        f.create_group("utterances")
    with pytest.raises(FormatError, match="version"):
        PreparedSet([future])
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(FormatError, match="not a readable HDF5"):
        PreparedSet([text])
    with pytest.raises(InputError, match="no such file"):
        PreparedSet([tmp_path / "missing.h5"])


def test_recon_writer_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "r.h5"
    with (
        pytest.raises(RuntimeError),
        ReconWriter(path, method="gridding", source=["p.h5"], config={}) as w,
    ):
        w.write_recon("sub001_2drt_17_topic1", np.zeros((2, 4, 4)), wall_s=1.0)
        raise RuntimeError("boom")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with ReconWriter(path, method="gridding", source=["p.h5"], config={}) as w:
        w.write_recon("sub001_2drt_17_topic1", np.full((4, 4, 4), 0.5), wall_s=2.0)
    rs = ReconSet(path)
    assert rs.method == "gridding"
    assert rs.utterances[0].ms_per_frame == pytest.approx(500.0)
    assert np.all(rs.read("sub001_2drt_17_topic1") == 0.5)
    with pytest.raises(OutputError, match="already exists"):
        ReconWriter(path, method="x", source=[], config={}, overwrite=False).__enter__()


def test_version_1_files_read_and_version_2_files_need_arms_and_xbar(tmp_path):
    """A version-1 file (13-arm frames, no arms/xbar) reads unchanged; a version-2 file
    without them is refused with the reason."""
    path = tmp_path / "v1.h5"
    old = {k: v for k, v in _utterance().items() if k not in ("arms", "xbar")}
    with PreparedWriter(path, config={}) as w:
        w.write_utterance("sub001_2drt_17_topic1", {"subject": "sub001", "split": "train"}, old)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(FormatError, match=r"lacks the dataset 'arms'.*version 2"):
        PreparedSet([path])
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 1
    (ref,) = PreparedSet([path]).utterances
    assert ref.version == 1 and ref.arms_per_frame == 13
    data = PreparedSet.read(ref, ["kspace", "arms", "xbar"])
    assert "arms" not in data and "xbar" not in data
    assert np.array_equal(data["kspace"], old["kspace"])
    part = PreparedSet.read(ref, ["kspace", "smaps"], frames=slice(1, 3))
    assert np.array_equal(part["kspace"], old["kspace"][1:3]) and part["smaps"].shape == (2, 8, 8)


def test_the_synthetic_truth_file_follows_its_schema(synth_corpus):
    """``sirem synth``'s truth files hold what the schema documents (dtypes, dims, attrs)."""
    from sirem_cli.io.schema import ROOT_ATTRS_TRUTH, TRUTH_DATASETS, TRUTH_FORMAT

    files = sorted(synth_corpus.rglob("*_truth.h5"))
    assert files
    with h5py.File(files[0], "r") as f:
        assert f.attrs["format"] == TRUTH_FORMAT
        assert {a.name for a in ROOT_ATTRS_TRUTH} <= set(f.attrs)
        n_ref = f["truth"].shape[0]
        for spec in TRUTH_DATASETS:
            ds = f[spec.name]
            assert ds.dtype == np.dtype(spec.dtype) and ds.ndim == len(spec.dims), spec.name
            if spec.dims[0] == "R":
                assert ds.shape[0] == n_ref, spec.name
