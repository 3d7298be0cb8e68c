"""Corpus sources: where a speech-rtMRI corpus keeps its files, and how to read one utterance.

``sirem prepare`` never knows a corpus layout. It asks a :class:`CorpusSource` for the
utterances under a root (:meth:`CorpusSource.discover`) and for one utterance's raw
acquisitions, reference frames, audio and, where the corpus has them, annotations and
synthetic ground truth (:meth:`CorpusSource.read`, a :class:`RawUtterance`). Everything else
(interleaves, arms per frame, rates) comes from the data.

Layouts (:data:`LAYOUTS`, ``sirem prepare --layout``):

* ``usc``: the USC 75-speaker tree with the 75-Speaker Annot-16 annotations, and the corpus
  ``sirem synth`` writes in the same layout (plus its ``truth/``);
  :mod:`sirem_cli.data.sources.usc`.
* ``flat``: one folder of ``<utterance>_raw.h5`` (ISMRMRD), ``<utterance>_recon.h5`` and
  ``<utterance>_audio.wav``, no annotations, any utterance names (another lab's export);
  :mod:`sirem_cli.data.sources.flat`.

``auto`` (the default) asks each layout in turn whether a root is its own.

Adding a layout is one module with a :class:`CorpusSource` subclass and one line in
:data:`LAYOUTS`. This package's top level imports only the standard library (the CLI reads :data:`LAYOUTS`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sirem_cli.errors import InputError

if TYPE_CHECKING:
    import numpy as np

#: Layout name -> ``"module:Class"`` of its :class:`CorpusSource`, in detection order.
LAYOUTS: dict[str, str] = {
    "usc": "sirem_cli.data.sources.usc:UscSource",
    "flat": "sirem_cli.data.sources.flat:FlatSource",
}

#: File kinds every utterance needs; an utterance lacking one is skipped (or refused with
#: ``--strict``).
REQUIRED_KINDS: tuple[str, ...] = ("raw", "recon", "audio")


@dataclass
class UtteranceEntry:
    """One utterance found by :meth:`CorpusSource.discover`.

    Attributes:
        prefix: the utterance's name, unique in the corpus (the group name in prepared files).
        subject: the speaker id (splits are subject-independent).
        files: kind (``raw``, ``recon``, ``audio``, ``track``, ``textgrid``, ``truth``, ...)
            -> path of the files found.
    """

    prefix: str
    subject: str
    files: dict[str, Path] = field(default_factory=dict)

    def missing(self, kinds: Sequence[str] = REQUIRED_KINDS) -> list[str]:
        """The kinds of ``kinds`` that were not found."""
        return [k for k in kinds if k not in self.files]


class AcquisitionReader(Protocol):
    """Blockwise access to an utterance's raw acquisitions (:class:`sirem_cli.io.ismrmrd.RawReader`).

    Attributes:
        n_acquisitions: ns, one spiral arm per TR.
    """

    n_acquisitions: int

    def read(
        self, start: int, stop: int, *, data: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """data (n, C, S) complex64 (None without ``data``), traj (n, S, 3) (kx, ky in
        cycles/pixel, raw image axes; dcf), interleaf (n,), repetition (n,)."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


@dataclass
class RawUtterance:
    """What ``prepare`` reads of one utterance, lazily (bounded memory on long scans).

    Attributes:
        entry: where it came from.
        raw: the acquisitions (call :meth:`close` when done).
        tr_s: repetition time (one arm) in seconds.
        n_reference: R, the number of reference frames.
        reference_at: ``reference_at(indices)`` -> (n, H, W) float32 upright reference frames
            (non-negative, any scale).
        reference_arms: acquisitions per reference frame (2 in USC: ``/recon`` frame k holds
            acquisitions 2k and 2k + 1).
        audio: (L,) float32 waveform, sample 0 at the start of acquisition 0.
        audio_rate_hz: its sample rate.
        contours_at: ``contours_at(indices)`` -> per requested reference frame, articulator
            name -> (P, 2) polyline in upright pixel coordinates (x right, y down) of a
            ``contour_size`` grid; None without annotations.
        contour_size: (W, H) of the contours' pixel grid.
        truth_at: ``truth_at(indices)`` -> (n, H, W) float synthetic ground truth at those
            reference frames; None for real corpora.
    """

    entry: UtteranceEntry
    raw: AcquisitionReader
    tr_s: float
    n_reference: int
    reference_at: Callable[[np.ndarray], np.ndarray]
    reference_arms: int
    audio: np.ndarray
    audio_rate_hz: int
    contours_at: Callable[[np.ndarray], list[dict[str, np.ndarray]]] | None = None
    contour_size: tuple[int, int] = (84, 84)
    truth_at: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def n_acquisitions(self) -> int:
        """ns."""
        return int(self.raw.n_acquisitions)

    def path(self, kind: str) -> Path | str:
        """The file of ``kind`` (for messages), or the prefix when there is none."""
        return self.entry.files.get(kind, self.entry.prefix)

    def close(self) -> None:
        """Close the raw file."""
        self.raw.close()

    def __enter__(self) -> RawUtterance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CorpusSource:
    """A corpus layout rooted at one folder.

    Args:
        root: the corpus folder.
        annot: a separate annotation tree, for layouts that have one.
    """

    #: The layout's name in :data:`LAYOUTS`.
    name: ClassVar[str] = "base"

    def __init__(self, root: Path, annot: Path | None = None) -> None:
        self.root = Path(root)
        self.annot = None if annot is None else Path(annot)
        for folder in (self.root, self.annot):
            if folder is None:
                continue
            if not folder.exists():
                raise InputError(f"{folder}: no such folder")
            if not folder.is_dir():
                raise InputError(f"{folder}: is a file, not a folder")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout (for ``--layout auto``)."""
        raise NotImplementedError

    def discover(self) -> list[UtteranceEntry]:
        """Every utterance under the root, sorted by prefix."""
        raise NotImplementedError

    def read(self, entry: UtteranceEntry) -> RawUtterance:
        """Read one utterance (its required files must exist)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What was read, for the prepared file's config record."""
        return {"layout": self.name, "root": str(self.root), "annot": _str(self.annot)}


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def source_class(layout: str) -> type[CorpusSource]:
    """The :class:`CorpusSource` class of a layout name."""
    target = LAYOUTS.get(layout)
    if target is None:
        raise InputError(f"--layout must be auto or one of {', '.join(LAYOUTS)}, got {layout!r}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def open_source(root: Path, *, layout: str = "auto", annot: Path | None = None) -> CorpusSource:
    """The source of ``root``: the named layout, or the first whose ``detect`` accepts it."""
    root = Path(root)
    if layout != "auto":
        return source_class(layout)(root, annot)
    if not root.is_dir():
        raise InputError(
            f"{root}: no such folder" if not root.exists() else f"{root}: not a folder"
        )
    for name in LAYOUTS:
        cls = source_class(name)
        if cls.detect(root):
            return cls(root, annot)
    raise InputError(
        f"{root}: no *_raw.h5 files found in any known layout ({', '.join(LAYOUTS)}: USC "
        "subNNN_2drt_..._raw.h5 files anywhere below, or <name>_raw.h5 files in the folder)"
    )
