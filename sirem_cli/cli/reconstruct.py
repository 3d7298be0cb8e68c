"""``sirem reconstruct``: apply a trained SIREM checkpoint to prepared utterances."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import (
    cli_errors,
    emit,
    fail,
    notice,
    out,
    stage_progress,
    table,
    warn,
)
from sirem_cli.cli._options import JsonOutput, Quiet


def reconstruct(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="PREPARED... OUT.h5",
        help="Prepared file(s), then the reconstruction file to write.",
    ),
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint written by sirem train."),
    split: str = typer.Option("test", "--split", help="test | val | train | all."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    batch: int = typer.Option(64, "--batch", help="Frames per batch."),
    branch: str = typer.Option(
        "fused", "--branch", help="fused (SIREM) | mri (MRI branch alone) | audio (decoder alone)."
    ),
    hubert: str = typer.Option(None, "--hubert", help="HuBERT folder, for hubert checkpoints."),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast for HuBERT."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Neither read nor write the embedding cache (see README)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT.h5."),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Reconstruct with SIREM; embeddings missing from the user's cache are computed and cached."""
    if len(paths) < 2:
        raise fail("give at least one PREPARED file and the OUT.h5 to write")
    *inputs, out_file = paths
    with cli_errors():
        from sirem_cli.api.audio import ModelRunConfig
        from sirem_cli.api.reconstruct import run_reconstruct

        run = ModelRunConfig(hubert=hubert, bf16=bf16, device=device, cache=not no_cache)
        with stage_progress("reconstruct") as report:
            result = run_reconstruct(
                ckpt,
                inputs,
                out_file,
                run,
                split=split,
                batch=batch,
                branch=branch,
                overwrite=overwrite,
                progress=report,
            )
    if result.notice:
        notice(result.notice)
    for line in result.warnings:
        warn(line)
    out.print(
        table(
            f"sirem reconstruct ({result.method}) -> {result.out}",
            ["utterance", "frames", "ms/frame end to end", "ms/frame cached embeddings"],
            [[p, n, f"{e2e:.2f}", f"{c:.2f}"] for p, n, e2e, c in result.rows],
        )
    )
    emit(
        "reconstruct",
        {
            "out": result.out,
            "method": result.method,
            "backend": result.backend,
            "rows": [
                {"utterance": p, "frames": n, "ms_per_frame": e2e, "ms_per_frame_cached": c}
                for p, n, e2e, c in result.rows
            ],
        },
    )
