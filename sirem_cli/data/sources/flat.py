"""A flat folder of utterances: ``<utterance>_raw.h5``, ``_recon.h5``, ``_audio.wav``.

The simplest export another lab can make of its speech rtMRI data, with any utterance names
and no annotations (so no explained-by-audio maps):

* ``<utterance>_raw.h5``: ISMRMRD spiral k-space, one acquisition per arm, with the
  trajectory (kx, ky in cycles/pixel, density compensation) and the interleaf index in
  ``kspace_encode_step_1`` (:mod:`sirem_cli.io.ismrmrd`);
* ``<utterance>_recon.h5``: reference frames in ``/recon`` stored as USC stores them
  (``/recon[k].T`` upright), each made of ``arms_per_frame`` consecutive acquisitions (the
  dataset attribute; 2 when absent);
* ``<utterance>_audio.wav``: the synchronized audio, sample 0 at the first acquisition;
* optionally ``<utterance>_truth.h5`` (``/truth``, one upright frame per reference frame).

The speaker of an utterance is its name up to the first ``_`` (``spk03_take2`` -> ``spk03``),
so subject-independent splits work when names start with the speaker.
"""

from __future__ import annotations

from pathlib import Path

from sirem_cli.data.sources import CorpusSource, RawUtterance, UtteranceEntry

SUFFIXES = {"raw": "_raw.h5", "recon": "_recon.h5", "audio": "_audio.wav", "truth": "_truth.h5"}


class FlatSource(CorpusSource):
    """Utterance files side by side in one folder."""

    name = "flat"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any(p.is_file() for p in Path(root).glob("*_raw.h5"))

    def discover(self) -> list[UtteranceEntry]:
        entries: dict[str, UtteranceEntry] = {}
        for path in sorted(self.root.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            for kind, suffix in SUFFIXES.items():
                if path.name.endswith(suffix) and len(path.name) > len(suffix):
                    prefix = path.name[: -len(suffix)]
                    entry = entries.setdefault(
                        prefix, UtteranceEntry(prefix, prefix.split("_", 1)[0])
                    )
                    entry.files[kind] = path
        return [entries[k] for k in sorted(entries)]

    def read(self, entry: UtteranceEntry) -> RawUtterance:
        from sirem_cli.data.sources.usc import read_usc_files
        from sirem_cli.io.usc import recon_arms_per_frame

        return read_usc_files(entry, recon_arms_per_frame(entry.files["recon"]))
