"""``sirem export``: one reconstructed utterance as a video with its sound (or a GIF / PNG strip)."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import cli_errors, emit, err
from sirem_cli.cli._options import JsonOutput, Quiet


def export(
    recon: Path = typer.Argument(..., metavar="RECON.h5", help="Reconstruction file."),
    out_file: Path = typer.Argument(..., metavar="OUT", help="Output .mp4 (or .gif / .png)."),
    prepared: list[Path] = typer.Option(
        None, "--prepared", help="Prepared file(s) holding the audio."
    ),
    utterance: str = typer.Option(
        ..., "--utterance", help="Utterance prefix, e.g. sub061_2drt_17_topic1."
    ),
    gif: bool = typer.Option(False, "--gif", help="Write an animated GIF (no sound)."),
    png_strip: bool = typer.Option(False, "--png-strip", help="Write a PNG strip of frames."),
    n_frames: int = typer.Option(8, "--frames", help="Frames in the PNG strip."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Export a reconstruction at its frame rate with the utterance's audio muxed in sync."""
    with cli_errors():
        from sirem_cli.api.evaluate import run_export
        from sirem_cli.errors import InputError

        if gif and png_strip:
            raise InputError("choose one of --gif and --png-strip")
        if n_frames < 1:
            raise InputError(f"--frames must be >= 1, got {n_frames}")
        kind = "gif" if gif else "png" if png_strip else "mp4"
        if kind != "png" and not prepared:
            raise InputError("--prepared P.h5 is needed for the frame rate and the audio")
        path = run_export(
            recon,
            prepared or [],
            utterance,
            out_file,
            kind=kind,
            n_frames=n_frames,
            overwrite=overwrite,
        )
    err.print(f"wrote {path}")
    emit("export", {"out": path, "kind": kind, "utterance": utterance})
