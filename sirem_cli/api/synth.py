"""``sirem synth``: write a synthetic corpus in the USC-75 / Annot-16 layout (the verb; the
phantom, articulation and speech are in :mod:`sirem_cli.synth`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from sirem_cli import __version__
from sirem_cli.io.atomic import atomic_path
from sirem_cli.io.output import check_folder_output, claim_outputs, write_folder_marker
from sirem_cli.synth.corpus import (
    BYTES_PER_SCAN_SECOND,
    SYNTH_FILES,
    SYNTH_MARKER,
    TASKS,
    ProgressFn,
    SpiralSampler,
    SynthConfig,
    SynthResult,
    readme,
    write_utterance,
)


def run_synth(
    out: Path,
    config: SynthConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> SynthResult:
    """Write a synthetic corpus to ``out`` (a new folder, created atomically).

    Args:
        out: output folder; must not exist (or be empty) unless ``overwrite``; never the
            current folder, one of its parents or the home folder.
        config: corpus options.
        overwrite: replace an existing ``out`` that ``sirem synth`` wrote (it holds
            :data:`SYNTH_MARKER` and no file besides the ones it lists).
        progress: called as ``progress(prefix, done, total)`` with arm counts.

    Returns:
        A :class:`SynthResult` listing the utterances written.
    """
    config.validate()
    out = Path(out)
    replace = check_folder_output(
        out, marker=SYNTH_MARKER, command="sirem synth", overwrite=overwrite, legacy=SYNTH_FILES
    )
    subjects = config.resolved_subjects()
    result = SynthResult(out=out, config=config)
    size = len(subjects) * config.utterances * (config.seconds + 0.1) * BYTES_PER_SCAN_SECOND
    with (
        claim_outputs([out], overwrite=replace, is_dir=True, expected_bytes=size),
        atomic_path(out, is_dir=True) as tmp,
    ):
        ops = SpiralSampler(config)
        for _s_index, subject in enumerate(subjects):
            for u in range(config.utterances):
                prefix = f"{subject}_2drt_{TASKS[u]}"
                seeds = np.random.SeedSequence([config.seed, int(subject[3:]), u]).spawn(4)
                summary = write_utterance(tmp, prefix, subject, seeds, config, ops, progress)
                result.utterances.append(summary)
        (tmp / "README.txt").write_text(readme(config, subjects))
        write_folder_marker(
            tmp, SYNTH_MARKER, {"sirem_version": __version__, "config": asdict(config)}
        )
    return result
