"""``sirem prepare``: the real (or synthetic) corpus -> one prepared HDF5 file."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import cli_errors, emit, notice, out, stage_progress, table, warn
from sirem_cli.cli._options import JsonOutput, Quiet
from sirem_cli.data.sources import LAYOUTS


def prepare(
    root: Path = typer.Argument(
        ...,
        help="Corpus folder: a USC-75 tree, a `sirem synth` folder or its usc75/, a flat folder.",
    ),
    out_file: Path = typer.Argument(..., metavar="OUT.h5", help="Prepared HDF5 file to write."),
    annot: Path = typer.Option(None, "--annot", help="Annot-16 tree, if not under ROOT."),
    subject: list[str] = typer.Option(
        None, "--subject", help="Prepare only this subject (repeatable), e.g. for make -j."
    ),
    skip_frames: int = typer.Option(
        10,
        "--skip-frames",
        help=(
            "Leading rotations of all interleaves to drop (13-arm frames in USC, 78 ms each): "
            "the approach to steady state is a time, so this counts the same whatever "
            "--arms-per-frame is."
        ),
    ),
    arms_per_frame: int = typer.Option(
        None,
        "--arms-per-frame",
        help=(
            "Arms (acquisitions) per frame N, 1..I (default: all I interleaves, 13 in USC: "
            "12.8 frames/s). N = 2 gives USC's own 83 frames/s; the interleaves then rotate "
            "frame to frame."
        ),
    ),
    layout: str = typer.Option(
        "auto",
        "--layout",
        help=f"Corpus layout: auto, {', '.join(LAYOUTS)} (see docs/hdf5-format.md, 'Corpus layouts').",
    ),
    audio_context: float = typer.Option(
        0.25, "--audio-context", help="Half-width of each frame's audio window (s, at most 5)."
    ),
    audio_tolerance: float = typer.Option(
        1.0,
        "--audio-tolerance",
        help="Largest accepted difference between the audio's and the scan's duration (s).",
    ),
    kspace_norm: str = typer.Option(
        "utterance", "--kspace-norm", help="Normalize k-space per utterance or per frame."
    ),
    coil_window: int = typer.Option(
        5, "--coil-window", help="Walsh coil-map smoothing window in pixels (USC's code: 20)."
    ),
    eba_articulators: str = typer.Option(
        "tongue,upper_lip,lower_lip,velum",
        "--eba-articulators",
        help="Comma-separated articulators making up the explained-by-audio map.",
    ),
    splits: list[str] = typer.Option(
        None, "--splits", help="Explicit splits, e.g. 'train=sub009,sub013 val=sub022 test=sub023'."
    ),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the default subject split."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an utterance with missing files."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT.h5."),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Turn raw spiral k-space, references, audio and annotations into sirem's prepared format.

    Frames of N arms (arms ordered by interleaf, named per frame), the interleaf table in
    radians in the upright image axes, normalized k-space, Walsh coil maps, the time-averaged
    image, aligned references, 16 kHz audio windows, explained-by-audio maps and
    subject-independent splits; see docs/hdf5-format.md.
    """
    with cli_errors():
        from sirem_cli.api.prepare import run_prepare, summarize
        from sirem_cli.data.prepare import PrepareConfig

        config = PrepareConfig(
            skip_frames=skip_frames,
            arms_per_frame=arms_per_frame,
            layout=layout,
            audio_context_s=audio_context,
            audio_tolerance_s=audio_tolerance,
            kspace_norm=kspace_norm,
            coil_window=coil_window,
            eba_articulators=tuple(a.strip() for a in eba_articulators.split(",") if a.strip()),
            splits=tuple(splits or ()),
            split_seed=split_seed,
            subjects=tuple(subject or ()),
            strict=strict,
        )
        config.validate()
        with stage_progress("prepare") as report:
            result = run_prepare(
                root, out_file, config, annot=annot, overwrite=overwrite, progress=report
            )
    for line in result.skipped:
        warn(line)
    out.print(
        table(
            f"sirem prepare -> {result.out}",
            [
                "utterance",
                "split",
                "frames",
                "arms",
                "scan s",
                "annotated",
                "orientation",
                "warnings",
            ],
            summarize(result),
        )
    )
    total_frames = sum(r.frames for r in result.utterances)
    total_s = sum(r.seconds for r in result.utterances)
    out.print(
        f"{len(result.utterances)} utterances, {total_frames} frames, {total_s:.1f} s of scan, "
        f"{len(result.skipped)} skipped, {result.wall_s:.1f} s"
    )
    for note in result.notes:
        notice(note)
    emit(
        "prepare",
        {
            "out": result.out,
            "utterances": result.utterances,
            "skipped": result.skipped,
            "frames": total_frames,
            "scan_seconds": total_s,
            "wall_s": result.wall_s,
        },
    )
