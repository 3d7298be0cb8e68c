"""``sirem evaluate``: the paper's metrics for reconstruction files, as tables, JSON, CSV, figures."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import cli_errors, err, out, stage_progress
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
        None, "--out", help="Folder for metrics.json, metrics.csv, metrics.md."
    ),
    metrics: str = typer.Option(
        "paper",
        "--metrics",
        callback=check_metrics,
        help=f"Comma-separated names ({', '.join(METRIC_NAMES)}), or paper | classic | all.",
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
    report: Path = typer.Option(
        None, "--report", help="Also write tables.md, figure2.png, figure3.png here."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing files in --out and --report."
    ),
) -> None:
    """Compare reconstructions with SSIM, PSNR, MSE, NMSE, NRMSE, HFEN, VIF, LPIPS and FID.

    Values are computed per utterance and averaged over utterances (mean and std).
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
                report_dir=report,
                overwrite=overwrite,
                progress=report_fn,
            )
        for block in table1(result.results):
            out.print(block.to_rich())
        t2 = table2(result.results)
        if t2 is not None:
            out.print(t2.to_rich())
    notes = sorted({msg for r in result.results for msg in r.unavailable.values()})
    for note in notes:
        err.print(f"note: {note}")
    for path in [*result.files.values(), *result.report_files]:
        err.print(f"wrote {path}")
