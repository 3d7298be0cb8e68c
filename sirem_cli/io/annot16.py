"""75-Speaker Annot-16 dense contour tracks (``<prefix>_track.mat``).

Format (data-formats.md 2.3): a MATLAB v5 MAT file with one variable ``trackdata``, a
(1, N) struct with one record per 2-arm reference frame (N = number of ``/recon`` frames).
Record ``k`` has ``frameNo = k + 1`` (1-based), an integer ``template`` and
``contours.segment``, a 1x4 struct array of ``{v: (P, 2) vertices, i: (P, 1) articulator
identity per vertex, mu}``. Vertices are in *centred, y-up* pixel coordinates; the
upright image pixel (x right, y down, origin top-left) of a vertex is
``(v[:, 0] + W/2, -v[:, 1] + H/2)``. Contours are open polylines. Only the nine
(segment, i) identities of :data:`SEGMENT_IDS` are known; other identities are ignored.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from sirem_cli.errors import FormatError, OutputError, ShapeError
from sirem_cli.io.usc import one_line, require_file

ANNOT16_SPEAKERS: tuple[str, ...] = (
    "sub009",
    "sub013",
    "sub022",
    "sub023",
    "sub028",
    "sub030",
    "sub034",
    "sub043",
    "sub047",
    "sub061",
    "sub064",
    "sub068",
    "sub070",
    "sub071",
    "sub072",
    "sub074",
)
"""The 16 annotated speakers."""

SEGMENT_IDS: dict[tuple[int, int], str] = {
    (0, 1): "epiglottis",
    (0, 2): "tongue",
    (0, 4): "lower_lip",
    (0, 5): "chin",
    (1, 1): "arytenoid",
    (1, 2): "pharyngeal_wall",
    (2, 1): "hard_palate",
    (2, 2): "velum",
    (2, 5): "upper_lip",
}
"""(zero-based segment index, vertex identity ``i``) -> articulator name (the names of the
hand-annotated JSON files)."""

ARTICULATOR_SEGMENT: dict[str, tuple[int, int]] = {name: key for key, name in SEGMENT_IDS.items()}
"""Articulator name -> (segment index, vertex identity)."""

_IDS_OF_SEGMENT: dict[int, list[tuple[int, str]]] = {
    seg: [(ident, name) for (s, ident), name in sorted(SEGMENT_IDS.items()) if s == seg]
    for seg in sorted({s for s, _ in SEGMENT_IDS})
}

N_SEGMENTS = 4
"""Segments per record in the real files (only 0..2 carry mapped identities)."""

_SEGMENT_DTYPE = np.dtype([("v", object), ("i", object), ("mu", object)])
_RECORD_DTYPE = np.dtype([("frameNo", object), ("template", object), ("contours", object)])
_CONTOURS_DTYPE = np.dtype([("segment", object)])
_MAT_ERRORS = (
    MatReadError,
    ValueError,
    TypeError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    zlib.error,
)


@dataclass
class TrackFrame:
    """One record of ``trackdata``.

    Attributes:
        frame_no: 1-based frame number (``frameNo``); record k normally has k + 1.
        template: tracking template id.
        segments: one ``(v, i)`` pair per segment (4 in the real files): ``v`` (P, 2)
            float64 centred y-up pixel coordinates (non-finite vertices kept as stored),
            ``i`` (P,) int64 vertex identities (-1 where the stored value is not finite).
    """

    frame_no: int
    template: int
    segments: list[tuple[np.ndarray, np.ndarray]]


def to_centred(xy: np.ndarray, width: int = 84, height: int = 84) -> np.ndarray:
    """Convert upright image pixels (x right, y down, origin top-left) to centred y-up.

    Args:
        xy: (P, 2) image coordinates in pixels.
        width, height: image size W, H in pixels.

    Returns:
        (P, 2) float64 ``(x - W/2, -(y - H/2))``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([xy[:, 0] - width / 2, -(xy[:, 1] - height / 2)], axis=1)


def to_image(v: np.ndarray, width: int = 84, height: int = 84) -> np.ndarray:
    """Convert centred y-up track vertices to upright image pixels (inverse of to_centred).

    Args:
        v: (P, 2) centred y-up vertices in pixels.
        width, height: image size W, H in pixels.

    Returns:
        (P, 2) float64 ``(v_x + W/2, -v_y + H/2)``: x right, y down, origin top-left.
    """
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[:, 0] + width / 2, -v[:, 1] + height / 2], axis=1)


def _segments_of(frame: Mapping[str, np.ndarray], k: int, width: int, height: int) -> np.ndarray:
    verts: list[list[np.ndarray]] = [[] for _ in range(N_SEGMENTS)]
    ids: list[list[np.ndarray]] = [[] for _ in range(N_SEGMENTS)]
    order = sorted(frame, key=lambda n: ARTICULATOR_SEGMENT.get(n, (N_SEGMENTS, 0)))
    for name in order:
        if name not in ARTICULATOR_SEGMENT:
            known = ", ".join(sorted(ARTICULATOR_SEGMENT))
            raise ShapeError(f"frame {k}: unknown articulator {name!r} (known: {known})")
        pts = np.asarray(frame[name])
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.dtype.kind not in "fiu":
            raise ShapeError(
                f"frame {k}: {name} must be a real (P, 2) polyline, got {pts.dtype} {pts.shape}"
            )
        seg, ident = ARTICULATOR_SEGMENT[name]
        verts[seg].append(to_centred(pts, width, height))
        ids[seg].append(np.full((pts.shape[0], 1), float(ident)))
    segs = np.empty((1, N_SEGMENTS), dtype=_SEGMENT_DTYPE)
    for s in range(N_SEGMENTS):
        segs[0, s]["v"] = np.concatenate(verts[s]) if verts[s] else np.zeros((0, 2))
        segs[0, s]["i"] = np.concatenate(ids[s]) if ids[s] else np.zeros((0, 1))
        segs[0, s]["mu"] = np.zeros((1, 1))
    return segs


def write_track(
    path: str | os.PathLike[str],
    frames: Sequence[Mapping[str, np.ndarray]],
    *,
    width: int = 84,
    height: int = 84,
    template: int = 1,
) -> None:
    """Write an Annot-16 style ``trackdata`` MAT file (MAT v5, uncompressed).

    Each articulator polyline is converted to centred y-up vertices and put into its
    segment of :data:`SEGMENT_IDS`; within a segment the articulators follow in increasing
    identity ``i``, each keeping its own vertex order. Segment 3 is written empty
    (``v`` (0, 2), ``i`` (0, 1)). Record k gets ``frameNo = [[k + 1.]]``,
    ``template = [[template]]`` and ``mu = [[0.]]`` in every segment, all float64.

    Args:
        path: output ``<prefix>_track.mat`` (written directly; use ``atomic_path`` for an
            atomic write).
        frames: one mapping per 2-arm frame: articulator name -> (P, 2) polyline in upright
            image pixels (x right, y down, origin top-left); NaN vertices are written as is.
        width, height: image size in pixels (84 in the corpus).
        template: value of every record's ``template``.

    Raises:
        ShapeError: an unknown articulator name or a polyline that is not (P, 2).
        OutputError: the file cannot be written.
    """
    n = len(frames)
    records = np.empty((1, n), dtype=_RECORD_DTYPE)
    tmpl = np.array([[float(template)]])
    for k, frame in enumerate(frames):
        contours = np.empty((1, 1), dtype=_CONTOURS_DTYPE)
        contours[0, 0]["segment"] = _segments_of(frame, k, width, height)
        records[0, k]["frameNo"] = np.array([[float(k + 1)]])
        records[0, k]["template"] = tmpl
        records[0, k]["contours"] = contours
    buf = io.BytesIO()  # scipy writes many small elements: seeking in memory is faster
    scipy.io.savemat(buf, {"trackdata": records}, format="5", oned_as="column")
    try:
        with open(path, "wb") as f:
            f.write(buf.getbuffer())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({one_line(exc)})") from exc


def _scalar(value: Any, what: str, p: Path, k: int) -> int:
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        raise FormatError(f"{p}: trackdata record {k}: {what} is not a number")
    x = float(arr.reshape(-1)[0])
    if not np.isfinite(x) or x != round(x):
        raise FormatError(f"{p}: trackdata record {k}: {what} is {x}, not an integer")
    return int(x)


def _as_list(value: Any) -> list[Any]:
    """A struct array after ``simplify_cells``: one dict when it had one element."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.reshape(-1))
    raise TypeError


def _segment(seg: Any, p: Path, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"{p}: trackdata record {k} segment {s}"
    if not isinstance(seg, dict) or "v" not in seg or "i" not in seg:
        raise FormatError(f"{where}: not a struct with fields v and i")
    try:
        v = np.asarray(seg["v"], dtype=np.float64)
        ids = np.asarray(seg["i"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: v or i is not numeric") from None
    if v.size % 2:
        raise FormatError(f"{where}: v has shape {v.shape}, expected (P, 2)")
    v = v.reshape(-1, 2)
    if ids.shape[0] != v.shape[0]:
        raise FormatError(f"{where}: {v.shape[0]} vertices but {ids.shape[0]} identities")
    ok = np.isfinite(ids)
    ids_int = np.where(ok, ids, -1).astype(np.int64)
    return v, ids_int


def read_track(path: str | os.PathLike[str]) -> list[TrackFrame]:
    """Read ``trackdata`` from an Annot-16 track file.

    Uses ``scipy.io.loadmat(simplify_cells=True)``; handles its squeezing (a struct array
    of one element becomes a dict, (1, 2) vertices become (2,), (P, 1) identities (P,)).

    Args:
        path: ``<prefix>_track.mat`` (MAT v5/v7), opened read-only.

    Returns:
        One :class:`TrackFrame` per record, in file order (record k normally has
        ``frame_no == k + 1``; the caller checks). Non-finite vertices are kept.

    Raises:
        InputError: the file is missing.
        FormatError: not a readable MAT v5 file (v7.3 HDF5 files included), no
            ``trackdata`` variable, or a record without ``frameNo``/``contours.segment``
            or with malformed vertices.
    """
    p = require_file(path)
    try:
        mat = scipy.io.loadmat(
            str(p), simplify_cells=True, appendmat=False, variable_names=["trackdata"]
        )
    except NotImplementedError as exc:
        raise FormatError(
            f"{p}: MATLAB v7.3 (HDF5) MAT files are not supported ({one_line(exc)})"
        ) from exc
    except _MAT_ERRORS as exc:
        raise FormatError(f"{p}: not a readable MAT file ({one_line(exc)})") from exc
    if "trackdata" not in mat:
        raise FormatError(f"{p}: no trackdata variable")
    try:
        records = _as_list(mat["trackdata"])
    except TypeError:
        raise FormatError(f"{p}: trackdata is not a struct array") from None

    frames: list[TrackFrame] = []
    for k, rec in enumerate(records):
        if not isinstance(rec, dict) or "frameNo" not in rec or "contours" not in rec:
            raise FormatError(f"{p}: trackdata record {k} lacks frameNo or contours")
        frame_no = _scalar(rec["frameNo"], "frameNo", p, k)
        template = _scalar(rec["template"], "template", p, k) if "template" in rec else 0
        contours = rec["contours"]
        if isinstance(contours, list | np.ndarray) and len(contours) == 1:
            contours = contours[0]
        if not isinstance(contours, dict) or "segment" not in contours:
            raise FormatError(f"{p}: trackdata record {k}: contours has no segment field")
        try:
            segs = _as_list(contours["segment"])
        except TypeError:
            raise FormatError(f"{p}: trackdata record {k}: segment is not a struct") from None
        segments = [_segment(seg, p, k, s) for s, seg in enumerate(segs)]
        frames.append(TrackFrame(frame_no=frame_no, template=template, segments=segments))
    return frames


def frame_articulators(
    frame: TrackFrame, width: int = 84, height: int = 84
) -> dict[str, np.ndarray]:
    """Split a track record into articulator polylines in upright image pixels.

    Vertices whose (segment, identity) is not in :data:`SEGMENT_IDS` are ignored. A run of
    non-finite vertices (a hole in the tracked contour) is kept as one NaN row, so drawing code
    breaks the polyline there instead of joining across the hole; leading and trailing ones are
    dropped. Articulators without any finite vertex are left out.

    Args:
        frame: one record from :func:`read_track`.
        width, height: image size in pixels (84 in the corpus).

    Returns:
        Articulator name -> (P, 2) float64 points (x right, y down, origin top-left), in
        the stored vertex order, with one NaN row at each hole.
    """
    out: dict[str, np.ndarray] = {}
    for s, (v, ids) in enumerate(frame.segments):
        known = _IDS_OF_SEGMENT.get(s)
        if not known or v.shape[0] == 0:
            continue
        for ident, name in known:
            points = v[ids == ident]
            finite = np.isfinite(points).all(axis=1)
            if not finite.any():
                continue
            first, last = np.flatnonzero(finite)[[0, -1]]
            points, finite = points[first : last + 1], finite[first : last + 1]
            # keep a non-finite vertex only where it starts a hole
            starts_hole = ~finite & np.concatenate([[True], finite[:-1]])
            points = points[finite | starts_hole].copy()
            points[~np.isfinite(points).all(axis=1)] = np.nan
            out[name] = to_image(points, width, height)
    return out
