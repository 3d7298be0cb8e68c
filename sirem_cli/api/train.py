"""``sirem train``: fit the paper's model on the train split of prepared files.

Training never runs a NUFFT per epoch: each frame's per-arm coil-combined images
``B_j = sum_c conj(S_c) NUFFT_j^H(dcf_j * k_{c,j})`` are computed once by the SENSE operator
(:meth:`~sirem_cli.mri.sense.FrameSenseOp.arm_adjoint`), and the MRI branch
``|sum_j p_j B_j|`` is then exact and cheap (``sirem reconstruct`` goes the direct way, the
weighted k-space through the same operator's adjoint).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.api.audio import ModelRunConfig, StageFn, make_encoder, utterance_embeddings
from sirem_cli.errors import InputError
from sirem_cli.io.checks import check_finite_arrays
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedSet, UtteranceRef
from sirem_cli.training.config import TrainConfig

#: Datasets checked for NaN/Inf when frames are loaded for training.
TRAIN_INPUTS = ("kspace", "traj", "dcf", "smaps", "reference", "truth", "eba", "embeddings")


def arm_images(
    kspace: np.ndarray,
    traj: np.ndarray,
    dcf: np.ndarray,
    smaps: np.ndarray,
    *,
    arms: np.ndarray | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Per-arm coil-combined images of every frame (the training data of the MRI branch).

    Args:
        kspace: (F, C, N, S) complex64.
        traj: (I, S, 2) float32 radians, the interleaf table.
        dcf: (I, S) float32.
        smaps: (C, H, W) complex64.
        arms: (F, N) interleaves of each frame (None: all I in order).

    Returns:
        (F, N, H, W) complex64: the SENSE operator's per-arm adjoint of the DCF-weighted
        k-space, ``out[t, j] = sum_c conj(S_c) NUFFT_{arms[t, j]}^H(dcf * k[t, c, j])``; the
        same operator reconstructs from k-space (:meth:`SiremNet.forward_kspace`).
    """
    from sirem_cli.mri.sense import FrameSenseOp

    op = FrameSenseOp(traj, smaps, arms, n_frames=kspace.shape[0], device=device)
    return np.asarray(op.arm_adjoint(op.weighting(dcf).forward(kspace)), dtype=np.complex64)


def frame_data(
    refs: Sequence[UtteranceRef],
    encoder: Any,
    run: ModelRunConfig,
    *,
    need_eba: bool,
    progress: StageFn | None = None,
) -> Any:
    """Load utterances as one in-memory :class:`~sirem_cli.training.loop.FrameData`."""
    from sirem_cli.training.data import FrameData

    parts = []
    for i, ref in enumerate(refs):
        if progress is not None:
            progress("load frames", i, len(refs))
        emb, _ = utterance_embeddings(
            ref, encoder, batch_size=run.encode_batch, cache=run.cache, progress=progress
        )
        data = PreparedSet.read(
            ref, ["kspace", "arms", "traj", "dcf", "smaps", "reference", "truth", "eba"]
        )
        check_finite_arrays(ref.path, ref.prefix, {**data, "embeddings": emb}, TRAIN_INPUTS)
        if run.target not in data:
            raise InputError(f"{ref.path}: {ref.prefix} has no {run.target} frames (--target)")
        if need_eba and "eba" not in data:
            raise InputError(
                f"{ref.path}: {ref.prefix} has no explained-by-audio maps (eba); prepare it with "
                "annotations or train with --eba static on annotated training data"
            )
        arms = data.get("arms")
        parts.append(
            FrameData(
                embeddings=emb,
                arm_images=arm_images(
                    data["kspace"], data["traj"], data["dcf"], data["smaps"], arms=arms
                ),
                target=data[run.target],
                eba=data.get("eba"),
                arms=None if arms is None else arms.astype(np.int64),
            )
        )
    if progress is not None:
        progress("load frames", len(refs), len(refs))
    return FrameData.concat(parts)


@dataclass
class TrainRunResult:
    """What :func:`run_train` wrote."""

    checkpoint: Path
    log_json: Path
    log_csv: Path
    best_epoch: int
    best_val_psnr: float | None  # None without validation data (the last epoch is kept)
    arm_weights: list[float]
    records: list[dict[str, Any]]
    seconds: float
    n_train: int
    n_val: int
    notes: list[str] = field(default_factory=list)


def frame_geometry(refs: Sequence[UtteranceRef]) -> tuple[int, int]:
    """(I interleaves, N arms per frame) shared by ``refs``; InputError if they differ."""
    seen: dict[tuple[int, int], UtteranceRef] = {}
    for ref in refs:
        data = PreparedSet.read(ref, ["traj"])
        seen.setdefault((int(data["traj"].shape[0]), ref.arms_per_frame), ref)
    if len(seen) > 1:
        (a, ra), (b, rb) = list(seen.items())[:2]
        raise InputError(
            f"{rb.path}: {rb.prefix} has frames of {b[1]} of {b[0]} interleaves, but {ra.prefix} "
            f"({ra.path}) has {a[1]} of {a[0]}: prepare every file with the same --arms-per-frame"
        )
    return next(iter(seen))


def default_checkpoint_path(prepared: Sequence[Path], no_audio: bool) -> Path:
    """``<first input stem>.sirem[-no-audio].pt`` next to the first prepared file."""
    first = Path(prepared[0])
    return first.with_name(f"{first.stem}.sirem{'-no-audio' if no_audio else ''}.pt")


def train_outputs(out: Path) -> list[Path]:
    """The files ``sirem train --out OUT`` writes: OUT, its resume file and its two logs."""
    from sirem_cli.training.loop import resume_path_for

    out = Path(out)
    return [out, resume_path_for(out), out.with_suffix(".log.json"), out.with_suffix(".log.csv")]


def run_train(
    prepared: Sequence[Path],
    out: Path | None,
    config: TrainConfig,
    run: ModelRunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: StageFn | None = None,
    step_progress: Callable[..., None] | None = None,
) -> TrainRunResult:
    """Train SIREM on the train split of ``prepared`` (validated on the val split).

    The checkpoint, its resume file and its logs (:func:`train_outputs`) follow the output
    policy of :mod:`sirem_cli.io.output`: never an input, replaced only with ``overwrite`` (or
    ``resume``, which continues the same run), locked while the run lasts.
    """
    run.validate()
    out = Path(out) if out is not None else default_checkpoint_path(prepared, config.model.no_audio)
    outputs = train_outputs(out)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun rank 0 holds the outputs
        return _run_train(prepared, out, config, run, resume, progress, step_progress)
    for path in outputs:
        check_output(path, inputs=prepared, overwrite=overwrite or resume)
    with claim_outputs(outputs, inputs=prepared, overwrite=overwrite or resume):
        return _run_train(prepared, out, config, run, resume, progress, step_progress)


def _run_train(
    prepared: Sequence[Path],
    out: Path,
    config: TrainConfig,
    run: ModelRunConfig,
    resume: bool,
    progress: StageFn | None,
    step_progress: Callable[..., None] | None,
) -> TrainRunResult:
    from sirem_cli.training.distributed import init_runtime, resolve_device, shutdown_runtime
    from sirem_cli.training.loop import train

    dataset = PreparedSet(prepared)
    notes: list[str] = []
    train_refs = dataset.select("train")
    val_refs = [u for u in dataset.utterances if u.split == "val"]
    if not val_refs:
        notes.append(
            "no validation utterances (the prepared split 'val' is empty): the last epoch is "
            "kept; prepare with --splits 'train=... val=...' to select by validation PSNR"
        )
    # Under torchrun (WORLD_SIZE > 1) every process joins one DistributedDataParallel run;
    # otherwise this is a single-process runtime.
    runtime = init_runtime(config.device)
    device = str(resolve_device(config.device, runtime))
    encoder = make_encoder(run, device)
    if runtime.distributed:  # one writer: rank 0 caches the embeddings, the others wait
        import torch.distributed as dist

        if runtime.rank == 0 and run.cache:
            for ref in [*train_refs, *val_refs]:
                utterance_embeddings(ref, encoder, batch_size=run.encode_batch)
        dist.barrier()
    n_interleaves, arms_per_frame = frame_geometry([*train_refs, *val_refs])
    config = config.replace(
        n_arms=n_interleaves,
        arms_per_frame=arms_per_frame,
        target=run.target,
        train_subjects=tuple(sorted({r.subject for r in train_refs})),
    )
    need_eba = config.model.fusion == "convex"
    train_data = frame_data(train_refs, encoder, run, need_eba=need_eba, progress=progress)
    val_data = (
        frame_data(
            val_refs,
            encoder,
            run,
            need_eba=need_eba and config.model.eba_mode == "frame",
            progress=progress,
        )
        if val_refs
        else None
    )
    log_json = out.with_suffix(".log.json")
    log_csv = out.with_suffix(".log.csv")
    try:
        result = train(
            config,
            train_data,
            val_data,
            out_path=out,
            resume=resume,
            progress=step_progress,
            log_json=log_json,
            log_csv=log_csv,
            runtime=runtime,
        )
    finally:
        shutdown_runtime(runtime)
    return TrainRunResult(
        checkpoint=out,
        log_json=log_json,
        log_csv=log_csv,
        best_epoch=result.best_epoch,
        best_val_psnr=None if result.best_val_psnr is None else float(result.best_val_psnr),
        arm_weights=[float(v) for v in result.arm_weights],
        records=list(result.records),
        seconds=float(result.seconds),
        n_train=len(train_data),
        n_val=0 if val_data is None else len(val_data),
        notes=notes,
    )
