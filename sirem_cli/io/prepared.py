"""Read and write the prepared and reconstruction HDF5 files (formats in :mod:`sirem_cli.io.schema`).

Writers write under a temporary name and rename on success. Readers open files read-only,
check format and version first, and accept several files as one dataset.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sirem_cli import __version__
from sirem_cli.errors import FormatError, InputError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.io.output import h5_create
from sirem_cli.io.schema import (
    PREPARED_FORMAT,
    PREPARED_READABLE,
    PREPARED_VERSION,
    RECON_DATASETS,
    RECON_FORMAT,
    RECON_READABLE,
    RECON_VERSION,
    UTTERANCE_DATASETS,
    DatasetSpec,
    dataset_spec,
)

#: Format name -> the versions this sirem reads.
_READABLE = {PREPARED_FORMAT: PREPARED_READABLE, RECON_FORMAT: RECON_READABLE}

#: Datasets a version-2 prepared utterance must hold beyond the version-1 ones.
V2_REQUIRED = ("arms", "xbar")

SPLITS = ("train", "val", "test")

#: How long an open waits for another process that holds the file's HDF5 lock (e.g. a second
#: ``sirem train`` caching embeddings in the same prepared file) before giving up.
LOCK_WAIT_S = 120.0


def _is_lock_error(exc: OSError) -> bool:
    return "unable to lock file" in str(exc)


def h5_open_waiting(path: Path, mode: str) -> h5py.File:
    """``h5py.File(path, mode)``, waiting up to :data:`LOCK_WAIT_S` while another process holds
    the file's lock (HDF5 refuses at once otherwise).

    Raises:
        FormatError: still locked after the wait (the message says so); other OSErrors pass.
    """
    deadline = time.monotonic() + LOCK_WAIT_S
    delay = 0.05
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise FormatError(
                    f"{path}: locked by another process for {LOCK_WAIT_S:.0f} s (another sirem "
                    "command writing to it, e.g. a training caching embeddings?)"
                ) from None
            time.sleep(delay)
            delay = min(1.0, 2 * delay)


def now_iso() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def open_h5(path: Path, *, expect: str) -> h5py.File:
    """Open ``path`` read-only and check its ``format`` and ``format_version``.

    Raises:
        InputError: the file does not exist.
        FormatError: not HDF5, truncated, another format or version.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {expect} HDF5 file")
    try:
        f = h5_open_waiting(path, "r")
    except OSError as exc:
        raise FormatError(f"{path}: not a readable HDF5 file ({_short(exc)})") from None
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if not isinstance(fmt, str) or fmt != expect:
        f.close()
        raise FormatError(f"{path}: not a {expect} file (format attribute is {_short_repr(fmt)})")
    raw_version = f.attrs.get("format_version", -1)
    version = _as_int(raw_version)
    if version is None:
        f.close()
        raise FormatError(
            f"{path}: the format_version attribute is {_short_repr(raw_version)}, not an integer"
        )
    readable = _READABLE.get(expect, ())
    if version not in readable:
        f.close()
        raise FormatError(
            f"{path}: {expect} format version {version} is not supported "
            f"(this sirem reads version {', '.join(map(str, readable))})"
        )
    if "utterances" not in f:
        f.close()
        raise FormatError(f"{path}: missing group /utterances")
    return f


def _as_int(value: Any) -> int | None:
    """An integer attribute (Python, numpy scalar or 1-element array), else None."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    return None


def _short_repr(value: Any) -> str:
    text = repr(value.decode() if isinstance(value, bytes) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160]


def _chunks(shape: tuple[int, ...]) -> Any:
    """Frame-wise chunks for 3-D and larger datasets (readers slice frames), else default."""
    if len(shape) >= 3 and int(np.prod(shape)) > 4096:
        return (1, *shape[1:]) if shape[0] > 1 else True
    return None


def _create_dataset(
    group: h5py.Group, spec: DatasetSpec, name: str, shape: tuple[int, ...]
) -> h5py.Dataset:
    if len(shape) != len(spec.dims):
        raise ValueError(f"{name}: expected {len(spec.dims)} dims {spec.dims}, got shape {shape}")
    ds = group.create_dataset(name, shape=shape, dtype=spec.dtype, chunks=_chunks(shape))
    ds.attrs["dims"] = ",".join(spec.dims)
    return ds


def _write_dataset(group: h5py.Group, spec: DatasetSpec, name: str, value: np.ndarray) -> None:
    arr = np.asarray(value)
    if arr.dtype != np.dtype(spec.dtype):
        arr = arr.astype(spec.dtype)
    if arr.ndim != len(spec.dims):
        raise ValueError(
            f"{name}: expected {len(spec.dims)} dims {spec.dims}, got shape {arr.shape}"
        )
    kwargs: dict[str, Any] = {}
    chunks = _chunks(arr.shape)
    if chunks is not None:
        kwargs["chunks"] = chunks
    ds = group.create_dataset(name, data=arr, **kwargs)
    ds.attrs["dims"] = ",".join(spec.dims)


class UtteranceWriter:
    """One ``/utterances/<prefix>`` group being written piece by piece (bounded memory).

    ``create`` makes a dataset of a known shape that ``write`` fills by frame slices; ``put``
    writes a whole array; ``attrs`` are set whenever known.
    """

    def __init__(self, group: h5py.Group, specs: tuple[DatasetSpec, ...]) -> None:
        self.group = group
        self.specs = specs

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Set (or replace) attributes of the group."""
        for key, value in attrs.items():
            self.group.attrs[key] = value

    def create(self, name: str, shape: tuple[int, ...]) -> None:
        """An empty dataset of the schema's dtype and ``shape`` (filled with :meth:`write`)."""
        _create_dataset(self.group, dataset_spec(self.specs, name), name, tuple(shape))

    def write(self, name: str, frames: slice, values: np.ndarray) -> None:
        """``dataset[frames] = values`` (cast to the schema's dtype)."""
        spec = dataset_spec(self.specs, name)
        self.group[name][frames] = np.asarray(values).astype(spec.dtype, copy=False)

    def put(self, name: str, values: np.ndarray) -> None:
        """Write a whole dataset."""
        _write_dataset(self.group, dataset_spec(self.specs, name), name, values)


class _Writer:
    """Common part of the prepared and reconstruction writers."""

    format: str
    version: int
    specs: tuple[DatasetSpec, ...]

    def __init__(self, path: Path, root_attrs: dict[str, Any], *, overwrite: bool = True) -> None:
        self.path = Path(path)
        self._root_attrs = root_attrs
        self._overwrite = overwrite
        self._stack = contextlib.ExitStack()
        self.file: h5py.File | None = None

    def __enter__(self) -> _Writer:
        tmp = self._stack.enter_context(
            atomic_path(self.path, overwrite=self._overwrite, kind=self.format)
        )
        self.file = self._stack.enter_context(h5_create(tmp))
        self.file.attrs.update(
            {
                "format": self.format,
                "format_version": self.version,
                "sirem_version": __version__,
                "created": now_iso(),
            }
        )
        for key, value in self._root_attrs.items():
            self.file.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
        self.file.create_group("utterances")
        return self

    def __exit__(self, *exc: object) -> bool | None:
        return self._stack.__exit__(*exc)

    def begin_utterance(self, prefix: str, attrs: dict[str, Any]) -> UtteranceWriter:
        """Start the ``/utterances/<prefix>`` group; its datasets are written piece by piece."""
        assert self.file is not None, "use the writer as a context manager"
        utterance = UtteranceWriter(self.file["utterances"].create_group(prefix), self.specs)
        utterance.set_attrs(attrs)
        return utterance

    def write_utterance(
        self, prefix: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> None:
        """Write one ``/utterances/<prefix>`` group with its attributes and datasets."""
        utterance = self.begin_utterance(prefix, attrs)
        for name, value in arrays.items():
            utterance.put(name, value)
        self.flush()

    def flush(self) -> None:
        """Flush the file to disk."""
        assert self.file is not None, "use the writer as a context manager"
        self.file.flush()


class PreparedWriter(_Writer):
    """Write a prepared file: ``with PreparedWriter(path, config=...) as w: w.write_utterance(...)``."""

    format = PREPARED_FORMAT
    version = PREPARED_VERSION
    specs = UTTERANCE_DATASETS

    def __init__(self, path: Path, *, config: dict[str, Any], overwrite: bool = True) -> None:
        super().__init__(path, {"config": config}, overwrite=overwrite)


class ReconWriter(_Writer):
    """Write a reconstruction file (``/utterances/<prefix>/recon`` plus timing attributes)."""

    format = RECON_FORMAT
    version = RECON_VERSION
    specs = RECON_DATASETS

    def __init__(
        self,
        path: Path,
        *,
        method: str,
        source: Sequence[Path | str],
        config: dict[str, Any],
        device: str = "cpu",
        nufft_backend: str = "finufft",
        overwrite: bool = True,
    ) -> None:
        super().__init__(
            path,
            {
                "method": method,
                "source": json.dumps([str(s) for s in source]),
                "config": config,
                "device": device,
                "nufft_backend": nufft_backend,
            },
            overwrite=overwrite,
        )

    def write_recon(
        self, prefix: str, recon: np.ndarray, *, wall_s: float, extra: dict[str, Any] | None = None
    ) -> None:
        """Write one utterance's (F, H, W) magnitude frames in [0, 1] and its timing.

        Raises:
            FormatError: the frames hold NaN or Inf (the output is then not written at all).
        """
        recon = np.asarray(recon, dtype=np.float32)
        if not np.all(np.isfinite(recon)):
            raise FormatError(
                f"{self.path}: the reconstruction of {prefix} holds NaN or Inf; nothing written"
            )
        n_frames = max(1, recon.shape[0])
        attrs = {"ms_per_frame": 1000.0 * wall_s / n_frames, "wall_s": float(wall_s)}
        self.write_utterance(prefix, {**attrs, **(extra or {})}, {"recon": recon})


@dataclass(frozen=True)
class UtteranceRef:
    """Where one utterance lives in a set of prepared files.

    Attributes:
        path, prefix, subject, split: as stored.
        n_frames: F.
        arms_per_frame: N (13 in version-1 files).
        version: the file's prepared format version.
        frame_rate_hz: frames per second.
        image_size: (H, W) of its images.
    """

    path: Path
    prefix: str
    subject: str
    split: str
    n_frames: int
    arms_per_frame: int = 13
    version: int = PREPARED_VERSION
    frame_rate_hz: float = float("nan")
    image_size: tuple[int, int] = (84, 84)


@dataclass(frozen=True)
class ReconRef:
    """One utterance of a reconstruction file.

    Attributes:
        path, prefix: where it is.
        n_frames: F.
        ms_per_frame: its ``ms_per_frame`` attribute (NaN when absent).
        attrs: all attributes of ``/utterances/<prefix>`` (strings decoded), e.g.
            ``frame_rate_hz``, ``wall_s``, ``ms_per_frame_cached`` (hdf5-format.md).
    """

    path: Path
    prefix: str
    n_frames: int
    ms_per_frame: float
    attrs: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def frame_rate_hz(self) -> float | None:
        """The ``frame_rate_hz`` attribute when recorded and positive, else None."""
        rate = self.attrs.get("frame_rate_hz")
        return float(rate) if rate is not None and float(rate) > 0 else None


def _attr(group: h5py.Group, key: str, path: Path) -> Any:
    if key not in group.attrs:
        raise FormatError(f"{path}: {group.name} lacks the attribute {key!r}")
    value = group.attrs[key]
    return value.decode() if isinstance(value, bytes) else value


def _check_group(group: h5py.Group, specs: tuple[DatasetSpec, ...], path: Path) -> None:
    sizes: dict[str, int] = {}
    for spec in specs:
        names = [spec.name]
        if spec.name == "embeddings/<encoder>":
            names = [f"embeddings/{k}" for k in group.get("embeddings", {})]
        for name in names:
            if name not in group:
                if spec.required:
                    raise FormatError(f"{path}: {group.name} lacks the dataset {name!r}")
                continue
            ds = group[name]
            if not isinstance(ds, h5py.Dataset):
                raise FormatError(f"{path}: {group.name}/{name} is not a dataset")
            if ds.dtype != np.dtype(spec.dtype):
                raise FormatError(
                    f"{path}: {group.name}/{name} has dtype {ds.dtype}, expected {spec.dtype}"
                )
            if ds.ndim != len(spec.dims):
                raise FormatError(
                    f"{path}: {group.name}/{name} has shape {ds.shape}, expected dims "
                    f"{','.join(spec.dims)}"
                )
            for letter, size in zip(spec.dims, ds.shape, strict=True):
                if letter.isdigit():
                    if size != int(letter):
                        raise FormatError(
                            f"{path}: {group.name}/{name} has shape {ds.shape}, expected "
                            f"{','.join(spec.dims)}"
                        )
                    continue
                if sizes.setdefault(letter, size) != size:
                    raise FormatError(
                        f"{path}: {group.name}/{name} has {letter} = {size}, but other datasets "
                        f"have {letter} = {sizes[letter]}"
                    )


class PreparedSet:
    """One or more prepared files read as one dataset.

    Utterances are addressed by prefix; a prefix present in two files is an error.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise InputError("no prepared file given")
        self.utterances: list[UtteranceRef] = []
        self.configs: dict[Path, dict[str, Any]] = {}
        seen: dict[str, Path] = {}
        for path in self.paths:
            with open_h5(path, expect=PREPARED_FORMAT) as f:
                try:
                    self.configs[path] = json.loads(f.attrs.get("config", "{}"))
                except json.JSONDecodeError:
                    raise FormatError(f"{path}: the config attribute is not JSON") from None
                version = int(f.attrs["format_version"])
                for prefix, group in f["utterances"].items():
                    _check_group(group, UTTERANCE_DATASETS, path)
                    if version >= 2:
                        for name in V2_REQUIRED:
                            if name not in group:
                                raise FormatError(
                                    f"{path}: {group.name} lacks the dataset {name!r} "
                                    f"(required in format version {version})"
                                )
                    if prefix in seen:
                        raise InputError(
                            f"{path}: utterance {prefix} is also in {seen[prefix]} "
                            "(give each utterance once)"
                        )
                    seen[prefix] = path
                    split = _attr(group, "split", path)
                    if split not in SPLITS:
                        raise FormatError(f"{path}: {prefix} has an unknown split {split!r}")
                    self.utterances.append(
                        UtteranceRef(
                            path=path,
                            prefix=prefix,
                            subject=str(_attr(group, "subject", path)),
                            split=split,
                            n_frames=int(group["kspace"].shape[0]),
                            arms_per_frame=int(group["kspace"].shape[2]),
                            version=version,
                            frame_rate_hz=float(group.attrs.get("frame_rate_hz", float("nan"))),
                            image_size=tuple(int(v) for v in group["smaps"].shape[-2:]),
                        )
                    )
        if not self.utterances:
            raise InputError(f"{self.paths[0]}: holds no utterances")

    def select(self, split: str = "all") -> list[UtteranceRef]:
        """Utterances of one split (``train``, ``val``, ``test``) or ``all``."""
        if split == "all":
            return list(self.utterances)
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: choose from {', '.join((*SPLITS, 'all'))}")
        chosen = [u for u in self.utterances if u.split == split]
        if not chosen:
            names = ", ".join(str(p) for p in self.paths)
            raise InputError(f"{names}: no utterances in the {split} split")
        return chosen

    def find(self, prefix: str) -> UtteranceRef:
        """The utterance with this prefix."""
        for u in self.utterances:
            if u.prefix == prefix:
                return u
        raise InputError(f"utterance {prefix} is not in {', '.join(str(p) for p in self.paths)}")

    @staticmethod
    def read(
        ref: UtteranceRef, names: Sequence[str] | None = None, frames: slice | None = None
    ) -> dict[str, Any]:
        """Read datasets (all when ``names`` is None) and attributes of one utterance.

        Args:
            ref: the utterance.
            names: datasets to read (None: all but the embedding cache).
            frames: read only these frames of the per-frame datasets (those whose first
                dimension is F); the others are read whole.

        Returns:
            A dict of arrays keyed by dataset name, plus ``"attrs"`` (dict). Optional datasets
            that are absent are simply missing from the dict.
        """
        with open_h5(ref.path, expect=PREPARED_FORMAT) as f:
            group = f["utterances"][ref.prefix]
            out: dict[str, Any] = {"attrs": {k: _decode(v) for k, v in group.attrs.items()}}
            wanted = names if names is not None else [k for k in group if k != "embeddings"]
            for name in wanted:
                if name in group:
                    per_frame = dataset_spec(UTTERANCE_DATASETS, name).dims[:1] == ("F",)
                    index = frames if frames is not None and per_frame else ()
                    out[name] = group[name][index]
            if "labels" in group:
                out["attrs"]["label_names"] = _decode(group["labels"].attrs.get("names", "{}"))
            return out

    @staticmethod
    def embeddings(ref: UtteranceRef, encoder: str) -> np.ndarray | None:
        """Cached embeddings of ``encoder`` for one utterance, or None."""
        with open_h5(ref.path, expect=PREPARED_FORMAT) as f:
            group = f["utterances"][ref.prefix]
            key = f"embeddings/{encoder}"
            return group[key][()] if key in group else None


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class ReconSet:
    """One reconstruction file, opened read-only and checked.

    Attributes:
        path: the file.
        attrs: its root attributes (strings decoded; ``config`` and ``source`` as stored, JSON
            text: see :attr:`config` and :attr:`source`).
        method: its ``method`` attribute.
        utterances: one :class:`ReconRef` per ``/utterances/<prefix>``, in the file's order.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open_h5(self.path, expect=RECON_FORMAT) as f:
            self.attrs = {k: _decode(v) for k, v in f.attrs.items()}
            self.method = str(self.attrs.get("method", self.path.stem))
            self.utterances: list[ReconRef] = []
            for prefix, group in f["utterances"].items():
                _check_group(group, RECON_DATASETS, self.path)
                self.utterances.append(
                    ReconRef(
                        path=self.path,
                        prefix=prefix,
                        n_frames=int(group["recon"].shape[0]),
                        ms_per_frame=float(group.attrs.get("ms_per_frame", float("nan"))),
                        attrs={k: _decode(v) for k, v in group.attrs.items()},
                    )
                )
        if not self.utterances:
            raise FormatError(f"{self.path}: holds no utterances")

    @property
    def config(self) -> dict[str, Any]:
        """The ``config`` attribute parsed (``{}`` when absent): every option of the command
        that wrote the file; ``sirem reconstruct`` adds ``checkpoint`` and ``train_subjects``.

        Raises:
            FormatError: the attribute is not a JSON object.
        """
        text = self.attrs.get("config")
        if text is None:
            return {}
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise FormatError(f"{self.path}: the config attribute is not JSON") from None
        if not isinstance(value, dict):
            raise FormatError(f"{self.path}: the config attribute is not a JSON object")
        return value

    @property
    def source(self) -> tuple[str, ...]:
        """The prepared files it was made from (its ``source`` attribute; ``()`` when absent or
        unreadable: only a hint where to find them)."""
        try:
            value = json.loads(self.attrs.get("source", "[]"))
        except (json.JSONDecodeError, TypeError):
            return ()
        return tuple(str(s) for s in value) if isinstance(value, list) else ()

    def read(self, prefix: str) -> np.ndarray:
        """The (F, H, W) float32 frames of one utterance."""
        with open_h5(self.path, expect=RECON_FORMAT) as f:
            if prefix not in f["utterances"]:
                raise InputError(f"{self.path}: has no utterance {prefix}")
            return f["utterances"][prefix]["recon"][()]

    def iter_frames(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (prefix, frames) for every utterance."""
        for ref in self.utterances:
            yield ref.prefix, self.read(ref.prefix)
