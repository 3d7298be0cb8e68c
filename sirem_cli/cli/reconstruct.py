"""``sirem reconstruct``: apply a trained SIREM checkpoint to prepared utterances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sirem_cli.cli._common import (
    cli_errors,
    emit,
    fail,
    given_options,
    notice,
    out,
    stage_progress,
    table,
    warn,
)
from sirem_cli.cli._options import JsonOutput, Quiet

PRIOR_PANEL = "Speech prior checkpoints (sirem train --model prior)"
#: Options that only a speech-prior checkpoint takes, and only a paper-model one.
PRIOR_ONLY = (
    "mu", "lam", "lam_spatial", "motion", "uncertainty", "iters", "weights_from", "window",
    "overlap",
)  # fmt: skip
FUSION_ONLY = ("batch", "branch", "hubert", "bf16", "no_cache")


def reconstruct(
    ctx: typer.Context,
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
    mu: float = typer.Option(
        None, "--mu", rich_help_panel=PRIOR_PANEL, help="Prior weight (default: the checkpoint's)."
    ),
    lam: float = typer.Option(
        None,
        "--lam",
        rich_help_panel=PRIOR_PANEL,
        help="Temporal TV weight, relative (default: the checkpoint's).",
    ),
    lam_spatial: float = typer.Option(
        None,
        "--lam-spatial",
        rich_help_panel=PRIOR_PANEL,
        help="Spatial TV weight, relative (default: the checkpoint's).",
    ),
    motion: float = typer.Option(
        None,
        "--motion",
        rich_help_panel=PRIOR_PANEL,
        help="Temporal TV relaxation where the prior moves; 0: off (default: the checkpoint's).",
    ),
    uncertainty: float = typer.Option(
        None,
        "--uncertainty",
        rich_help_panel=PRIOR_PANEL,
        help="Temporal TV relaxation where the prior is unsure; 0: off (default: the "
        "checkpoint's).",
    ),
    iters: int = typer.Option(
        None, "--iters", rich_help_panel=PRIOR_PANEL, help="Iterations (default: the checkpoint's)."
    ),
    weights_from: Path = typer.Option(
        None,
        "--weights-from",
        rich_help_panel=PRIOR_PANEL,
        help="Use the tuned solve weights of this other speech-prior checkpoint (an ablation "
        "at the full model's weights); the options above still override.",
    ),
    window: int = typer.Option(
        512, "--window", rich_help_panel=PRIOR_PANEL, help="Frames solved at once (memory bound)."
    ),
    overlap: int = typer.Option(
        32, "--overlap", rich_help_panel=PRIOR_PANEL, help="Frames shared by consecutive windows."
    ),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Reconstruct with a checkpoint of sirem train: the paper's SIREM (embeddings missing from
    the user's cache are computed and cached) or the speech prior (a data-consistent solve)."""
    if len(paths) < 2:
        raise fail("give at least one PREPARED file and the OUT.h5 to write")
    *inputs, out_file = paths
    with cli_errors():
        from sirem_cli.training.checkpoint import checkpoint_kind
        from sirem_cli.training.prior import PRIOR_CHECKPOINT_FORMAT

        kind = checkpoint_kind(ckpt)
    if kind == PRIOR_CHECKPOINT_FORMAT:
        wrong = given_options(ctx, FUSION_ONLY)
        if wrong:
            raise fail(f"{ckpt}: a speech-prior checkpoint does not take {', '.join(wrong)}")
        _reconstruct_prior(
            ckpt,
            inputs,
            out_file,
            overwrite,
            split=split,
            device=device,
            mu=mu,
            lam_time=lam,
            lam_spatial=lam_spatial,
            motion=motion,
            uncertainty=uncertainty,
            iters=iters,
            weights_from=weights_from,
            window=window,
            overlap=overlap,
        )
        return
    wrong = given_options(ctx, PRIOR_ONLY)
    if wrong:
        raise fail(f"{', '.join(wrong)}: options of speech-prior checkpoints; {ckpt} is not one")
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


def _reconstruct_prior(
    ckpt: Path, inputs: list[Path], out_file: Path, overwrite: bool, **solve: Any
) -> None:
    """``sirem reconstruct`` with a speech-prior checkpoint; ``solve`` holds the keyword
    options of :func:`~sirem_cli.api.prior.run_reconstruct_prior` (None: the checkpoint's)."""
    with cli_errors():
        from sirem_cli.api.prior import run_reconstruct_prior

        with stage_progress("reconstruct") as report:
            result = run_reconstruct_prior(
                ckpt, inputs, out_file, overwrite=overwrite, progress=report, **solve
            )
    if result.notice:
        notice(result.notice)
    for line in result.warnings:
        warn(line)
    w = result.weights
    out.print(
        table(
            f"sirem reconstruct ({result.method}: mu {w.mu:g}, lam_t {w.lam_time:.4g}, "
            f"lam_s {w.lam_spatial:.4g}, motion {w.motion:g}, uncertainty {w.uncertainty:g}, "
            f"{w.iters} iterations) -> "
            f"{result.out}",
            ["utterance", "frames", "ms/frame", "prior network ms/frame"],
            [[p, n, f"{ms:.2f}", f"{net:.2f}"] for p, n, ms, net in result.rows],
        )
    )
    emit(
        "reconstruct",
        {
            "out": result.out,
            "method": result.method,
            "backend": result.backend,
            "mu": w.mu,
            "lam_time": w.lam_time,
            "lam_spatial": w.lam_spatial,
            "motion": w.motion,
            "uncertainty": w.uncertainty,
            "iters": w.iters,
            "rows": [
                {"utterance": p, "frames": n, "ms_per_frame": ms, "prior_ms_per_frame": net}
                for p, n, ms, net in result.rows
            ],
        },
    )
