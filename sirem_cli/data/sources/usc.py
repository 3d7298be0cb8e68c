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
        from sirem_cli.io.ismrmrd import read_raw
        from sirem_cli.io.usc import read_recon, read_wav

        scan = read_raw(entry.files["raw"])
        recon = read_recon(entry.files["recon"])  # (R, n, n) h5py order: recon[k].T is upright
        audio, rate = read_wav(entry.files["audio"])
        track = entry.files.get("track")
        truth = entry.files.get("truth")
        return RawUtterance(
            entry=entry,
            data=scan.data,
            traj=scan.traj[..., :2],
            dcf=scan.traj[..., 2],
            interleaf=scan.interleaf,
            tr_s=scan.header.tr_ms * 1e-3,
            reference=np.maximum(np.swapaxes(recon, -1, -2), 0),
            reference_arms=RECON_ARMS,
            audio=audio,
            audio_rate_hz=rate,
            contours_at=None if track is None else _track_reader(Path(track), recon.shape[0]),
            contour_size=(84, 84),
            truth_at=None if truth is None else _truth_reader(Path(truth)),
        )

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


def _truth_reader(path: Path) -> Any:
    """truth_at(indices) for a ``sirem synth`` truth file."""

    def truth_at(indices: np.ndarray) -> np.ndarray:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if "truth" not in f:
                    raise FormatError(f"{path}: lacks the dataset 'truth'")
                if len(indices) and int(np.max(indices)) >= f["truth"].shape[0]:
                    raise FormatError(
                        f"{path}: holds {f['truth'].shape[0]} truth frames, frame "
                        f"{int(np.max(indices))} is needed"
                    )
                unique, inverse = np.unique(np.asarray(indices), return_inverse=True)
                return f["truth"][unique][inverse]
        except OSError as exc:
            raise FormatError(
                f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})"
            ) from None

    return truth_at
