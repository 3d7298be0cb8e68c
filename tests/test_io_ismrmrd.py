"""ISMRMRD raw files: header XML, the streaming writer, the bulk reader and its errors.

The layout is checked three ways: read back with plain h5py, read with the independent
``ismrmrd`` package, and files written by the ``ismrmrd`` package read by our reader.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd
import numpy as np
import pytest

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.io.ismrmrd import (
    RawHeader,
    RawWriter,
    header_xml,
    parse_header,
    read_raw,
    read_raw_header,
)

PERM = np.array([12, 3, 10, 0, 7, 1, 9, 4, 11, 2, 8, 5, 6])


def make_acqs(n: int, c: int, s: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random k-space (n, c, s) complex64, trajectory (n, s, 3) float32, period-13 arms."""
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((n, c, s)) + 1j * rng.standard_normal((n, c, s))).astype(
        np.complex64
    )
    traj = rng.uniform(-0.5, 0.5, (n, s, 3)).astype(np.float32)
    return data, traj, PERM[np.arange(n) % 13]


def write_file(path: Path, n: int = 44, c: int = 4, s: int = 32, seed: int = 0, **kw):
    header = RawHeader(n_channels=c)
    data, traj, il = make_acqs(n, c, s, seed)
    with RawWriter(path, header, n_samples=s, **kw) as w:
        w.append(data[: n // 2], traj[: n // 2], il[: n // 2])
        w.append(data[n // 2 :], traj[n // 2 :], il[n // 2 :])
    return header, data, traj, il


def assert_one_line(exc: pytest.ExceptionInfo, path: Path, *phrases: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:"), msg
    for phrase in phrases:
        assert phrase in msg, msg


# --------------------------------------------------------------------------- header XML


def test_header_xml_validates_against_the_ismrmrd_schema():
    h = RawHeader()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xsdata only warns on bad enumeration values
        doc = ismrmrd.xsd.CreateFromDocument(header_xml(h))
    enc = doc.encoding[0]
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (84, 84)
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (84, 84)
    fov = enc.reconSpace.fieldOfView_mm
    assert (fov.x, fov.y, fov.z) == (200.0, 200.0, 6.0)
    assert enc.trajectory == ismrmrd.xsd.trajectoryType.SPIRAL
    assert enc.trajectoryDescription.identifier == "HargreavesVDS2000"
    longs = {p.name: p.value for p in enc.trajectoryDescription.userParameterLong}
    assert longs == {"readTime_ns": 2520, "simplingTime_ns": 4, "repetitionTime_ns": 6004}
    assert doc.sequenceParameters.TR == [6.004]
    assert doc.acquisitionSystemInformation.receiverChannels == 8
    assert doc.experimentalConditions.H1resonanceFrequency_Hz == 63860000
    assert "http://www.ismrm.org/ISMRMRD" in header_xml(h)


def test_parse_header_round_trip_and_tolerance(tmp_path):
    h = RawHeader(matrix=(96, 80), fov_mm=(201.6, 190.0, 5.0), tr_ms=5.5, n_channels=6,
                  read_time_us=2000, sampling_time_us=2, repetition_time_us=5500,
                  identifier="other", h1_resonance_hz=123, n_interleaves=9)  # fmt: skip
    assert parse_header(header_xml(h), tmp_path) == h
    assert parse_header(header_xml(h).encode() + b"\x00", tmp_path) == h
    # No namespace, only a few elements, the correctly spelt samplingTime_ns.
    xml = (
        "<ismrmrdHeader><encoding><reconSpace><matrixSize><x>64</x><y>64</y></matrixSize>"
        "</reconSpace><trajectoryDescription><identifier>x</identifier><userParameterLong>"
        "<name>samplingTime_ns</name><value>2</value></userParameterLong>"
        "</trajectoryDescription></encoding></ismrmrdHeader>"
    )
    got = parse_header(xml, tmp_path)
    assert got.matrix == (64, 64)
    assert got.sampling_time_us == 2
    assert got.tr_ms == RawHeader().tr_ms and got.n_channels == RawHeader().n_channels


@pytest.mark.parametrize(
    ("xml", "phrase"),
    [
        ("<ismrmrdHeader><encoding>", "not valid XML"),
        ("<other/>", "not ismrmrdHeader"),
        (
            "<ismrmrdHeader><sequenceParameters><TR>fast</TR></sequenceParameters></ismrmrdHeader>",
            "not a finite number",
        ),
    ],
)
def test_parse_header_errors(tmp_path, xml, phrase):
    path = tmp_path / "x_raw.h5"
    with pytest.raises(FormatError) as exc:
        parse_header(xml, path)
    assert_one_line(exc, path, phrase)


# --------------------------------------------------------------------------- round trips


def test_raw_round_trip(tmp_path):
    path = tmp_path / "sub061_2drt_17_topic1_raw.h5"
    header, data, traj, il = write_file(path, n=44)
    before = path.read_bytes()
    scan = read_raw(path)
    assert path.read_bytes() == before  # the input is never modified
    assert scan.path == path
    assert scan.header == header
    assert scan.data.dtype == np.complex64 and scan.traj.dtype == np.float32
    np.testing.assert_array_equal(scan.data, data)
    np.testing.assert_array_equal(scan.traj, traj)
    np.testing.assert_array_equal(scan.interleaf, il)
    np.testing.assert_array_equal(scan.repetition, np.arange(44))
    assert (scan.n_acquisitions, scan.n_channels, scan.n_samples) == (44, 4, 32)
    assert read_raw_header(path) == (header, 44)


def test_raw_layout_with_plain_h5py(tmp_path):
    path = tmp_path / "a_raw.h5"
    n, c, s = 30, 8, 630
    _, data, traj, il = write_file(path, n=n, c=c, s=s, seed=3)
    with h5py.File(path, "r") as f:
        assert set(f["dataset"].keys()) == {"xml", "data"}
        xml = f["dataset/xml"]
        assert xml.shape == (1,)
        assert h5py.check_string_dtype(xml.dtype) is not None
        assert b"ismrmrdHeader" in xml[0]
        dset = f["dataset/data"]
        assert dset.shape == (n,) and dset.maxshape == (None,) and dset.chunks is not None
        assert dset.dtype.names == ("head", "traj", "data")
        assert dset.id.get_type().get_size() == 372  # |V372 on disk
        assert dset.dtype["head"].itemsize == 340
        for field in ("traj", "data"):
            assert h5py.check_vlen_dtype(dset.dtype[field]) == np.dtype("float32")
        rows = dset[:]
    head = rows["head"]
    assert (head["number_of_samples"] == s).all()
    assert (head["active_channels"] == c).all() and (head["available_channels"] == c).all()
    assert (head["trajectory_dimensions"] == 3).all()
    assert (head["sample_time_us"] == 0).all() and (head["flags"] == 0).all()
    np.testing.assert_array_equal(head["idx"]["kspace_encode_step_1"], il)
    np.testing.assert_array_equal(head["idx"]["repetition"], np.arange(n))
    for i in (0, 17, n - 1):
        # data: interleaved (re, im), channel-major -> (C, S, 2)
        d = rows["data"][i].reshape(c, s, 2)
        np.testing.assert_array_equal(d[..., 0], data[i].real)
        np.testing.assert_array_equal(d[..., 1], data[i].imag)
        # traj: sample-major -> (S, 3)
        np.testing.assert_array_equal(rows["traj"][i].reshape(s, 3), traj[i])


def test_ismrmrd_package_reads_our_file(tmp_path):
    path = tmp_path / "ours_raw.h5"
    _, data, traj, il = write_file(path, n=26, c=8, s=40, seed=4)
    copy = tmp_path / "copy_raw.h5"  # ismrmrd opens r+ with create_if_needed=False
    shutil.copyfile(path, copy)
    ds = ismrmrd.Dataset(str(copy), "dataset", create_if_needed=False)
    try:
        assert ds.number_of_acquisitions() == 26
        doc = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        assert doc.encoding[0].trajectoryDescription.identifier == "HargreavesVDS2000"
        for i in range(26):
            acq = ds.read_acquisition(i)
            np.testing.assert_array_equal(acq.data, data[i])
            np.testing.assert_array_equal(acq.traj, traj[i])
            assert acq.idx.kspace_encode_step_1 == il[i]
            assert acq.idx.repetition == i
            assert acq.number_of_samples == 40 and acq.active_channels == 8
            assert acq.trajectory_dimensions == 3 and acq.sample_time_us == 0
    finally:
        ds.close()


def test_we_read_a_file_written_by_the_ismrmrd_package(tmp_path):
    path = tmp_path / "theirs_raw.h5"
    n, c, s = 20, 3, 24
    data, traj, il = make_acqs(n, c, s, seed=5)
    header = RawHeader(n_channels=c, tr_ms=6.5)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    try:
        ds.write_xml_header(header_xml(header).encode())
        for i in range(n):
            acq = ismrmrd.Acquisition.from_array(data[i], traj[i])
            acq.idx.kspace_encode_step_1 = int(il[i])
            acq.idx.repetition = 100 + i
            ds.append_acquisition(acq)
    finally:
        ds.close()
    scan = read_raw(path)
    assert scan.header == header
    np.testing.assert_array_equal(scan.data, data)
    np.testing.assert_array_equal(scan.traj, traj)
    np.testing.assert_array_equal(scan.interleaf, il)
    np.testing.assert_array_equal(scan.repetition, 100 + np.arange(n))


# --------------------------------------------------------------------------- writer


def test_writer_closes_on_exception_and_atomic_path_leaves_nothing(tmp_path):
    path = tmp_path / "w_raw.h5"
    data, traj, il = make_acqs(5, 8, 16, seed=6)
    with pytest.raises(RuntimeError, match="boom"):
        with RawWriter(path, RawHeader(), n_samples=16) as w:
            w.append(data, traj, il)
            raise RuntimeError("boom")
    assert read_raw(path).n_acquisitions == 5  # closed cleanly, readable

    final = tmp_path / "atomic_raw.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp, RawWriter(tmp, RawHeader(), n_samples=16) as w:
            w.append(data, traj, il)
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.glob(".atomic*")) == []


def test_writer_rejects_bad_shapes(tmp_path):
    data, traj, il = make_acqs(4, 8, 16, seed=7)
    with RawWriter(tmp_path / "x_raw.h5", RawHeader(), n_samples=16) as w:
        with pytest.raises(ShapeError):
            w.append(data[:, :4], traj, il)  # wrong channel count
        with pytest.raises(ShapeError):
            w.append(data.real, traj, il)  # real data
        with pytest.raises(ShapeError):
            w.append(data, traj[..., :2], il)  # wrong traj width
        with pytest.raises(ShapeError):
            w.append(data, traj, il[:3])
        with pytest.raises(ShapeError):
            w.append(data, traj, il.astype(np.float64))
        assert w.n_acquisitions == 0
    with pytest.raises(ShapeError):
        RawWriter(tmp_path / "y_raw.h5", RawHeader(n_channels=8), n_channels=4)


# --------------------------------------------------------------------------- errors


def _edit(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def _set_head(field: str, value: int, index: int = 7):
    def fn(f):
        d = f["dataset/data"]
        row = d[index]
        row["head"][field] = value
        d[index] = row

    return fn


def _short_data(f):
    d = f["dataset/data"]
    row = d[9]
    row["data"] = row["data"][:-2]
    d[9] = row


@pytest.mark.parametrize(
    ("case", "phrase"),
    [
        ("not_hdf5", "not a readable HDF5 file"),
        ("truncated", "not a readable HDF5 file"),
        ("no_data", "no /dataset/data"),
        ("no_xml", "no /dataset/xml"),
        ("traj_dims", "wrong trajectory width"),
        ("nan", "NaN/Inf in k-space"),
        ("zero", "zero acquisitions"),
        ("samples", "inconsistent number_of_samples"),
        ("channels", "inconsistent active_channels"),
        ("length", "acquisition 9: data has"),
    ],
)
def test_read_raw_errors(tmp_path, case, phrase):
    path = tmp_path / f"{case}_raw.h5"
    if case == "not_hdf5":
        path.write_text("this is not HDF5\n")
    elif case == "truncated":
        write_file(path, n=30)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "no_data":
        with h5py.File(path, "w") as f:
            f["dataset/xml"] = [header_xml(RawHeader())]
    elif case == "no_xml":
        write_file(path)
        _edit(path, lambda f: f["dataset"].pop("xml"))
    elif case == "traj_dims":
        header = RawHeader()
        data, traj, il = make_acqs(3, 8, 16, seed=8)
        with RawWriter(path, header, n_samples=16, traj_dims=2) as w:
            w.append(data, traj[..., :2], il)
    elif case == "nan":
        header = RawHeader()
        data, traj, il = make_acqs(30, 8, 16, seed=9)
        data[21, 3, 5] = np.nan
        with RawWriter(path, header, n_samples=16) as w:
            w.append(data, traj, il)
    elif case == "zero":
        RawWriter(path, RawHeader()).close()
    elif case == "samples":
        write_file(path)
        _edit(path, _set_head("number_of_samples", 31))
    elif case == "channels":
        write_file(path)
        _edit(path, _set_head("active_channels", 3))
    elif case == "length":
        write_file(path)
        _edit(path, _short_data)
    with pytest.raises(FormatError) as exc:
        read_raw(path)
    assert_one_line(exc, path, phrase)
    if case == "nan":
        assert "acquisition 21" in str(exc.value)


def test_read_raw_missing_file(tmp_path):
    path = tmp_path / "missing_raw.h5"
    with pytest.raises(InputError) as exc:
        read_raw(path)
    assert_one_line(exc, path, "no such file")
    with pytest.raises(InputError):
        read_raw_header(path)


# --------------------------------------------------------------------------- speed


def test_3000_acquisitions_across_blocks(tmp_path):
    """USC-sized files cross the reader's and writer's block boundaries intact (speed: bench/)."""
    path = tmp_path / "big_raw.h5"
    n = 3000
    rng = np.random.default_rng(10)
    data = rng.standard_normal((n, 8, 630 * 2), dtype=np.float32).view(np.complex64)
    traj = rng.uniform(-0.5, 0.5, (n, 630, 3)).astype(np.float32)
    il = PERM[np.arange(n) % 13]
    with RawWriter(path, RawHeader()) as w:
        w.append(data, traj, il)
    scan = read_raw(path)
    np.testing.assert_array_equal(scan.data, data)
    np.testing.assert_array_equal(scan.traj, traj)
    np.testing.assert_array_equal(scan.interleaf, il)
