"""The USC 75-speaker layout with Annot-16 annotations (and ``sirem synth`` corpora).

Files are found by a recursive search on their suffixes and joined on the utterance prefix
``subNNN_2drt_<SS>_<task>[_rK]`` (:func:`sirem_cli.io.usc.discover`, data-formats.md 1-2):
``<prefix>_raw.h5`` (ISMRMRD spiral k-space), ``<prefix>_recon.h5`` (``/recon``, one frame per
2 acquisitions, stored transposed), ``<prefix>_audio.wav`` and, from Annot-16,
``<prefix>_track.mat`` (contours of every ``/recon`` frame). A ``sirem synth`` folder holds
``usc75/``, ``annot16/`` and ``truth/<prefix>_truth.h5`` (the ground truth at every ``/recon``
frame), found here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.data.sources import CorpusSource, RawUtterance, UtteranceEntry
from sirem_cli.errors import FormatError
from sirem_cli.io.usc import PREFIX_RE, SUFFIXES

#: Acquisitions per ``/recon`` frame (data-formats.md 1.5).
RECON_ARMS = 2


class UscSource(CorpusSource):
    """USC-75 + Annot-16 (``annot`` may name the Annot-16 tree when it is elsewhere)."""

    name = "usc"

    def __init__(self, root: Path, annot: Path | None = None) -> None:
        super().__init__(root, annot)
        self.annot_dirs = [] if self.annot is None else [self.annot]
        sibling = self.root.parent / "annot16"
        if self.annot is None and self.root.name == "usc75" and sibling.is_dir():
            self.annot_dirs.append(sibling)  # the usc75/ of a synth folder: its annot16/ too
        truth = self.root / "truth"
        self.truth_dir = truth if truth.is_dir() else self.root.parent / "truth"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """A file named ``<USC prefix><known suffix>`` anywhere below ``root``."""
        for path in Path(root).rglob("*"):
            name = path.name
            for suffix in SUFFIXES.values():
                if name.lower().endswith(suffix.lower()) and PREFIX_RE.match(name[: -len(suffix)]):
                    return True
        return False

    def discover(self) -> list[UtteranceEntry]:
        from sirem_cli.io.usc import discover

        found = discover(self.root, annot=self.annot_dirs[0] if self.annot_dirs else None)
        entries = []
        for files in found:
            paths = {
                kind: getattr(files, kind)
                for kind in SUFFIXES
                if getattr(files, kind, None) is not None
            }
            if "truth" not in paths and self.truth_dir.is_dir():
                candidate = self.truth_dir / f"{files.prefix}_truth.h5"
                if candidate.exists():
                    paths["truth"] = candidate
            entries.append(UtteranceEntry(files.prefix, files.subject, paths))
        return entries

    def read(self, entry: UtteranceEntry) -> RawUtterance:
        return read_usc_files(entry, RECON_ARMS)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "annot": [str(a) for a in self.annot_dirs]}


def _track_reader(path: Path, n_reference: int) -> Any:
    """contours_at(indices) for an Annot-16 track of ``n_reference`` records (read on first use,
    after the scan and the references have been checked)."""

    def contours_at(indices: np.ndarray) -> list[dict[str, np.ndarray]]:
        from sirem_cli.io.annot16 import frame_articulators, read_track

        track = read_track(path)
        if len(track) != n_reference:
            raise FormatError(
                f"{path}: {len(track)} track records, but /recon has {n_reference} frames"
            )
        return [frame_articulators(track[int(k)], width=84, height=84) for k in indices]

    return contours_at


def read_usc_files(entry: UtteranceEntry, reference_arms: int) -> RawUtterance:
    """Open an utterance stored as USC stores it: ISMRMRD raw, ``/recon`` (transposed), wav,
    optional Annot-16 track and ``/truth`` (shared by the layouts that use these files)."""
    from sirem_cli.io.ismrmrd import RawReader
    from sirem_cli.io.usc import frame_count, read_frames_at, read_wav

    recon_path = entry.files["recon"]
    n_reference = frame_count(recon_path, "recon")
    audio, rate = read_wav(entry.files["audio"])
    raw = RawReader(entry.files["raw"])
    track = entry.files.get("track")
    truth = entry.files.get("truth")

    def reference_at(indices: np.ndarray) -> np.ndarray:
        return np.maximum(read_frames_at(recon_path, "recon", indices, transpose=True), 0)

    def truth_at(indices: np.ndarray) -> np.ndarray:
        return read_frames_at(truth, "truth", indices, transpose=False)

    return RawUtterance(
        entry=entry,
        raw=raw,
        tr_s=raw.header.tr_ms * 1e-3,
        n_reference=n_reference,
        reference_at=reference_at,
        reference_arms=reference_arms,
        audio=audio,
        audio_rate_hz=rate,
        contours_at=None if track is None else _track_reader(Path(track), n_reference),
        contour_size=(84, 84),
        truth_at=None if truth is None else truth_at,
    )
