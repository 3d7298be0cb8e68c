"""``sirem baseline``: gridding, wavelet CS, TV and temporal-TV reconstructions."""

from __future__ import annotations

from pathlib import Path

import typer

from sirem_cli.cli._common import cli_errors, emit, fail, notice, out, stage_progress, table
from sirem_cli.cli._options import BaselineMethod, JsonOutput, Quiet, choices_help
from sirem_cli.recon.registry import BASELINES


def baseline(
    prepared: list[Path] = typer.Argument(
        ...,
        metavar="PREPARED... OUT.h5",
        help="Prepared file(s), then the reconstruction file to write.",
    ),
    method: BaselineMethod = typer.Option(
        "gridding", "--method", help=choices_help("Reconstruction method.", BASELINES)
    ),
    lam: str = typer.Option(
        None,
        "--lam",
        help="Regularization weight (relative to max |A^H W y|), or 'auto': chosen on "
        "--lam-split, together with --lam-spatial for ttv.",
    ),
    iters: int = typer.Option(
        100,
        "--iters",
        help="Iterations of the iterative methods (FISTA for wavelet, primal-dual Condat-Vu "
        "for tv/ttv, steps from the normal operator's largest eigenvalue).",
    ),
    lam_spatial: float = typer.Option(
        0.0, "--lam-spatial", help="ttv only: spatial TV weight added per frame (relative)."
    ),
    split: str = typer.Option("test", "--split", help="test | val | train | all."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    lam_split: str = typer.Option("val", "--lam-split", help="Split used by --lam auto."),
    lam_target: str = typer.Option(
        "auto",
        "--lam-target",
        help="What --lam auto scores against: truth | reference | auto (truth where present).",
    ),
    lam_frames: int = typer.Option(
        64, "--lam-frames", help="Consecutive frames of each --lam-split utterance --lam auto uses."
    ),
    window: int = typer.Option(
        512,
        "--window",
        help="Frames reconstructed at once (bounds memory on long utterances); methods that "
        "couple frames (ttv) overlap windows by --overlap frames.",
    ),
    overlap: int = typer.Option(
        32, "--overlap", help="Frames shared by consecutive windows (ttv)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT.h5."),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Reconstruct prepared utterances with a non-learned baseline and record ms/frame."""
    if len(prepared) < 2:
        raise fail("give at least one PREPARED file and the OUT.h5 to write")
    *inputs, out_file = prepared
    with cli_errors():
        from sirem_cli.api.baseline import BaselineConfig, run_baseline
        from sirem_cli.errors import InputError

        auto = lam is not None and lam.strip().lower() == "auto"
        value = None
        if lam is not None and not auto:
            try:
                value = float(lam)
            except ValueError:
                raise InputError(f"--lam must be a number or 'auto', got {lam!r}") from None
        config = BaselineConfig(
            method=method.value,
            lam=value,
            auto=auto,
            iters=iters,
            split=split,
            device=device,
            auto_split=lam_split,
            auto_target=lam_target,
            auto_frames=lam_frames,
            lam_spatial=lam_spatial,
            window=window,
            overlap=overlap,
        )
        config.validate()
        with stage_progress(method.value) as report:
            result = run_baseline(inputs, out_file, config, overwrite=overwrite, progress=report)
    if result.notice:
        notice(result.notice)
    title = f"sirem baseline {result.method} -> {result.out}"
    if result.lam is not None:
        title += f" (lambda {result.lam:.3g}"
        if result.lam_spatial:
            title += f", spatial {result.lam_spatial:.3g}"
        title += f"{', auto vs ' + result.lam_target if result.lam_scores else ''})"
    out.print(
        table(
            title,
            ["utterance", "frames", "ms/frame"],
            [[p, n, f"{ms:.2f}"] for p, n, ms in result.rows],
        )
    )
    if result.lam_scores:
        out.print(
            table(
                f"lambda search (mean PSNR against the {result.lam_target}, {lam_split} split)",
                ["lambda", "spatial lambda", "PSNR dB"],
                [[f"{k[0]:.3g}", f"{k[1]:.3g}", f"{v:.2f}"] for k, v in result.lam_scores.items()],
            )
        )
    emit(
        "baseline",
        {
            "out": result.out,
            "method": result.method,
            "lam": result.lam,
            "lam_spatial": result.lam_spatial,
            "lam_target": result.lam_target or None,
            "lam_search": [
                {"lam": k[0], "lam_spatial": k[1], "psnr_db": v}
                for k, v in result.lam_scores.items()
            ],
            "backend": result.backend,
            "rows": [{"utterance": p, "frames": n, "ms_per_frame": ms} for p, n, ms in result.rows],
        },
    )
