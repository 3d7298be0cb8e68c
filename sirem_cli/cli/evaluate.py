"""``sirem evaluate``: the paper's metrics for reconstruction files, as tables, JSON, CSV, figures."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import cli_errors, emit, err, notice, out, stage_progress, warn
from sirem_cli.cli._options import JsonOutput, Quiet
from sirem_cli.metrics.registry import METRIC_NAMES, parse_metrics


def check_metrics(value: str) -> str:
    """Reject an unknown metric name while parsing the command line."""
    from sirem_cli.errors import InputError

    try:
        parse_metrics(value)
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def evaluate(
    recons: list[Path] = typer.Argument(..., metavar="RECON.h5...", help="Reconstruction file(s)."),
    target: list[str] = typer.Option(
        ["reference"], "--target", help="reference | truth | OTHER.h5 (repeatable: one block each)."
    ),
    prepared: list[Path] = typer.Option(
        None, "--prepared", help="Prepared file(s) (for reference/truth)."
    ),
    out_dir: Path = typer.Option(
        None,
        "--out",
        help="Folder for metrics.json/.csv/.md (tables 1 and 2) and figures 2 and 3 (PNG, with "
        "a .labels.json sidecar each).",
    ),
    metrics: str = typer.Option(
        "paper",
        "--metrics",
        callback=check_metrics,
        help=f"Comma-separated names ({', '.join(METRIC_NAMES)}), or paper (the paper's seven "
        "plus SSIM and PSNR after the least-squares scale) | classic (no weights) | all.",
    ),
    weights_dir: Path = typer.Option(
        None,
        "--weights-dir",
        help="Folder with the LPIPS/FID weight files (else the torch hub cache).",
    ),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Never download missing LPIPS/FID weights (also SIREM_OFFLINE=1 or HF_HUB_OFFLINE=1).",
    ),
    fid_frames: int = typer.Option(512, "--fid-frames", help="Frames sampled for FID (0: all)."),
    figures: bool = typer.Option(
        True, "--figures/--no-figures", help="Write figures 2 and 3 with the metrics (--out)."
    ),
    report: Path = typer.Option(
        None,
        "--report",
        help="Older option, kept for scripts: figures and tables.md go to this folder instead "
        "of --out (alone, it writes only those).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing files in --out and --report."
    ),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Compare reconstructions with SSIM, PSNR, MSE, NMSE, NRMSE, HFEN, VIF, LPIPS and FID.

    Values are computed per utterance and averaged over utterances (mean and std). SSIM (LS)
    and PSNR (LS) score each frame after its least-squares scale to the target. Two files of
    the same method get rows named after their files, e.g. "SIREM (model_a.h5)".
    """
    with cli_errors():
        from sirem_cli.api.evaluate import run_evaluate
        from sirem_cli.errors import InputError
        from sirem_cli.report.tables import table1, table2

        if fid_frames < 0:
            raise InputError(f"--fid-frames must be >= 0 (0: all frames), got {fid_frames}")
        with stage_progress("evaluate") as report_fn:
            result = run_evaluate(
                recons,
                target,
                prepared=prepared or (),
                out_dir=out_dir,
                metrics=metrics,
                weights_dir=weights_dir,
                offline=True if offline else None,
                fid_max_frames=fid_frames or None,
                figures=figures,
                report_dir=report,
                overwrite=overwrite,
                progress=report_fn,
            )
        for line in result.warnings:
            warn(line)
        for block in table1(result.results):
            out.print(block.to_rich())
        t2 = table2(result.results)
        if t2 is not None:
            out.print(t2.to_rich())
    notes = [*result.notes, *sorted({m for r in result.results for m in r.unavailable.values()})]
    for note in notes:
        notice(note)
    for path in [*result.files.values(), *result.report_files]:
        err.print(f"wrote {path}")
    emit(
        "evaluate",
        {
            "methods": result.names,
            "files": result.files,
            "report_files": result.report_files,
            "results": [r.to_dict() for r in result.results],
        },
    )
