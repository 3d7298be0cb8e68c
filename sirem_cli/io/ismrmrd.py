"""ISMRMRD (MRD) HDF5 raw k-space files as exported for the USC 75-speaker corpus.

Plain h5py, no dependency on the ``ismrmrd`` package. Layout (data-formats.md 1.4.1)::

    /dataset/xml    (1,)  variable-length string: the ISMRMRD XML header
    /dataset/data   (ns,) compound {head: AcquisitionHeader (340 B, ISMRMRD 1.x layout),
                                    traj: vlen float32, data: vlen float32}   (372 B/element)

``data`` holds the complex samples as interleaved float32 (re, im), channel-major, so it
reshapes to (C, S, 2); ``traj`` is sample-major and reshapes to (S, D) with D = 3 rows
(kx, ky, dcf) in cycles/pixel (|k| <= 0.5) and a density compensation in [0, 1].
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from sirem_cli.errors import FormatError, OutputError, ShapeError
from sirem_cli.io.output import h5_check, h5_create
from sirem_cli.io.usc import one_line, require_file

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
ACQ_HEADER_VERSION = 1

ENCODING_COUNTERS_DTYPE = np.dtype(
    [
        ("kspace_encode_step_1", "<u2"),
        ("kspace_encode_step_2", "<u2"),
        ("average", "<u2"),
        ("slice", "<u2"),
        ("contrast", "<u2"),
        ("phase", "<u2"),
        ("repetition", "<u2"),
        ("set", "<u2"),
        ("segment", "<u2"),
        ("user", "<u2", (8,)),
    ]
)
"""ISMRMRD EncodingCounters (34 bytes, packed)."""

ACQUISITION_HEADER_DTYPE = np.dtype(
    [
        ("version", "<u2"),
        ("flags", "<u8"),
        ("measurement_uid", "<u4"),
        ("scan_counter", "<u4"),
        ("acquisition_time_stamp", "<u4"),
        ("physiology_time_stamp", "<u4", (3,)),
        ("number_of_samples", "<u2"),
        ("available_channels", "<u2"),
        ("active_channels", "<u2"),
        ("channel_mask", "<u8", (16,)),
        ("discard_pre", "<u2"),
        ("discard_post", "<u2"),
        ("center_sample", "<u2"),
        ("encoding_space_ref", "<u2"),
        ("trajectory_dimensions", "<u2"),
        ("sample_time_us", "<f4"),
        ("position", "<f4", (3,)),
        ("read_dir", "<f4", (3,)),
        ("phase_dir", "<f4", (3,)),
        ("slice_dir", "<f4", (3,)),
        ("patient_table_position", "<f4", (3,)),
        ("idx", ENCODING_COUNTERS_DTYPE),
        ("user_int", "<i4", (8,)),
        ("user_float", "<f4", (8,)),
    ]
)
"""ISMRMRD 1.x AcquisitionHeader (340 bytes, packed, little-endian)."""

ACQUISITION_DTYPE = np.dtype(
    [
        ("head", ACQUISITION_HEADER_DTYPE),
        ("traj", h5py.vlen_dtype(np.dtype("<f4"))),
        ("data", h5py.vlen_dtype(np.dtype("<f4"))),
    ]
)
"""Element of ``/dataset/data``."""

_READ_BLOCK = 1024  # acquisitions per h5py read in read_raw (bounds the temporary memory)
_REQUIRED_HEAD_FIELDS = ("number_of_samples", "active_channels", "trajectory_dimensions", "idx")


@dataclass(frozen=True)
class RawHeader:
    """The ISMRMRD XML header fields that sirem uses (defaults: the USC sequence).

    Attributes:
        matrix: reconstruction matrix (x, y) in pixels.
        fov_mm: field of view (x, y, z) in mm (z = slice thickness).
        tr_ms: repetition time in ms (``sequenceParameters.TR``).
        n_channels: receiver channels (``acquisitionSystemInformation.receiverChannels``).
        trajectory: ``encoding.trajectory`` (ISMRMRD enumeration: ``spiral``, ``radial``...).
        read_time_us: readout duration in µs (stored as userParameterLong ``readTime_ns``;
            the values are µs despite the name).
        sampling_time_us: dwell time in µs (userParameterLong ``simplingTime_ns``, sic).
        repetition_time_us: TR in µs (userParameterLong ``repetitionTime_ns``).
        identifier: ``trajectoryDescription.identifier``.
        h1_resonance_hz: ``experimentalConditions.H1resonanceFrequency_Hz``.
        te_ms: echo time in ms (``sequenceParameters.TE``).
        flip_angle_deg: flip angle in degrees (``sequenceParameters.flipAngle_deg``).
        n_interleaves: spiral interleaves per full rotation
            (``encodingLimits.kspace_encoding_step_1.maximum + 1``); informational only:
            the value in the real exports is not documented, so callers check the period
            of ``idx.kspace_encode_step_1`` in the data instead.
    """

    matrix: tuple[int, int] = (84, 84)
    fov_mm: tuple[float, float, float] = (200.0, 200.0, 6.0)
    tr_ms: float = 6.004
    n_channels: int = 8
    trajectory: str = "spiral"
    read_time_us: int = 2520
    sampling_time_us: int = 4
    repetition_time_us: int = 6004
    identifier: str = "HargreavesVDS2000"
    h1_resonance_hz: int = 63860000
    te_ms: float = 0.8
    flip_angle_deg: float = 15.0
    n_interleaves: int = 13


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ISMRMRD_NS}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _space(parent: ET.Element, tag: str, h: RawHeader) -> None:
    space = _sub(parent, tag)
    ms = _sub(space, "matrixSize")
    _sub(ms, "x", int(h.matrix[0]))
    _sub(ms, "y", int(h.matrix[1]))
    _sub(ms, "z", 1)
    fov = _sub(space, "fieldOfView_mm")
    for axis, value in zip("xyz", h.fov_mm, strict=True):
        _sub(fov, axis, float(value))


def header_xml(h: RawHeader) -> str:
    """Render an ISMRMRD XML header (valid against the ISMRMRD 1.x schema).

    Elements (in schema order): ``acquisitionSystemInformation.receiverChannels``,
    ``experimentalConditions.H1resonanceFrequency_Hz``, one ``encoding`` with
    ``encodedSpace``/``reconSpace`` (matrix x, y, 1 and FOV in mm), ``encodingLimits``
    (``kspace_encoding_step_1`` 0..n_interleaves-1), ``trajectory``,
    ``trajectoryDescription`` (identifier, userParameterLong ``readTime_ns``,
    ``simplingTime_ns`` (sic), ``repetitionTime_ns``, all in µs), and
    ``sequenceParameters`` (TR, TE in ms, flipAngle_deg).

    Args:
        h: header values.

    Returns:
        The XML document as a str with an XML declaration.
    """
    ET.register_namespace("", ISMRMRD_NS)
    root = ET.Element(f"{{{ISMRMRD_NS}}}ismrmrdHeader")
    asi = _sub(root, "acquisitionSystemInformation")
    _sub(asi, "receiverChannels", int(h.n_channels))
    exp = _sub(root, "experimentalConditions")
    _sub(exp, "H1resonanceFrequency_Hz", int(h.h1_resonance_hz))
    enc = _sub(root, "encoding")
    _space(enc, "encodedSpace", h)
    _space(enc, "reconSpace", h)
    limits = _sub(enc, "encodingLimits")
    step1 = _sub(limits, "kspace_encoding_step_1")
    _sub(step1, "minimum", 0)
    _sub(step1, "maximum", max(int(h.n_interleaves) - 1, 0))
    _sub(step1, "center", 0)
    _sub(enc, "trajectory", h.trajectory)
    desc = _sub(enc, "trajectoryDescription")
    _sub(desc, "identifier", h.identifier)
    for name, value in (
        ("readTime_ns", h.read_time_us),
        ("simplingTime_ns", h.sampling_time_us),
        ("repetitionTime_ns", h.repetition_time_us),
    ):
        upl = _sub(desc, "userParameterLong")
        _sub(upl, "name", name)
        _sub(upl, "value", int(value))
    seq = _sub(root, "sequenceParameters")
    _sub(seq, "TR", float(h.tr_ms))
    _sub(seq, "TE", float(h.te_ms))
    _sub(seq, "flipAngle_deg", float(h.flip_angle_deg))
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(el: ET.Element, *names: str) -> ET.Element | None:
    """Follow a path of local tag names (namespaces ignored); first match at each level."""
    cur: ET.Element | None = el
    for name in names:
        if cur is None:
            return None
        cur = next((c for c in cur if _local(c.tag) == name), None)
    return cur


def _number(text: str, what: str, path: str | os.PathLike[str]) -> float:
    """A finite float from XML text, or FormatError naming ``path`` and ``what``."""
    try:
        value = float(text.strip())
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise FormatError(f"{path}: {what} is {text.strip()!r}, not a finite number")
    return value


def parse_header(xml: str | bytes, path: str | os.PathLike[str]) -> RawHeader:
    """Parse the fields of :class:`RawHeader` from an ISMRMRD XML header.

    Tolerant: elements are looked up by local tag name, any namespace is accepted, and
    a missing element keeps the :class:`RawHeader` default. ``reconSpace`` is preferred
    over ``encodedSpace`` for the matrix and FOV. ``samplingTime_ns`` is accepted as well
    as the exporter's misspelt ``simplingTime_ns``.

    Args:
        xml: the document (str or bytes; a BOM and trailing NUL bytes are ignored).
        path: the file it came from, named in error messages.

    Returns:
        The parsed header.

    Raises:
        FormatError: not XML, the root is not ``ismrmrdHeader``, or a value is not a number.
    """
    if isinstance(xml, bytes | bytearray | np.bytes_):
        text = bytes(xml).rstrip(b"\x00").decode("utf-8", errors="replace")
    else:
        text = str(xml).rstrip("\x00")
    text = text.lstrip("\ufeff").strip()
    if text.startswith("<?xml"):  # ElementTree rejects an encoding declaration in a str
        end = text.find("?>")
        text = text[end + 2 :] if end >= 0 else text
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FormatError(f"{path}: /dataset/xml is not valid XML ({one_line(exc)})") from exc
    if _local(root.tag) != "ismrmrdHeader":
        raise FormatError(f"{path}: /dataset/xml root is <{_local(root.tag)}>, not ismrmrdHeader")

    d = RawHeader()

    def num(kind: type[int] | type[float], default: float, *names: str) -> float:
        el = _find(root, *names)
        if el is None or el.text is None or not el.text.strip():
            return default
        value = _number(el.text, f"XML {'/'.join(names)}", path)
        return round(value) if kind is int else value

    def text_of(default: str, *names: str) -> str:
        el = _find(root, *names)
        return default if el is None or el.text is None else el.text.strip()

    space = "reconSpace" if _find(root, "encoding", "reconSpace") is not None else "encodedSpace"
    matrix = (
        int(num(int, d.matrix[0], "encoding", space, "matrixSize", "x")),
        int(num(int, d.matrix[1], "encoding", space, "matrixSize", "y")),
    )
    fov = (
        float(num(float, d.fov_mm[0], "encoding", space, "fieldOfView_mm", "x")),
        float(num(float, d.fov_mm[1], "encoding", space, "fieldOfView_mm", "y")),
        float(num(float, d.fov_mm[2], "encoding", space, "fieldOfView_mm", "z")),
    )
    user_long: dict[str, str] = {}
    desc = _find(root, "encoding", "trajectoryDescription")
    if desc is not None:
        for upl in desc:
            if _local(upl.tag) != "userParameterLong":
                continue
            name_el, value_el = _find(upl, "name"), _find(upl, "value")
            if name_el is not None and value_el is not None and name_el.text and value_el.text:
                user_long[name_el.text.strip()] = value_el.text.strip()

    def user(default: int, *names: str) -> int:
        for name in names:
            if name in user_long:
                return round(_number(user_long[name], f"XML userParameterLong {name}", path))
        return default

    max_step1 = num(
        int, d.n_interleaves - 1, "encoding", "encodingLimits", "kspace_encoding_step_1", "maximum"
    )
    return RawHeader(
        matrix=matrix,
        fov_mm=fov,
        tr_ms=float(num(float, d.tr_ms, "sequenceParameters", "TR")),
        n_channels=int(num(int, d.n_channels, "acquisitionSystemInformation", "receiverChannels")),
        trajectory=text_of(d.trajectory, "encoding", "trajectory"),
        read_time_us=user(d.read_time_us, "readTime_ns"),
        sampling_time_us=user(d.sampling_time_us, "simplingTime_ns", "samplingTime_ns"),
        repetition_time_us=user(d.repetition_time_us, "repetitionTime_ns"),
        identifier=text_of(d.identifier, "encoding", "trajectoryDescription", "identifier"),
        h1_resonance_hz=int(
            num(int, d.h1_resonance_hz, "experimentalConditions", "H1resonanceFrequency_Hz")
        ),
        te_ms=float(num(float, d.te_ms, "sequenceParameters", "TE")),
        flip_angle_deg=float(num(float, d.flip_angle_deg, "sequenceParameters", "flipAngle_deg")),
        n_interleaves=int(max_step1) + 1,
    )


class RawWriter:
    """Streaming writer of an ISMRMRD raw file with the USC layout.

    Use as a context manager::

        with RawWriter(path, RawHeader()) as w:
            w.append(data, traj, interleaf)   # any number of times

    The file is created (truncated) at ``path`` on construction, the XML header is written
    at once and acquisitions are appended in blocks (one h5py write per :meth:`append`).
    On an exception inside the ``with`` block the file is closed and the exception
    propagates; wrap ``path`` in :func:`~sirem_cli.io.atomic.atomic_path` so a partial file
    never appears under the final name.

    Per acquisition ``i`` (running index over all appends) the header holds: version 1,
    flags 0, ``scan_counter = i``, ``acquisition_time_stamp = floor(i * TR)`` in ms,
    ``number_of_samples = S``, ``available_channels = active_channels = C``,
    ``channel_mask`` with the C low bits set, ``trajectory_dimensions = D``,
    ``sample_time_us = 0`` (as in the real exports), ``idx.kspace_encode_step_1 =
    interleaf[i]``, ``idx.repetition = i mod 65536``; every other field is 0.

    Args:
        path: output file.
        header: XML header values; ``header.n_channels`` is the default channel count.
        n_samples: samples per arm S.
        n_channels: channels C (``None``: ``header.n_channels``; must equal it otherwise).
        traj_dims: trajectory rows D (3 = kx, ky, dcf in the corpus).
        chunk: HDF5 chunk length of ``/dataset/data`` in acquisitions.

    Raises:
        ShapeError: inconsistent sizes.
        OutputError: the file cannot be created or written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: RawHeader,
        *,
        n_samples: int = 630,
        n_channels: int | None = None,
        traj_dims: int = 3,
        chunk: int = 256,
    ) -> None:
        self.path = Path(path)
        self.header = header
        self.n_samples = int(n_samples)
        self.n_channels = int(header.n_channels if n_channels is None else n_channels)
        self.traj_dims = int(traj_dims)
        if self.n_channels != header.n_channels:
            raise ShapeError(
                f"n_channels={self.n_channels} differs from header.n_channels={header.n_channels}"
            )
        if not (0 < self.n_samples < 65536 and 0 < self.n_channels <= 1024):
            raise ShapeError(f"bad sizes: n_samples={n_samples}, n_channels={self.n_channels}")
        if not 0 <= self.traj_dims < 65536:
            raise ShapeError(f"bad traj_dims={traj_dims}")
        self._count = 0
        self._ts_step_ms = header.repetition_time_us / 1000.0
        try:
            self._file: h5py.File | None = h5_create(self.path)
            grp = self._file.create_group("dataset")
            xml = grp.create_dataset("xml", shape=(1,), dtype=h5py.string_dtype("utf-8"))
            xml[0] = header_xml(header)
            self._dset = grp.create_dataset(
                "data",
                shape=(0,),
                maxshape=(None,),
                dtype=ACQUISITION_DTYPE,
                chunks=(max(int(chunk), 1),),
            )
        except OSError as exc:
            self.close()
            raise OutputError(f"{self.path}: cannot create HDF5 file ({one_line(exc)})") from exc

    @property
    def n_acquisitions(self) -> int:
        """Acquisitions written so far."""
        return self._count

    def append(self, data: np.ndarray, traj: np.ndarray, interleaf: np.ndarray) -> None:
        """Append ``n`` acquisitions (spiral arms) with one h5py write.

        Args:
            data: (n, C, S) complex k-space samples (stored as complex64).
            traj: (n, S, D) real trajectory rows, stored float32; for D = 3 these are kx, ky
                in cycles/pixel and the density compensation.
            interleaf: (n,) integer arm index in [0, 65535] (``idx.kspace_encode_step_1``).

        Raises:
            ShapeError: wrong shapes or dtypes, or a closed writer.
            OutputError: the HDF5 write failed.
        """
        if self._file is None:
            raise ShapeError(f"{self.path}: RawWriter is closed")
        data = np.asarray(data)
        traj = np.asarray(traj)
        interleaf = np.asarray(interleaf)
        C, S, D = self.n_channels, self.n_samples, self.traj_dims
        if data.ndim != 3 or data.shape[1:] != (C, S) or not np.iscomplexobj(data):
            raise ShapeError(f"data must be complex (n, {C}, {S}), got {data.dtype} {data.shape}")
        n = data.shape[0]
        if traj.shape != (n, S, D) or np.iscomplexobj(traj) or traj.dtype.kind not in "fiu":
            raise ShapeError(f"traj must be real ({n}, {S}, {D}), got {traj.dtype} {traj.shape}")
        if interleaf.shape != (n,) or interleaf.dtype.kind not in "iu":
            raise ShapeError(
                f"interleaf must be integer ({n},), got {interleaf.dtype} {interleaf.shape}"
            )
        if n and (interleaf.min() < 0 or interleaf.max() > 65535):
            raise ShapeError("interleaf values must lie in [0, 65535]")
        if n == 0:
            return

        floats = np.ascontiguousarray(data, dtype=np.complex64).view(np.float32).reshape(n, -1)
        rows = np.ascontiguousarray(traj, dtype=np.float32).reshape(n, -1)
        i = np.arange(self._count, self._count + n, dtype=np.int64)
        block = np.zeros(n, dtype=ACQUISITION_DTYPE)
        head = block["head"]
        head["version"] = ACQ_HEADER_VERSION
        head["scan_counter"] = i
        head["acquisition_time_stamp"] = np.floor(i * self._ts_step_ms).astype(np.uint32)
        head["number_of_samples"] = S
        head["available_channels"] = C
        head["active_channels"] = C
        mask = head["channel_mask"]
        for word in range(min((C + 63) // 64, mask.shape[1])):
            bits = min(C - 64 * word, 64)
            mask[:, word] = np.uint64((1 << bits) - 1)
        head["trajectory_dimensions"] = D
        head["sample_time_us"] = 0.0
        head["idx"]["kspace_encode_step_1"] = interleaf.astype(np.uint16)
        head["idx"]["repetition"] = (i % 65536).astype(np.uint16)
        traj_obj = np.empty(n, dtype=object)
        traj_obj[:] = list(rows)
        data_obj = np.empty(n, dtype=object)
        data_obj[:] = list(floats)
        block["traj"] = traj_obj
        block["data"] = data_obj
        try:
            self._dset.resize((self._count + n,))
            self._dset[self._count : self._count + n] = block
            h5_check(self._file)
        except (OSError, RuntimeError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot write acquisitions ({one_line(exc)})") from exc
        self._count += n

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        f, self._file = getattr(self, "_file", None), None
        if f is not None:
            try:
                f.close()
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot close ({one_line(exc)})") from exc

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except OutputError:
                pass  # the original exception is the one to report


@dataclass
class RawScan:
    """One raw spiral scan read into memory.

    Attributes:
        path: the file read.
        header: the XML header values.
        data: (ns, C, S) complex64 k-space, one row per acquisition (spiral arm, one TR).
        traj: (ns, S, D) float32 trajectory rows; D = 3: kx, ky in cycles/pixel and the
            density compensation.
        interleaf: (ns,) int64 ``idx.kspace_encode_step_1`` (arm index 0..12).
        repetition: (ns,) int64 ``idx.repetition`` (the running acquisition counter in the
            USC exports; not a frame index).
    """

    path: Path
    header: RawHeader
    data: np.ndarray
    traj: np.ndarray
    interleaf: np.ndarray
    repetition: np.ndarray

    @property
    def n_acquisitions(self) -> int:
        """ns, the number of acquisitions (arms)."""
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        """C, taken from the data (not the XML)."""
        return int(self.data.shape[1])

    @property
    def n_samples(self) -> int:
        """S, samples per arm, taken from the data (not the XML)."""
        return int(self.data.shape[2])


def _open(path: str | os.PathLike[str]) -> tuple[Path, h5py.File]:
    p = require_file(path)
    try:
        return p, h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(f"{p}: not a readable HDF5 file ({one_line(exc)})") from exc


def _read_header(p: Path, f: h5py.File) -> RawHeader:
    xml = f.get("dataset/xml")
    if not isinstance(xml, h5py.Dataset):
        raise FormatError(f"{p}: no /dataset/xml (not an ISMRMRD raw file)")
    try:
        value = xml[()]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise FormatError(f"{p}: cannot read /dataset/xml ({one_line(exc)})") from exc
    if isinstance(value, np.ndarray):
        if value.size == 0:
            raise FormatError(f"{p}: /dataset/xml is empty")
        value = value.reshape(-1)[0]
    if not isinstance(value, str | bytes | np.bytes_):
        raise FormatError(f"{p}: /dataset/xml is not a string")
    return parse_header(value, p)


def _data_dataset(p: Path, f: h5py.File) -> h5py.Dataset:
    dset = f.get("dataset/data")
    if not isinstance(dset, h5py.Dataset):
        raise FormatError(f"{p}: no /dataset/data (not an ISMRMRD raw file)")
    names = dset.dtype.names or ()
    head_names = dset.dtype["head"].names if "head" in names else None
    if (
        dset.ndim != 1
        or not {"head", "traj", "data"} <= set(names)
        or not head_names
        or not set(_REQUIRED_HEAD_FIELDS) <= set(head_names)
        or not {"kspace_encode_step_1", "repetition"} <= set(dset.dtype["head"]["idx"].names or ())
    ):
        raise FormatError(f"{p}: /dataset/data is not an ISMRMRD acquisition array")
    return dset


def _read_block(p: Path, dset: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Acquisitions ``start:stop`` as a structured array (vlen fields as object arrays)."""
    try:
        return dset[start:stop]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise FormatError(
            f"{p}: cannot read /dataset/data[{start}:{stop}] ({one_line(exc)})"
        ) from exc


def read_raw_header(path: str | os.PathLike[str]) -> tuple[RawHeader, int]:
    """Read the XML header and the number of acquisitions, without reading any data.

    Args:
        path: ``<prefix>_raw.h5``, opened read-only.

    Returns:
        ``(header, ns)``.

    Raises:
        InputError: the file is missing.
        FormatError: not HDF5, or ``/dataset/xml`` / ``/dataset/data`` missing or malformed.
    """
    p, f = _open(path)
    with f:
        header = _read_header(p, f)
        return header, int(_data_dataset(p, f).shape[0])


class RawReader:
    """An ISMRMRD raw spiral file opened read-only, read in blocks of acquisitions.

    ``C``, ``S`` and ``D`` come from the acquisition headers (``active_channels``,
    ``number_of_samples``, ``trajectory_dimensions``) of acquisition 0, not from the XML; every
    block read is checked against them. Use as a context manager (or call :meth:`close`).

    Attributes:
        path: the file.
        header: the XML header values.
        n_acquisitions: ns.
        n_channels: C.
        n_samples: S.

    Raises:
        InputError: the file is missing.
        FormatError: not HDF5 or truncated; ``/dataset/data`` or ``/dataset/xml`` missing;
            zero acquisitions; ``trajectory_dimensions`` != 3 ("wrong trajectory width").
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path, self._file = _open(path)
        try:
            self.header = _read_header(self.path, self._file)
            self._dset = _data_dataset(self.path, self._file)
            self.n_acquisitions = int(self._dset.shape[0])
            if self.n_acquisitions == 0:
                raise FormatError(f"{self.path}: /dataset/data has zero acquisitions")
            head0 = _read_block(self.path, self._dset.fields(["head"]), 0, 1)["head"][0]
            self.n_channels = int(head0["active_channels"])
            self.n_samples = int(head0["number_of_samples"])
            self._dims = int(head0["trajectory_dimensions"])
            if self._dims != 3:
                raise FormatError(
                    f"{self.path}: wrong trajectory width: trajectory_dimensions is "
                    f"{self._dims}, expected 3 (kx, ky, dcf)"
                )
            if self.n_channels == 0 or self.n_samples == 0:
                raise FormatError(
                    f"{self.path}: acquisition 0 has {self.n_channels} channels and "
                    f"{self.n_samples} samples"
                )
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> RawReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def read(
        self, start: int, stop: int, *, data: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """Acquisitions ``start:stop`` (at most :data:`_READ_BLOCK` per h5py read).

        Args:
            start, stop: acquisition range.
            data: also read the k-space (False reads only headers and trajectories).

        Returns:
            data (n, C, S) complex64 (None when ``data`` is False), traj (n, S, 3) float32
            (kx, ky in cycles/pixel, dcf), interleaf (n,) int64 ``kspace_encode_step_1`` and
            repetition (n,) int64.

        Raises:
            FormatError: inconsistent sizes across acquisitions, a data or trajectory length
                that does not match the header, NaN/Inf in the k-space or the trajectory.
        """
        p = self.path
        C, S, D = self.n_channels, self.n_samples, self._dims
        n = stop - start
        out_data = np.empty((n, C, S), dtype=np.complex64) if data else None
        traj = np.empty((n, S, D), dtype=np.float32)
        interleaf = np.empty(n, dtype=np.int64)
        repetition = np.empty(n, dtype=np.int64)
        rows = {"traj": traj.reshape(n, -1)}
        if out_data is not None:
            rows["data"] = out_data.view(np.float32).reshape(n, -1)
        sizes = {"data": f"2 x {C} channels x {S} samples", "traj": f"{S} samples x {D} dims"}
        view = self._dset if data else self._dset.fields(["head", "traj"])
        for lo in range(start, stop, _READ_BLOCK):
            hi = min(stop, lo + _READ_BLOCK)
            block = _read_block(p, view, lo, hi)
            head = block["head"]
            for field, ref in (
                ("number_of_samples", S),
                ("active_channels", C),
                ("trajectory_dimensions", D),
            ):
                values = head[field]
                bad = np.flatnonzero(values != ref)
                if bad.size:
                    i = lo + int(bad[0])
                    what = "wrong trajectory width: " if field == "trajectory_dimensions" else ""
                    raise FormatError(
                        f"{p}: {what}inconsistent {field} across acquisitions "
                        f"(acquisition {i} has {int(values[bad[0]])}, acquisition 0 has {ref})"
                    )
            for field, dest in rows.items():
                objs = block[field]
                expected = dest.shape[1]
                lengths = np.fromiter((len(a) for a in objs), dtype=np.int64, count=len(objs))
                bad = np.flatnonzero(lengths != expected)
                if bad.size:
                    raise FormatError(
                        f"{p}: acquisition {lo + int(bad[0])}: {field} has "
                        f"{int(lengths[bad[0]])} floats, expected {expected} ({sizes[field]})"
                    )
                target = dest[lo - start : hi - start]
                np.concatenate(list(objs), out=target.reshape(-1))
                finite = np.isfinite(target).all(axis=1)
                if not finite.all():
                    i = lo + int(np.argmin(finite))
                    what = "k-space" if field == "data" else "trajectory"
                    raise FormatError(f"{p}: NaN/Inf in {what} (acquisition {i})")
            interleaf[lo - start : hi - start] = head["idx"]["kspace_encode_step_1"]
            repetition[lo - start : hi - start] = head["idx"]["repetition"]
        return out_data, traj, interleaf, repetition


def read_raw(path: str | os.PathLike[str]) -> RawScan:
    """Read a whole ISMRMRD raw spiral file into memory (:class:`RawReader` over all of it).

    The acquisitions are read in blocks of 1024 with one h5py read each and copied into
    preallocated arrays. Memory: the result is ``ns * (8 C S + 4 S D)`` bytes, 47.9 kB per
    acquisition for C = 8, S = 630, D = 3, i.e. about 470 MB for the longest USC scans
    (~9,800 acquisitions), plus about 50 MB of temporary block buffers. ``sirem prepare``
    reads in blocks instead (bounded memory).

    Args:
        path: ``<prefix>_raw.h5``, opened read-only.

    Returns:
        The :class:`RawScan`.

    Raises:
        InputError, FormatError: see :class:`RawReader` and :meth:`RawReader.read`.
    """
    with RawReader(path) as reader:
        data, traj, interleaf, repetition = reader.read(0, reader.n_acquisitions)
        return RawScan(reader.path, reader.header, data, traj, interleaf, repetition)
