"""``sirem prepare``: a corpus folder -> one prepared HDF5 file (the verb; the steps are in
:mod:`sirem_cli.data.prepare`, the layouts in :mod:`sirem_cli.data.sources`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sirem_cli.data.prepare import PrepareConfig, UtteranceReport, prepare_utterance
from sirem_cli.data.splits import assign_splits, parse_splits
from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.estimates import prepared_bytes
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedWriter
from sirem_cli.io.schema import PREPARED_FORMAT

ProgressFn = Callable[[str, int, int], None]


@dataclass
class PrepareResult:
    """What :func:`prepare` wrote."""

    out: Path
    utterances: list[UtteranceReport]
    skipped: list[str]
    notes: list[str]
    wall_s: float


def run_prepare(
    root: Path,
    out: Path,
    config: PrepareConfig,
    *,
    annot: Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> PrepareResult:
    """Prepare every utterance found under ``root`` (and ``annot``) into ``out``.

    Args:
        root: a corpus folder (a USC-75 tree, a ``sirem synth`` folder or its ``usc75/``, a
            flat folder; ``config.layout`` names the layout or ``auto`` detects it).
        out: the prepared HDF5 file to write.
        config: options.
        annot: Annot-16 tree when it is not under ``root``.
        overwrite: replace an existing ``out``.
        progress: ``progress(prefix, index, total)`` before each utterance and at the end.

    Raises:
        InputError, FormatError, OutputError: one line naming the file and the problem.
    """
    from sirem_cli.data.sources import open_source

    t0 = time.perf_counter()
    config.validate()
    root = Path(root)
    check_output(Path(out), inputs=[root, annot], overwrite=overwrite, kind=PREPARED_FORMAT)
    source = open_source(root, layout=config.layout, annot=annot)
    found = source.discover()
    if not any("raw" in e.files for e in found):
        raise InputError(f"{root}: no raw k-space files found ({source.name} layout)")
    all_subjects = sorted({u.subject for u in found})
    split_of, split_note = assign_splits(
        all_subjects, seed=config.split_seed, explicit=parse_splits(config.splits) or None
    )
    if config.subjects:
        missing = [s for s in config.subjects if s not in all_subjects]
        if missing:
            raise InputError(f"{root}: no utterances of subject {missing[0]}")
        found = [u for u in found if u.subject in config.subjects]

    notes = [split_note]
    skipped: list[str] = []
    usable = []
    for entry in found:
        lacking = entry.missing()
        if lacking:
            msg = f"{entry.prefix}: no {', '.join(lacking)} file; skipped"
            if config.strict:
                raise InputError(f"{root}: {msg.replace('; skipped', '')} (--strict)")
            skipped.append(msg)
            continue
        usable.append(entry)
    if not usable:
        raise InputError(f"{root}: no utterance has raw, recon and audio files")

    reports: list[UtteranceReport] = []
    cfg_json = {**asdict(config), **source.describe()}
    inputs = [root, annot, *(path for e in usable for path in e.files.values())]
    with (
        claim_outputs(
            [out],
            inputs=inputs,
            overwrite=overwrite,
            expected_bytes=prepared_bytes(usable, config.arms_per_frame),
            kind=PREPARED_FORMAT,
        ),
        PreparedWriter(Path(out), config=cfg_json, overwrite=overwrite) as writer,
    ):
        for i, entry in enumerate(usable):
            if progress is not None:
                progress(entry.prefix, i, len(usable))
            try:
                with source.read(entry) as utt:
                    report = prepare_utterance(utt, config, writer, split=split_of[entry.subject])
            except ShapeError as exc:  # a library check (NaN coil images, ...): name the files
                raise FormatError(
                    f"{entry.files.get('raw', root)}: utterance {entry.prefix}: {exc}"
                ) from None
            writer.flush()
            reports.append(report)
        if progress is not None:
            progress("", len(usable), len(usable))
    n_plain = sum(not r.annotated for r in reports)
    if n_plain:
        notes.append(f"{n_plain} utterance(s) without annotations: prepared without eba/labels")
    return PrepareResult(Path(out), reports, skipped, notes, time.perf_counter() - t0)


def summarize(result: PrepareResult) -> list[list[Any]]:
    """Rows of the closing table."""
    return [
        [
            r.prefix,
            r.split,
            r.frames,
            r.arms_per_frame,
            f"{r.seconds:.1f}",
            "yes" if r.annotated else "no",
            f"{r.orientation} ({r.orientation_corr:.2f})",
            "; ".join(r.warnings) or "-",
        ]
        for r in result.utterances
    ]
