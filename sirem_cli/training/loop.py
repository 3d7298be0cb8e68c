"""Training loop for SIREM (paper section 3.5, ``method.md`` section 2).

Only the decoder, the arm logits and (``learned`` fusion) the fusion head are trained; the audio
encoder never runs here: :class:`~sirem_cli.training.data.FrameData` holds the cached embeddings
and, per frame, the per-arm coil-combined images B_a, so the MRI branch costs an einsum and no
NUFFT. The hyperparameters are :class:`~sirem_cli.training.config.TrainConfig`.

Defaults follow the paper: AdamW (lr 1e-4, weight decay 1e-5), batch 8, cosine annealing over 20
epochs (stepped once per epoch, to 0), gradient norm clipped at 1.0, validation every 5 epochs and
after the last one, the weights with the best validation PSNR (mean of per-frame PSNR, data range
1) kept in ``out_path``. The full training state of the last finished epoch (weights, optimizer,
RNG, log) goes to :func:`resume_path_for` ``(out_path)``; ``resume=True`` continues from it and
ends with the same weights as an uninterrupted run (or, with a larger ``epochs``, continues it to
that many epochs with the cosine schedule stretched to the new end). Runs are deterministic on the CPU for a
seed: weights are initialized from the seed, the frame order of epoch e is a permutation seeded by
(seed, e), and dropout draws from the torch RNG whose state is saved in the resume file.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sirem_cli.errors import FormatError, InputError, ShapeError, SiremError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.io.output import check_free_space
from sirem_cli.models.sirem_net import SiremNet
from sirem_cli.training.checkpoint import (
    checkpoint_payload,
    first_nonfinite,
    read_checkpoint,
    write_payload,
)
from sirem_cli.training.config import TrainConfig
from sirem_cli.training.data import FrameData
from sirem_cli.training.distributed import Runtime, resolve_device
from sirem_cli.training.losses import LossWeights, psnr, sirem_loss

#: progress(epoch, step, n_steps, loss, val_psnr): epoch and step count from 1; val_psnr is the
#: latest validation PSNR in dB or None before the first validation.
ProgressFn = Callable[[int, int, int, float, float | None], None]

#: Name of the arm-logit parameter of SiremNet (its own optimizer group, see ``arm_lr``).
ARM_PARAM = "arm_logits"

#: Options a resumed run may change: the device, and the number of epochs (``--resume --epochs
#: N`` continues a run to N epochs; the cosine schedule is stretched to the new end).
_RESUME_IGNORED = ("device", "epochs")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        checkpoint: the best-validation-PSNR checkpoint (or the last epoch's without validation).
        resume_checkpoint: the last epoch's full training state.
        best_epoch: epoch (from 1) of the kept weights.
        best_val_psnr: its validation PSNR in dB, or None without validation data.
        records: one dict per epoch (see :func:`write_training_log`).
        arm_weights: final soft arm weights p (A floats).
        seconds: wall time of this call.
        model: the network after the last epoch (unwrapped, on the training device).
    """

    checkpoint: Path
    resume_checkpoint: Path
    best_epoch: int
    best_val_psnr: float | None
    records: list[dict[str, Any]]
    arm_weights: list[float]
    seconds: float
    model: SiremNet


def resume_path_for(out_path: Path) -> Path:
    """The resume-state file that goes with a checkpoint: ``model.pt`` -> ``model.resume.pt``."""
    out_path = Path(out_path)
    suffix = out_path.suffix or ".pt"
    return out_path.with_name(f"{out_path.stem}.resume{suffix}")


_LOG_COLUMNS = (
    "epoch",
    "loss",
    "loss_trained",
    "mse",
    "psf",
    "budget",
    "mask",
    "val_loss",
    "val_psnr",
    "lr",
    "seconds",
)


def write_training_log(
    records: Sequence[dict[str, Any]],
    *,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    config: TrainConfig | None = None,
) -> None:
    """Write the per-epoch records as JSON and/or CSV (atomically).

    Each record holds epoch (from 1), loss, mse, psf, budget, mask (training means), val_loss
    and val_psnr (None on epochs without validation), lr, seconds and p (the A arm weights at
    the end of the epoch). The CSV spreads p over columns p0..p{A-1} and leaves None empty.

    Args:
        records: from :attr:`TrainResult.records`.
        json_path: JSON output ({"config": ..., "records": [...]}), or None.
        csv_path: CSV output, or None.
        config: stored in the JSON when given.
    """
    if json_path is not None:
        document = {"config": config.to_dict() if config else None, "records": list(records)}
        with atomic_path(Path(json_path)) as tmp:
            tmp.write_text(json.dumps(document, indent=1))
    if csv_path is not None:
        n_arms = max((len(r.get("p", [])) for r in records), default=0)
        header = [*_LOG_COLUMNS, *(f"p{i}" for i in range(n_arms))]
        with atomic_path(Path(csv_path)) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for record in records:
                row = ["" if record.get(k) is None else record.get(k) for k in _LOG_COLUMNS]
                writer.writerow(row + list(record.get("p", [])))


def _check_data(config: TrainConfig, data: FrameData, name: str, embedding_dim: int) -> None:
    if len(data) == 0:
        raise InputError(f"{name} data has no frames")
    if data.image_size != config.model.image_size:
        raise ShapeError(
            f"{name} data: images are {data.image_size[0]}x{data.image_size[1]} but image_size "
            f"is {config.model.image_size[0]}x{config.model.image_size[1]}"
        )
    per_frame = config.model.arms_per_frame or config.model.n_arms
    if data.n_arms != per_frame:
        raise ShapeError(
            f"{name} data: {data.n_arms} arms per frame, the model expects {per_frame}"
        )
    if data.arms is None and data.n_arms != config.model.n_arms:
        raise ShapeError(
            f"{name} data: no arms index, but {data.n_arms} != {config.model.n_arms} interleaves"
        )
    if data.embedding_dim != embedding_dim:
        raise ShapeError(
            f"{name} data: embeddings of size {data.embedding_dim}, expected {embedding_dim}"
        )
    if config.model.fusion == "convex" and config.model.eba_mode == "frame" and data.eba is None:
        raise InputError(f"{name} data has no eba maps, which eba_mode 'frame' needs")


def _check_resume_config(config: TrainConfig, stored: dict[str, Any], path: Path) -> None:
    current = config.to_dict()
    differ = sorted(
        k
        for k in set(current) | set(stored)
        if k not in _RESUME_IGNORED and current.get(k) != stored.get(k)
    )
    if differ:
        raise InputError(
            f"{path}: cannot resume with different options ({', '.join(differ)}); "
            f"use the same settings or start a new run"
        )


def _loss(out: Any, target: Tensor, config: TrainConfig, weights: Any) -> Any:
    """The training objective of one batch with the configured terms."""
    return sirem_loss(
        out.recon,
        target,
        out.p,
        out.w,
        budget_k=config.budget_k,
        weights=weights,
        psf_exclude_dc=config.psf_exclude_dc,
        fft_norm=config.fft_norm,
    )


def _split_batches(index: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [index[i : i + batch_size] for i in range(0, len(index), batch_size)]


def evaluate_frames(
    model: SiremNet,
    data: FrameData,
    config: TrainConfig,
    *,
    device: torch.device,
    runtime: Runtime | None = None,
) -> tuple[float, float]:
    """Validation loss and PSNR (eval mode, no dropout).

    Args:
        model: the (unwrapped) network.
        data: validation frames.
        config: the training configuration (loss settings, batch size).
        device: compute device.
        runtime: under DDP each rank takes a block of frames and the sums are all-reduced.

    Returns:
        (mean total loss over frames, mean per-frame PSNR in dB with data range 1).
    """
    runtime = runtime or Runtime()
    weights = loss_weights(config)
    with_eba = config.model.fusion == "convex" and config.model.eba_mode == "frame"
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*b, psnr sum, frames
    try:
        with torch.no_grad():
            index = runtime.eval_indices(len(data))
            for batch_index in _split_batches(index, config.val_batch_size):
                embeddings, arm_images, target, eba, arms = data.batch(
                    batch_index, device, with_eba=with_eba
                )
                out = model(embeddings, arm_images, eba, arms)
                terms = _loss(out, target, config, weights)
                count = len(batch_index)
                sums[0] += terms.total.double() * count
                sums[1] += psnr(out.recon, target).double().sum()
                sums[2] += count
    finally:
        model.train(was_training)
    runtime.all_reduce_sum(sums)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def train(
    config: TrainConfig,
    train_data: FrameData,
    val_data: FrameData | None,
    *,
    out_path: Path,
    resume: bool = False,
    progress: ProgressFn | None = None,
    log_json: Path | None = None,
    log_csv: Path | None = None,
    runtime: Runtime | None = None,
) -> TrainResult:
    """Train SIREM on cached embeddings and arm images.

    Args:
        config: hyperparameters.
        train_data: training frames (the static fusion map is the mean of their eba maps).
        val_data: validation frames, or None (then the last epoch is kept).
        out_path: the kept checkpoint (best validation PSNR); the last epoch's training state
            goes to :func:`resume_path_for` ``(out_path)``.
        resume: continue from that resume file (same options required, except ``device``).
        progress: callback(epoch, step, n_steps, loss, val_psnr), called on rank 0 after each
            step.
        log_json: per-epoch log as JSON (rewritten after each epoch), or None.
        log_csv: the same as CSV, or None.
        runtime: the process's place in a DDP run (:func:`init_runtime`); None = one process.

    Returns:
        The :class:`TrainResult`.
    """
    started = time.perf_counter()
    runtime = runtime or Runtime()
    out_path = Path(out_path)
    resume_path = resume_path_for(out_path)
    embedding_dim = train_data.embedding_dim
    _check_data(config, train_data, "training", embedding_dim)
    if val_data is not None and len(val_data) == 0:
        val_data = None
    if val_data is not None:
        _check_data(config, val_data, "validation", embedding_dim)
    convex = config.model.fusion == "convex"
    if convex and config.model.eba_mode == "static" and train_data.eba is None:
        raise InputError(
            "eba_mode 'static' needs explained-by-audio maps (eba) in the training data"
        )
    device = resolve_device(config.device, runtime)
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        return _train(
            config,
            train_data,
            val_data,
            out_path,
            resume_path,
            resume,
            progress,
            log_json,
            log_csv,
            runtime,
            device,
            started,
        )


def _train(
    config: TrainConfig,
    train_data: FrameData,
    val_data: FrameData | None,
    out_path: Path,
    resume_path: Path,
    resume: bool,
    progress: ProgressFn | None,
    log_json: Path | None,
    log_csv: Path | None,
    runtime: Runtime,
    device: torch.device,
    started: float,
) -> TrainResult:
    torch.manual_seed(config.seed)
    model = SiremNet(config.model_config(train_data.embedding_dim))
    if train_data.eba is not None:
        model.set_static_eba(train_data.mean_eba())
    model.set_embedding_norm(*train_data.embedding_stats())
    if config.decoder_prior:
        model.decoder.set_output_prior(train_data.mean_target())
    if runtime.is_main:  # the checkpoint and the resume file (weights + 2 Adam moments), at once
        n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        check_free_space(out_path, 4 * n_bytes)
    model.to(device)
    arm_params = [
        p for name, p in model.named_parameters() if name == ARM_PARAM and p.requires_grad
    ]
    other = [p for name, p in model.named_parameters() if name != ARM_PARAM and p.requires_grad]
    trainable = [*other, *arm_params]
    groups = [{"params": other}]
    if arm_params:  # the 13 arm logits may learn faster than the decoder (--arm-lr)
        groups.append({"params": arm_params, "lr": config.arm_lr or config.lr})
    # The fused kernel updates all 17 M parameters in one pass (the decoder's last layer alone
    # has 14.5 M); the default per-tensor loop was a large share of each CPU step.
    optimizer = torch.optim.AdamW(
        groups, lr=config.lr, weight_decay=config.weight_decay, fused=device.type in ("cpu", "cuda")
    )
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    config_json = config.to_json()
    records: list[dict[str, Any]] = []
    start_epoch = 0
    best_psnr: float | None = None
    best_epoch = 0
    if resume:
        checkpoint = read_checkpoint(resume_path)
        state = checkpoint.training_state
        if state is None:
            raise InputError(f"{resume_path}: holds no training state to resume from")
        _check_resume_config(config, checkpoint.train_config, resume_path)
        try:
            model.load_state_dict(checkpoint.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise FormatError(f"{resume_path}: weights do not fit the model ({first})") from exc
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        start_epoch = int(state["epoch"])
        if start_epoch >= config.epochs:
            raise InputError(
                f"{resume_path}: the run already finished {start_epoch} epochs; give --epochs "
                f"above {start_epoch} to continue it"
            )
        best_psnr = state.get("best_val_psnr")
        best_epoch = int(state.get("best_epoch", 0))
        records = json.loads(state["records_json"])
    wrapped = runtime.wrap(model)
    weights = loss_weights(config)
    with_eba = config.model.fusion == "convex" and config.model.eba_mode == "frame"
    last_val_psnr = best_psnr
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        # Cosine annealing to 0 over all epochs (closed form, so a resumed run may extend it).
        factor = 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        lr = float(optimizer.param_groups[0]["lr"])
        index = runtime.train_indices(len(train_data), epoch=epoch, seed=config.seed)
        batches = _split_batches(index, config.batch_size)
        sums = torch.zeros(6, dtype=torch.float64, device=device)  # 5 terms * b, frames
        model.train()
        for step, batch_index in enumerate(batches, start=1):
            embeddings, arm_images, target, eba, arms = train_data.batch(
                batch_index, device, with_eba=with_eba
            )
            out = wrapped(embeddings, arm_images, eba, arms)
            terms = _loss(out, target, config, weights)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            count = len(batch_index)
            sums[:5] += torch.stack([t.detach().double() for t in terms]) * count
            sums[5] += count
            if progress is not None and runtime.is_main:
                progress(epoch + 1, step, len(batches), terms.total.item(), last_val_psnr)
        runtime.all_reduce_sum(sums)
        means = (sums[:5] / sums[5]).tolist()
        if not all(math.isfinite(v) for v in means) or first_nonfinite(model.state_dict()):
            raise TrainingDiverged(_diverged(epoch + 1, out_path, best_epoch, start_epoch))
        val_loss = val_psnr = None
        is_last = epoch + 1 == config.epochs
        if val_data is not None and ((epoch + 1) % config.val_every == 0 or is_last):
            val_loss, val_psnr = evaluate_frames(
                model, val_data, config, device=device, runtime=runtime
            )
            last_val_psnr = val_psnr
        p_values = [float(v) for v in torch.sigmoid(model.arm_logits.detach()).cpu()]
        constant = constant_terms(config)
        term_weights = {"psf": weights.psf, "budget": weights.budget, "mask": weights.mask}
        trained = means[0] - sum(
            term_weights[name] * means[2 + ("psf", "budget", "mask").index(name)]
            for name in constant
        )
        records.append(
            {
                "epoch": epoch + 1,
                "loss": means[0],
                "loss_trained": trained,
                "constant_terms": list(constant),
                "mse": means[1],
                "psf": means[2],
                "budget": means[3],
                "mask": means[4],
                "val_loss": val_loss,
                "val_psnr": val_psnr,
                "lr": lr,
                "seconds": time.perf_counter() - epoch_start,
                "p": p_values,
            }
        )
        improved = val_psnr is not None and (best_psnr is None or val_psnr > best_psnr)
        if improved or (val_data is None and is_last):
            best_psnr, best_epoch = val_psnr, epoch + 1
            if runtime.is_main:
                _save(out_path, model, config_json, {"epoch": epoch + 1, "val_psnr": val_psnr})
        if runtime.is_main:
            training_state: dict[str, Any] = {
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "best_val_psnr": best_psnr,
                "best_epoch": best_epoch,
                "records_json": json.dumps(records),
            }
            _save(
                resume_path,
                model,
                config_json,
                {"epoch": epoch + 1, "val_psnr": val_psnr},
                training_state,
            )
            if log_json is not None or log_csv is not None:
                write_training_log(records, json_path=log_json, csv_path=log_csv, config=config)
    p_final = [float(v) for v in torch.sigmoid(model.arm_logits.detach()).cpu()]
    if math.isnan(sum(p_final)):
        raise SiremError("training diverged (NaN arm weights); lower the learning rate")
    if best_epoch == 0:  # validation never gave a finite PSNR: keep the last epoch
        best_epoch = config.epochs
        if runtime.is_main:
            _save(out_path, model, config_json, {"epoch": best_epoch, "val_psnr": None})
    if config.model.fusion == "residual" and val_data is not None and runtime.is_main:
        best_psnr = _keep_residual_only_if_better(
            out_path, config, config_json, val_data, device, best_psnr
        )
    runtime.barrier()
    return TrainResult(
        checkpoint=out_path,
        resume_checkpoint=resume_path,
        best_epoch=best_epoch,
        best_val_psnr=best_psnr,
        records=records,
        arm_weights=p_final,
        seconds=time.perf_counter() - started,
        model=model,
    )


def constant_terms(config: TrainConfig) -> tuple[str, ...]:
    """Loss terms that carry no gradient: L_mask when the fusion map is fixed (the static map or
    the per-frame annotated maps), so it only shifts the displayed loss."""
    model = config.model
    if model.fusion == "convex" and model.eba_mode in ("static", "frame"):
        return ("mask",)
    return ()


def loss_weights(config: TrainConfig) -> LossWeights:
    """The weights of the loss terms: the paper's, or the MSE alone for residual fusion."""
    if config.model.fusion == "residual":
        return LossWeights(0.0, 0.0, 0.0)
    return LossWeights(config.psf_weight, config.budget_weight, config.mask_weight)


def _keep_residual_only_if_better(
    out_path: Path,
    config: TrainConfig,
    config_json: str,
    val_data: FrameData,
    device: torch.device,
    best_psnr: float | None,
) -> float | None:
    """Residual fusion never loses to its MRI branch on validation: the kept checkpoint's
    fusion map w is compared with w = 0 (x = x_m exactly); if w = 0 scores at least as well,
    the checkpoint is rewritten with w = 0 and says so (info ``residual_kept`` False)."""
    checkpoint = read_checkpoint(out_path)
    model = SiremNet(checkpoint.model_config).to(device)
    model.load_state_dict(checkpoint.state_dict, strict=True)
    assert model.residual_w is not None
    _, learned = evaluate_frames(model, val_data, config, device=device)
    with torch.no_grad():
        model.residual_w.zero_()
    _, mri_only = evaluate_frames(model, val_data, config, device=device)
    info = {**checkpoint.info, "val_psnr_w0": mri_only, "val_psnr_learned_w": learned}
    if mri_only >= learned:
        _save(out_path, model, config_json, {**info, "residual_kept": False, "val_psnr": mri_only})
        return mri_only
    info["residual_kept"] = True
    model.load_state_dict(checkpoint.state_dict, strict=True)
    _save(out_path, model, config_json, {**info, "val_psnr": learned})
    return best_psnr


class TrainingDiverged(SiremError):
    """The loss or the weights became NaN/Inf; the last good checkpoint was kept."""


def _diverged(epoch: int, out_path: Path, best_epoch: int, start_epoch: int) -> str:
    if best_epoch > start_epoch:
        kept = f"{out_path} keeps the weights of epoch {best_epoch}, the last good checkpoint"
    elif out_path.exists():
        kept = f"{out_path} is unchanged"
    else:
        kept = "no checkpoint was written"
    return (
        f"training diverged in epoch {epoch} (the loss or the weights became NaN or Inf): "
        f"{kept}; lower --lr / --arm-lr, or check the data"
    )


def _save(
    path: Path,
    model: SiremNet,
    config_json: str,
    info: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> None:
    payload = checkpoint_payload(
        model, train_config_json=config_json, info=info, training_state=training_state
    )
    write_payload(path, payload)
