"""USC 75-speaker corpus: file names, discovery, reference reconstructions and audio.

The layout and the file-name grammar are those of ``/work/shared/spec/data-formats.md``
sections 1.2, 1.5, 1.6 and 2.2. The same functions read the real corpus and the synthetic
corpus that ``sirem synth`` writes (``OUT/usc75``, ``OUT/annot16``, ``OUT/truth``).

Every file is found by a recursive search on its suffix (never by a fixed depth) and the
files of one utterance are joined on their *prefix* ``subNNN_2drt_<SS>_<task>[_rK]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sirem_cli.errors import FormatError, InputError, OutputError, ShapeError
from sirem_cli.io.output import h5_create

PREFIX_RE = re.compile(r"^(sub\d{3})_2drt_(\d{2})_([a-z]+\d?)(?:_r(\d))?$")
"""Grammar of an utterance prefix; groups: subject, scan number, task, repetition."""

SUFFIXES: dict[str, str] = {
    "raw": "_raw.h5",
    "recon": "_recon.h5",
    "audio": "_audio.wav",
    "video": "_video.mp4",
    "track": "_track.mat",
    "textgrid": "_text.TextGrid",
    "truth": "_truth.h5",
}
"""File kind -> file-name suffix after the prefix (matched case-insensitively)."""

RECON_EXTRAS: dict[str, float] = {"lambda_t": 0.08, "lambda_s": 0.0, "iterations": 150.0}
"""Scalars that the MATLAB reconstruction stores beside ``/recon`` (each a (1, 1) float64)."""


def one_line(exc: BaseException) -> str:
    """Return an exception's message collapsed onto one line (for error messages)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def require_file(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` names an existing regular file (symlinks are followed).

    Args:
        path: file to check.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``"<path>: no such file"`` or ``"<path>: is a folder, not a file"``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a file")
    return p


@dataclass(frozen=True)
class Prefix:
    """The parts of an utterance prefix ``subNNN_2drt_<SS>_<task>[_rK]``.

    Attributes:
        subject: ``"subNNN"``.
        scan: scan number ``SS`` (1..21 in the real corpus).
        task: stimulus name, e.g. ``"vcv1"``, ``"topic1"``, ``"shibboleth"``.
        repetition: ``K`` of the ``_rK`` suffix, or ``None`` for single-take stimuli.
    """

    subject: str
    scan: int
    task: str
    repetition: int | None


def parse_prefix(prefix: str) -> Prefix:
    """Split an utterance prefix into its parts.

    Args:
        prefix: e.g. ``"sub061_2drt_17_topic1"`` or ``"sub009_2drt_01_vcv1_r1"``.

    Returns:
        The parsed :class:`Prefix`.

    Raises:
        InputError: the string does not match :data:`PREFIX_RE`.
    """
    m = PREFIX_RE.match(prefix)
    if m is None:
        raise InputError(
            f"{prefix!r}: not a USC utterance prefix (expected subNNN_2drt_SS_task[_rK])"
        )
    rep = m.group(4)
    return Prefix(m.group(1), int(m.group(2)), m.group(3), None if rep is None else int(rep))


@dataclass
class UtteranceFiles:
    """All files found for one utterance prefix; a kind that was not found is ``None``.

    Attributes:
        prefix: the join key ``subNNN_2drt_<SS>_<task>[_rK]``.
        subject: ``"subNNN"``.
        raw: ``<prefix>_raw.h5`` ISMRMRD k-space.
        recon: ``<prefix>_recon.h5`` reference reconstruction.
        audio: ``<prefix>_audio.wav``.
        track: ``<prefix>_track.mat`` (Annot-16 dense contours).
        textgrid: ``<prefix>_text.TextGrid`` (Annot-16 alignment).
        truth: ``<prefix>_truth.h5`` (synthetic corpora only: the ground-truth phantom).
        video: ``<prefix>_video.mp4``.
    """

    prefix: str
    subject: str
    raw: Path | None = None
    recon: Path | None = None
    audio: Path | None = None
    track: Path | None = None
    textgrid: Path | None = None
    truth: Path | None = None
    video: Path | None = None

    @property
    def info(self) -> Prefix:
        """The parsed prefix."""
        return parse_prefix(self.prefix)


def _match_suffix(name: str) -> tuple[str, str] | None:
    """Return ``(kind, prefix)`` when ``name`` is ``<valid prefix><suffix>``, else None."""
    lower = name.lower()
    for kind, suffix in SUFFIXES.items():
        if lower.endswith(suffix.lower()):
            prefix = name[: -len(suffix)]
            if PREFIX_RE.match(prefix):
                return kind, prefix
            return None
    return None


def _walk(top: Path) -> list[tuple[Path, str, str]]:
    """``(path, kind, prefix)`` of every corpus file under ``top``, following symlinks.

    Symlinked folders are entered once (no loops). Hidden sub-folders (name starting with
    ``.``, e.g. the temporary folders of :func:`sirem_cli.io.atomic.atomic_path`) are
    skipped; broken links and names that are not ``<prefix><suffix>`` are ignored.
    """
    found: list[tuple[Path, str, str]] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink cycle or a folder reached twice
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            hit = _match_suffix(name)
            if hit is None:
                continue
            p = Path(dirpath) / name
            if p.is_file():
                found.append((p, *hit))
    return found


def discover(
    root: str | os.PathLike[str],
    annot: str | os.PathLike[str] | None = None,
    subjects: Sequence[str] | None = None,
) -> list[UtteranceFiles]:
    """Find the files of every utterance under ``root`` (and ``annot``) and join them.

    Every regular file below the given folders whose name is ``<prefix><suffix>`` for a
    suffix in :data:`SUFFIXES` and a prefix matching :data:`PREFIX_RE` is used; other
    files are ignored. Only the given folders are searched (recursively, following
    symlinks, skipping hidden sub-folders). The same file reached twice (``annot`` inside
    ``root``, or through a symlink) counts once.

    Args:
        root: USC corpus root (or a synthetic corpus ``OUT`` holding ``usc75/``,
            ``annot16/`` and ``truth/``).
        annot: optional Annot-16 root searched as well.
        subjects: keep only these subject ids (``"subNNN"``); ``None`` keeps all.

    Returns:
        One :class:`UtteranceFiles` per prefix with at least one file, sorted by prefix.
        Utterances without a raw file are included (their ``raw`` is ``None``).

    Raises:
        InputError: ``root`` or ``annot`` is not a folder; two different files of the same
            kind share a prefix; no ``*_raw.h5`` file was found (for ``subjects``).
    """
    roots = [Path(root)]
    if annot is not None:
        roots.append(Path(annot))
    for r in roots:
        if not r.exists():
            raise InputError(f"{r}: no such folder")
        if not r.is_dir():
            raise InputError(f"{r}: is a file, not a folder")
    wanted = None if subjects is None else set(subjects)

    by_prefix: dict[str, UtteranceFiles] = {}
    real_of: dict[tuple[str, str], Path] = {}
    for r in roots:
        for p, kind, prefix in _walk(r):
            subject = prefix[:6]
            if wanted is not None and subject not in wanted:
                continue
            real = p.resolve()
            entry = by_prefix.setdefault(prefix, UtteranceFiles(prefix=prefix, subject=subject))
            previous = getattr(entry, kind)
            if previous is None:
                setattr(entry, kind, p)
                real_of[(prefix, kind)] = real
            elif real_of[(prefix, kind)] != real:
                first, second = sorted([str(previous), str(p)])
                raise InputError(f"{first}: duplicate {kind} file for {prefix}, also {second}")

    if not any(u.raw is not None for u in by_prefix.values()):
        where = ", ".join(str(r) for r in roots)
        if wanted is None:
            raise InputError(f"{where}: no *_raw.h5 files found")
        names = ", ".join(sorted(wanted))
        raise InputError(f"{where}: no *_raw.h5 files found for subjects {names}")
    return [by_prefix[k] for k in sorted(by_prefix)]


def read_recon(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the reference reconstruction ``/recon`` of a ``*_recon.h5`` file.

    Only ``/recon`` is read; other datasets (``/lambda_t`` ...) are ignored. The array is
    returned in h5py order, **not** transposed: the upright image of frame ``t`` is
    ``recon[t].T`` (data-formats.md 1.5).

    Args:
        path: ``<prefix>_recon.h5``, opened read-only.

    Returns:
        (nof, H, W) float32 magnitude images (arbitrary intensity scale), one per 2-arm
        frame; H = W = 84 in the corpus.

    Raises:
        InputError: the file is missing.
        FormatError: not HDF5, no ``/recon`` dataset, not 3-D, not numeric, or
            non-finite values.
    """
    p = require_file(path)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise FormatError(f"{p}: not a readable HDF5 file ({one_line(exc)})") from exc
    with f:
        dset = f.get("recon")
        if not isinstance(dset, h5py.Dataset):
            raise FormatError(f"{p}: no /recon dataset")
        if dset.ndim != 3:
            raise FormatError(f"{p}: /recon has shape {dset.shape}, expected 3-D (frames, H, W)")
        if dset.dtype.kind not in "fiu":
            raise FormatError(f"{p}: /recon has dtype {dset.dtype}, expected real numbers")
        try:
            frames = dset.astype(np.float32)[()]
        except (OSError, RuntimeError, ValueError) as exc:
            raise FormatError(f"{p}: cannot read /recon ({one_line(exc)})") from exc
    if frames.shape[0] == 0:
        raise FormatError(f"{p}: /recon has no frames")
    if not np.isfinite(frames).all():
        bad = int(np.argmax(~np.isfinite(frames).reshape(frames.shape[0], -1).all(axis=1)))
        raise FormatError(f"{p}: NaN/Inf in /recon (frame {bad})")
    return frames


def frame_count(path: str | os.PathLike[str], name: str) -> int:
    """The number of frames (first dimension) of a 3-D dataset, reading no data.

    Raises:
        InputError: the file is missing.
        FormatError: not HDF5, no such dataset, not 3-D real numbers, no frames.
    """
    p = require_file(path)
    try:
        with h5py.File(p, "r") as f:
            dset = f.get(name)
            if not isinstance(dset, h5py.Dataset):
                raise FormatError(f"{p}: no /{name} dataset")
            if dset.ndim != 3 or dset.dtype.kind not in "fiu":
                raise FormatError(
                    f"{p}: /{name} has dtype {dset.dtype} and shape {dset.shape}, expected "
                    "real (frames, H, W)"
                )
            if dset.shape[0] == 0:
                raise FormatError(f"{p}: /{name} has no frames")
            return int(dset.shape[0])
    except OSError as exc:
        raise FormatError(f"{p}: not a readable HDF5 file ({one_line(exc)})") from exc


def recon_arms_per_frame(path: str | os.PathLike[str], default: int = 2) -> int:
    """Acquisitions per ``/recon`` frame: its ``arms_per_frame`` attribute, else ``default``.

    Raises:
        FormatError: not HDF5, or an attribute that is not a positive integer.
    """
    p = require_file(path)
    try:
        with h5py.File(p, "r") as f:
            value = f["recon"].attrs.get("arms_per_frame", default) if "recon" in f else default
    except OSError as exc:
        raise FormatError(f"{p}: not a readable HDF5 file ({one_line(exc)})") from exc
    try:
        arms = int(value)
    except (TypeError, ValueError):
        arms = 0
    if arms < 1 or arms != value:
        raise FormatError(f"{p}: /recon arms_per_frame must be a positive integer, got {value!r}")
    return arms


def read_frames_at(
    path: str | os.PathLike[str], name: str, indices: np.ndarray, *, transpose: bool
) -> np.ndarray:
    """Rows ``indices`` of a 3-D dataset (``/recon`` or ``/truth``) as float32, optionally
    transposed (``/recon[k].T`` is upright). Any order and repeats are allowed; only the rows
    asked for are read (bounded memory on long scans).

    Raises:
        FormatError: not HDF5, no such dataset, an index beyond its frames, NaN/Inf values.
    """
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise FormatError(f"{path}: lacks the dataset {name!r}")
            dset = f[name]
            if len(unique) and int(unique[-1]) >= dset.shape[0]:
                raise FormatError(
                    f"{path}: /{name} holds {dset.shape[0]} frames, frame {int(unique[-1])} is "
                    "needed"
                )
            if dset.ndim != 3 or dset.dtype.kind not in "fiu":
                raise FormatError(
                    f"{path}: /{name} has dtype {dset.dtype} and shape {dset.shape}, expected "
                    "real (frames, H, W)"
                )
            if len(unique) == 0:
                rows = np.zeros((0, *dset.shape[1:]), np.float32)
            elif unique[-1] - unique[0] < 2 * len(unique):  # nearly contiguous: one slab
                slab = np.asarray(dset[int(unique[0]) : int(unique[-1]) + 1], dtype=np.float32)
                rows = slab[unique - unique[0]][inverse]
            else:
                rows = np.asarray(dset[unique], dtype=np.float32)[inverse]
    except OSError as exc:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})"
        ) from None
    if not np.isfinite(rows).all():
        raise FormatError(f"{path}: NaN/Inf in /{name}")
    return np.swapaxes(rows, -1, -2) if transpose else rows


def write_recon(path: str | os.PathLike[str], frames: np.ndarray, *, extras: bool = True) -> None:
    """Write a reference reconstruction like the MATLAB-written USC files.

    Args:
        path: output ``<prefix>_recon.h5`` (written directly; wrap it in
            :func:`~sirem_cli.io.atomic.atomic_path` for an atomic write).
        frames: (nof, H, W) real finite images in h5py order (``frames[t].T`` upright);
            stored as float64 ``/recon``.
        extras: also write ``/lambda_t`` (0.08), ``/lambda_s`` (0) and ``/iterations``
            (150), each a (1, 1) float64, as the real files probably carry.

    Raises:
        ShapeError: ``frames`` is not 3-D, complex, or not finite.
        OutputError: the file cannot be created.
    """
    arr = np.asarray(frames)
    if arr.ndim != 3 or np.iscomplexobj(arr) or arr.dtype.kind not in "fiub":
        raise ShapeError(
            f"recon frames must be a real (nof, H, W) array, got {arr.dtype} {arr.shape}"
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ShapeError("recon frames contain NaN/Inf")
    try:
        with h5_create(Path(path)) as f:
            f.create_dataset("recon", data=arr)
            if extras:
                for name, value in RECON_EXTRAS.items():
                    f.create_dataset(name, data=np.full((1, 1), value, dtype=np.float64))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({one_line(exc)})") from exc


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a ``*_audio.wav`` file (any bit depth; channel 0 of multi-channel files).

    Args:
        path: audio file, opened read-only.

    Returns:
        ``(audio, sample_rate)``: (T,) float32 samples in [-1, 1] (PCM full scale) and the
        sample rate in Hz (20,000 in the USC corpus). Sample 0 is the start of
        acquisition 0.

    Raises:
        InputError: the file is missing.
        FormatError: unreadable or corrupt audio, or no samples.
    """
    import soundfile

    p = require_file(path)
    try:
        audio, rate = soundfile.read(str(p), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise FormatError(f"{p}: not a readable audio file ({one_line(exc)})") from exc
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise FormatError(f"{p}: audio file has no samples")
    return np.ascontiguousarray(audio[:, 0]), int(rate)


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int = 20000) -> None:
    """Write mono 16-bit PCM WAV, as the USC audio files.

    Args:
        path: output file (written directly; use ``atomic_path`` for an atomic write).
        audio: (T,) or (T, 1) real samples, full scale [-1, 1]; values outside are clipped.
        sample_rate: in Hz.

    Raises:
        ShapeError: ``audio`` is not 1-D (or (T, 1)), complex, or not finite.
        OutputError: the file cannot be written.
    """
    import soundfile

    arr = np.asarray(audio)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or np.iscomplexobj(arr) or arr.dtype.kind not in "fiu":
        raise ShapeError(f"audio must be a real (T,) array, got {arr.dtype} {arr.shape}")
    if not np.isfinite(arr).all():
        raise ShapeError("audio contains NaN/Inf")
    if int(sample_rate) <= 0:
        raise ShapeError(f"sample rate must be positive, got {sample_rate}")
    clipped = np.clip(arr.astype(np.float64), -1.0, 1.0)
    try:
        soundfile.write(str(path), clipped, int(sample_rate), subtype="PCM_16", format="WAV")
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise OutputError(f"{path}: cannot write ({one_line(exc)})") from exc
