"""``sirem train``: fit the SIREM decoder and arm weights on prepared files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from sirem_cli.cli._common import (
    cli_errors,
    emit,
    fail,
    given_options,
    notice,
    out,
    progress,
    table,
)
from sirem_cli.cli._options import (
    ArmSelection,
    EncoderName,
    Fusion,
    FusionMap,
    JsonOutput,
    ModelKind,
    Quiet,
    choices_help,
)
from sirem_cli.models.registry import ARM_SELECTIONS, ENCODERS, FUSION_MAPS, FUSIONS, MODELS

if TYPE_CHECKING:
    from sirem_cli.api.prior import PriorOptions

PRIOR_PANEL = "Speech prior (--model prior)"
#: Options of the paper model that --model prior does not take, and the reverse.
FUSION_ONLY = (
    "encoder", "hubert", "bf16", "arm_lr", "weight_decay", "val_every", "budget", "eba",
    "fusion", "arm_select", "resume", "no_cache",
)  # fmt: skip
PRIOR_ONLY = (
    "frames_per_epoch", "iters", "tune", "tune_frames", "mu", "lam", "lam_spatial", "motion",
    "uncertainty",
)  # fmt: skip


def train(
    ctx: typer.Context,
    prepared: list[Path] = typer.Argument(
        ..., metavar="PREPARED.h5...", help="Prepared file(s), one dataset."
    ),
    model: ModelKind = typer.Option(
        "fusion", "--model", help=choices_help("What to train.", MODELS)
    ),
    out_file: Path = typer.Option(
        None, "--out", "-o", help="Checkpoint (default: next to the first input)."
    ),
    encoder: EncoderName = typer.Option(
        "hubert", "--encoder", help=choices_help("Frozen audio encoder.", ENCODERS)
    ),
    hubert: str = typer.Option(
        None, "--hubert", help="HuBERT folder (or hub id found in the local cache)."
    ),
    bf16: bool = typer.Option(
        False, "--bf16", help="bfloat16 autocast for HuBERT (CPUs with BF16)."
    ),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(
        None, "--batch-size", help="Frames per step (default: 8 for fusion, 64 for prior)."
    ),
    lr: float = typer.Option(
        None, "--lr", help="Learning rate (default: 1e-4 for fusion, 1e-3 for prior)."
    ),
    arm_lr: float = typer.Option(
        0.05,
        "--arm-lr",
        help="Learning rate of the arm logits, apart from --lr (the decoder's). The paper trains "
        "~10^5 steps with 1e-4 for both; 0.05 lets the arm profile settle at the budget K within "
        "the 20 epochs of a corpus of this size. Give --arm-lr 1e-4 for the paper's literal setting.",
    ),
    weight_decay: float = typer.Option(1e-5, "--weight-decay"),
    val_every: int = typer.Option(
        5, "--val-every", help="Validate every N epochs (and after the last)."
    ),
    budget: float = typer.Option(2.0, "--budget", help="Arm budget K of the budget loss."),
    no_audio: bool = typer.Option(
        False, "--no-audio", help="Ablation: audio embeddings replaced by zeros."
    ),
    eba: FusionMap = typer.Option(
        "static", "--eba", help=choices_help("Fusion map of --fusion convex.", FUSION_MAPS)
    ),
    fusion: Fusion = typer.Option("convex", "--fusion", help=choices_help("Fusion.", FUSIONS)),
    arm_select: ArmSelection = typer.Option(
        "soft", "--arm-select", help=choices_help("Arm selection.", ARM_SELECTIONS)
    ),
    target: str = typer.Option(
        None,
        "--target",
        help="Training target: reference | truth | auto (the truth where the files have it). "
        "Default: reference for fusion, auto for prior.",
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>.resume.pt."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Neither read nor write the embedding cache (see README)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing checkpoint, its resume file and logs."
    ),
    frames_per_epoch: int = typer.Option(
        3000,
        "--frames-per-epoch",
        rich_help_panel=PRIOR_PANEL,
        help="Training frames drawn per epoch (0: all).",
    ),
    iters: int = typer.Option(
        60,
        "--iters",
        rich_help_panel=PRIOR_PANEL,
        help="Iterations of the data-consistent solve (tuning, and reconstruct's default).",
    ),
    tune: bool = typer.Option(
        True,
        "--tune/--no-tune",
        rich_help_panel=PRIOR_PANEL,
        help="Choose mu and the TV weights on the validation speakers (else --mu, --lam, "
        "--lam-spatial or their defaults 0.1, ttv's default, 0).",
    ),
    tune_frames: int = typer.Option(
        64,
        "--tune-frames",
        rich_help_panel=PRIOR_PANEL,
        help="Consecutive middle frames of each validation utterance used to tune.",
    ),
    mu: float = typer.Option(
        None,
        "--mu",
        rich_help_panel=PRIOR_PANEL,
        help="Prior weight, relative to the data term's largest eigenvalue (fixed, not tuned).",
    ),
    lam: float = typer.Option(
        None,
        "--lam",
        rich_help_panel=PRIOR_PANEL,
        help="Temporal TV weight, relative as in sirem baseline --method ttv (fixed).",
    ),
    lam_spatial: float = typer.Option(
        None,
        "--lam-spatial",
        rich_help_panel=PRIOR_PANEL,
        help="Spatial TV weight, relative (fixed).",
    ),
    motion: float = typer.Option(
        None,
        "--motion",
        rich_help_panel=PRIOR_PANEL,
        help="Relax temporal TV where the predicted prior frames move: the mean frame-to-frame "
        "change (relative to the prior's peak) at which its weight halves; 0: off (fixed).",
    ),
    uncertainty: float = typer.Option(
        None,
        "--uncertainty",
        rich_help_panel=PRIOR_PANEL,
        help="Relax temporal TV where the prior is unsure (low weight M from its predicted "
        "variance): the mean 1 - M at which its weight halves; 0: off (fixed).",
    ),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Train SIREM (--model fusion: frozen-encoder embeddings are cached once; only the decoder
    and arm logits learn) or the speech prior (--model prior: see README, "The speech prior")."""
    if model.value == "prior":
        wrong = given_options(ctx, FUSION_ONLY)
        if wrong:
            raise fail(f"{', '.join(wrong)}: options of --model fusion, not --model prior")
        with cli_errors():
            from sirem_cli.api.prior import PriorOptions

            options = PriorOptions(
                epochs=epochs,
                batch_size=64 if batch_size is None else batch_size,
                frames_per_epoch=frames_per_epoch,
                lr=1e-3 if lr is None else lr,
                no_audio=no_audio,
                target="auto" if target is None else target,
                seed=seed,
                iters=iters,
                tune=tune,
                tune_frames=tune_frames,
                mu=mu,
                lam_time=lam,
                lam_spatial=lam_spatial,
                motion=motion,
                uncertainty=uncertainty,
                device=device,
            )
        _train_prior(prepared, out_file, options, overwrite)
        return
    wrong = given_options(ctx, PRIOR_ONLY)
    if wrong:
        raise fail(f"{', '.join(wrong)}: options of --model prior (the speech prior)")
    batch_size = 8 if batch_size is None else batch_size
    lr = 1e-4 if lr is None else lr
    target = "reference" if target is None else target
    with cli_errors():
        from sirem_cli.api.audio import ModelRunConfig
        from sirem_cli.api.train import run_train
        from sirem_cli.errors import InputError
        from sirem_cli.training.config import TrainConfig

        try:
            config = TrainConfig.build(
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                arm_lr=arm_lr,
                weight_decay=weight_decay,
                val_every=val_every,
                budget_k=budget,
                no_audio=no_audio,
                eba_mode=eba.value,
                fusion=fusion.value,
                arm_select=arm_select.value,
                seed=seed,
                device=device,
                encoder=encoder.value,
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        run = ModelRunConfig(
            encoder=encoder.value,
            hubert=hubert,
            bf16=bf16,
            target=target,
            device=device,
            cache=not no_cache,
        )
        with progress() as bar:
            stage = bar.add_task("prepare frames", total=None, info="")
            epoch_task = None

            def report(name: str, done: int, total: int) -> None:
                bar.update(stage, description=name, completed=done, total=total)

            def step(
                epoch: int, step_i: int, n_steps: int, loss: float, val_psnr: float | None
            ) -> None:
                nonlocal epoch_task
                if epoch_task is None:
                    epoch_task = bar.add_task("train", total=config.epochs * n_steps, info="")
                info = f"epoch {epoch} loss {loss:.4f}"
                if val_psnr is not None and val_psnr == val_psnr:
                    info += f" val PSNR {val_psnr:.2f} dB"
                bar.update(epoch_task, completed=(epoch - 1) * n_steps + step_i, info=info)

            result = run_train(
                prepared,
                out_file,
                config,
                run,
                resume=resume,
                overwrite=overwrite,
                progress=report,
                step_progress=step,
            )
    for note in result.notes:
        notice(note)
    constant = sorted({t for r in result.records for t in r.get("constant_terms", [])})

    def term(r: dict, name: str) -> str:
        value = f"{r.get(name, float('nan')):.5f}"
        return f"({value})" if name in r.get("constant_terms", []) else value

    rows = [
        [
            r.get("epoch"),
            f"{r.get('loss_trained', r.get('loss', float('nan'))):.5f}",
            term(r, "mse"),
            term(r, "psf"),
            term(r, "budget"),
            term(r, "mask"),
            f"{sum(r.get('p', [])):.2f}",
            f"{r.get('val_psnr', float('nan')):.2f}" if r.get("val_psnr") is not None else "-",
            f"{r.get('seconds', float('nan')):.1f}",
        ]
        for r in result.records
    ]
    out.print(
        table(
            f"sirem train -> {result.checkpoint} ({result.n_train} train / {result.n_val} val frames)",
            ["epoch", "loss", "MSE", "psf", "budget", "mask", "sum p", "val PSNR dB", "s"],
            rows,
        )
    )
    out.print(
        "loss = MSE + 0.1 psf + 0.01 budget + 0.01 mask (the training means of each term)"
        + (
            f"; {', '.join(constant)} in parentheses: constant here (a fixed fusion map has no "
            "gradient), left out of the loss column"
            if constant
            else ""
        )
    )
    if result.best_val_psnr is None:
        kept = f"kept the last epoch {result.best_epoch} (no validation split)"
    else:
        kept = f"best epoch {result.best_epoch}: validation PSNR {result.best_val_psnr:.2f} dB"
    out.print(
        f"{kept}; arm weights p = [{', '.join(f'{v:.2f}' for v in result.arm_weights)}] "
        f"(sum {sum(result.arm_weights):.2f})"
    )
    out.print(f"logs: {result.log_json}, {result.log_csv}")
    emit(
        "train",
        {
            "checkpoint": result.checkpoint,
            "log_json": result.log_json,
            "log_csv": result.log_csv,
            "best_epoch": result.best_epoch,
            "best_val_psnr": result.best_val_psnr,
            "arm_weights": result.arm_weights,
            "train_frames": result.n_train,
            "val_frames": result.n_val,
            "seconds": result.seconds,
            "epochs": result.records,
        },
    )


def _train_prior(
    prepared: list[Path], out_file: Path | None, options: PriorOptions, overwrite: bool
) -> None:
    """``sirem train --model prior`` with its :class:`~sirem_cli.api.prior.PriorOptions`."""
    with cli_errors():
        from sirem_cli.api.prior import run_train_prior

        with progress() as bar:
            stage = bar.add_task("features", total=None, info="")
            epoch_task = None

            def report(name: str, done: int, total: int) -> None:
                bar.update(stage, description=name, completed=done, total=total)

            def epoch_done(epoch: int, n_epochs: int, loss: float, val: float | None) -> None:
                nonlocal epoch_task
                if epoch_task is None:
                    epoch_task = bar.add_task("train", total=n_epochs, info="")
                info = f"loss {loss:.5f}" + ("" if val is None else f" val PSNR {val:.2f} dB")
                bar.update(epoch_task, completed=epoch, info=info)

            result = run_train_prior(
                prepared,
                out_file,
                options,
                overwrite=overwrite,
                progress=report,
                epoch_progress=epoch_done,
            )
    rows = [
        [
            e["epoch"],
            f"{e['train_loss']:.5f}",
            f"{e['val_psnr']:.2f}" if e.get("val_psnr") is not None else "-",
            f"{e['seconds']:.1f}",
        ]
        for e in result.log
    ]
    out.print(
        table(
            f"sirem train --model prior -> {result.checkpoint} ({result.n_train} train / "
            f"{result.n_val} val frames, target {result.target})",
            ["epoch", "loss", "val prior PSNR dB", "s"],
            rows,
        )
    )
    out.print(
        f"best epoch {result.best_epoch}: the prior alone scores {result.best_val_psnr:.2f} dB "
        f"on validation (x_bar alone {result.start_val_psnr:.2f} dB)"
    )
    if result.scores:
        out.print(
            table(
                "solve weights on the validation speakers (mean PSNR of the "
                f"data-consistent reconstruction, {result.weights.iters} iterations)",
                ["mu", "lam_t", "lam_s", "motion", "uncertainty", "PSNR dB"],
                [
                    [f"{s['mu']:g}", f"{s['lam_time']:.4g}", f"{s['lam_spatial']:.4g}",
                     f"{s['motion']:g}", f"{s['uncertainty']:g}", f"{s['psnr']:.2f}"]
                    for s in result.scores
                ],
            )
        )  # fmt: skip
    w = result.weights
    out.print(
        f"stored: mu {w.mu:g}, lam_t {w.lam_time:.4g}, lam_s {w.lam_spatial:.4g}, "
        f"motion {w.motion:g}, uncertainty {w.uncertainty:g}, {w.iters} "
        f"iterations (ttv's own: lam {result.ttv[0]:.4g}, lam_spatial {result.ttv[1]:.4g})"
    )
    emit(
        "train",
        {
            "model": "prior",
            "checkpoint": result.checkpoint,
            "best_epoch": result.best_epoch,
            "best_val_psnr": result.best_val_psnr,
            "target": result.target,
            "mu": w.mu,
            "lam_time": w.lam_time,
            "lam_spatial": w.lam_spatial,
            "motion": w.motion,
            "uncertainty": w.uncertainty,
            "iters": w.iters,
            "ttv_lam": result.ttv[0],
            "ttv_lam_spatial": result.ttv[1],
            "tune_scores": result.scores,
            "train_frames": result.n_train,
            "val_frames": result.n_val,
            "seconds": result.seconds,
            "epochs": result.log,
        },
    )
