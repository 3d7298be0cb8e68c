"""``sirem synth``: write a synthetic corpus in the real USC-75 / Annot-16 layout."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import cli_errors, emit, out, progress, table
from sirem_cli.cli._options import JsonOutput, Quiet


def synth(
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output folder (must not exist)."),
    subjects: int = typer.Option(
        4, "--subjects", help="Number of speakers (Annot-16 ids, in order)."
    ),
    subject: list[str] = typer.Option(
        None, "--subject", help="Explicit speaker id (repeatable), e.g. sub061."
    ),
    utterances: int = typer.Option(2, "--utterances", help="Utterances per speaker."),
    seconds: float = typer.Option(6.0, "--seconds", help="Scan length of each utterance (s)."),
    noise: float = typer.Option(30.0, "--noise", metavar="SNR", help="k-space SNR in dB."),
    seed: int = typer.Option(0, "--seed", help="Master seed (the corpus is deterministic)."),
    transient: bool = typer.Option(
        True, "--transient/--no-transient", help="Bright start-up frames as in real scans."
    ),
    oversample: int = typer.Option(
        1, "--oversample", help="Render the phantom on a finer grid before sampling (1-4)."
    ),
    anatomy_spread: float = typer.Option(
        1.0,
        "--anatomy-spread",
        help="Speaker anatomy variation: 1 = each speaker's own, 0 = one shared vocal tract.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing OUT that sirem synth wrote (nothing else)."
    ),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Write a synthetic speech-rtMRI corpus with ground truth (the demo and test data).

    OUT/usc75 holds raw spiral k-space (ISMRMRD), /recon references and 20 kHz audio;
    OUT/annot16 holds contours and TextGrids; OUT/truth the true images, coil maps,
    articulatory parameters and label masks.
    """
    with cli_errors():
        from sirem_cli.api.synth import run_synth
        from sirem_cli.synth.corpus import SynthConfig

        config = SynthConfig(
            subjects=subjects,
            utterances=utterances,
            seconds=seconds,
            snr_db=noise,
            seed=seed,
            transient=transient,
            oversample=oversample,
            subject_ids=tuple(subject) if subject else None,
            anatomy_spread=anatomy_spread,
        )
        config.validate()
        with progress() as bar:
            tasks: dict[str, int] = {}

            def report(prefix: str, done: int, total: int) -> None:
                if prefix not in tasks:
                    tasks[prefix] = bar.add_task(prefix, total=total, info="")
                bar.update(tasks[prefix], completed=done)

            result = run_synth(out_dir, config, overwrite=overwrite, progress=report)
    rows = [
        [
            u.prefix,
            u.subject,
            u.n_acquisitions,
            u.n_frames_2arm,
            f"{u.seconds:.1f}",
            f"{u.wall_s:.1f}",
        ]
        for u in result.utterances
    ]
    out.print(
        table(
            f"sirem synth -> {result.out}",
            ["utterance", "subject", "arms", "2-arm frames", "scan s", "wall s"],
            rows,
        )
    )
    emit(
        "synth",
        {
            "out": result.out,
            "config": result.config,
            "utterances": result.utterances,
        },
    )
