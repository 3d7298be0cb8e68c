"""``sirem train`` and ``sirem reconstruct``: prepared files <-> the SIREM model.

Training never runs a NUFFT per epoch: each frame's per-arm coil-combined images
``B_j = sum_c conj(S_c) NUFFT_j^H(dcf_j * k_{c,j})`` are computed once by the SENSE operator
(:meth:`~sirem_cli.mri.sense.FrameSenseOp.arm_adjoint`), and the MRI branch
``|sum_j p_j B_j|`` is then exact and cheap. Reconstruction goes the direct way, the weighted
k-space through the same operator's adjoint.

Frozen-encoder embeddings are computed once per utterance and kept in the user's embedding
cache (:mod:`sirem_cli.io.embcache`); prepared files are inputs and are never written.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.api.common import backend_info
from sirem_cli.errors import FormatError, InputError
from sirem_cli.io import embcache
from sirem_cli.io.checks import check_device_option, check_finite_arrays
from sirem_cli.io.estimates import recon_bytes
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedSet, ReconWriter, UtteranceRef, h5_open_waiting
from sirem_cli.io.schema import RECON_FORMAT

StageFn = Callable[[str, int, int], None]
#: reconstruct --branch -> the field of SiremOutput written.
BRANCHES = {"fused": "recon", "mri": "x_mri", "audio": "x_audio"}
#: Datasets checked for NaN/Inf when frames are loaded for training / reconstruction.
TRAIN_INPUTS = ("kspace", "traj", "dcf", "smaps", "reference", "truth", "eba", "embeddings")
RECON_INPUTS = ("kspace", "traj", "dcf", "smaps", "eba", "embeddings")


def utterance_embeddings(
    ref: UtteranceRef,
    encoder: Any,
    *,
    batch_size: int = 16,
    cache: bool = True,
    progress: StageFn | None = None,
) -> tuple[np.ndarray, float]:
    """Embeddings (F, E) of one utterance: from the user's embedding cache (or an older prepared
    file that holds them), else computed and then cached (:mod:`sirem_cli.io.embcache`).

    Returns:
        The embeddings and the encoder's cost in ms per frame (measured now or when cached).
    """
    from sirem_cli.models.encoders import cut_windows

    found = embcache.lookup(ref, encoder, cache=cache)
    if found.values is not None:
        return found.values, found.ms_per_frame
    windows = cut_windows(found.audio, found.window)

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(f"encode {ref.prefix}", done, total)

    t0 = time.perf_counter()
    values = encoder.encode(windows, batch_size=batch_size, progress=report)
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(windows))
    values = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise FormatError(
            f"{ref.path}: utterance {ref.prefix}: the {encoder.name} encoder gives NaN or Inf "
            "embeddings for its audio"
        )
    embcache.store(found.entry, values, ms)
    return values, ms


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


@dataclass(frozen=True)
class ModelRunConfig:
    """Options shared by train and reconstruct that are not model hyperparameters."""

    encoder: str = "hubert"
    hubert: str | None = None
    bf16: bool = False
    target: str = "reference"
    device: str = "auto"
    encode_batch: int = 16
    cache: bool = True  # the user's embedding cache (--no-cache: neither read nor written)

    def validate(self) -> None:
        """Raise InputError naming the first bad option."""
        from sirem_cli.models.registry import encoder_spec

        encoder_spec(self.encoder)
        if self.target not in ("reference", "truth"):
            raise InputError(f"--target must be reference or truth, got {self.target!r}")


def _make_encoder(run: ModelRunConfig, device: str) -> Any:
    from sirem_cli.models.encoders import make_encoder

    return make_encoder(run.encoder, hubert=run.hubert, device=device, bf16=run.bf16)


def frame_data(
    refs: Sequence[UtteranceRef],
    encoder: Any,
    run: ModelRunConfig,
    *,
    need_eba: bool,
    progress: StageFn | None = None,
) -> Any:
    """Load utterances as one in-memory :class:`~sirem_cli.training.loop.FrameData`."""
    from sirem_cli.training.loop import FrameData

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
    config: Any,
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
    out = Path(out) if out is not None else default_checkpoint_path(prepared, config.no_audio)
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
    config: Any,
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
    encoder = _make_encoder(run, device)
    if runtime.distributed:  # one writer: rank 0 caches the embeddings, the others wait
        import torch.distributed as dist

        if runtime.rank == 0 and run.cache:
            for ref in [*train_refs, *val_refs]:
                utterance_embeddings(ref, encoder, batch_size=run.encode_batch)
        dist.barrier()
    n_interleaves, arms_per_frame = frame_geometry([*train_refs, *val_refs])
    config = dataclasses.replace(
        config, n_arms=n_interleaves, arms_per_frame=arms_per_frame, target=run.target
    )
    need_eba = config.eba_mode in ("static", "frame", "learned")
    train_data = frame_data(train_refs, encoder, run, need_eba=need_eba, progress=progress)
    val_data = (
        frame_data(val_refs, encoder, run, need_eba=config.eba_mode == "frame", progress=progress)
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


@dataclass
class ReconstructResult:
    """What :func:`run_reconstruct` wrote."""

    out: Path
    method: str
    rows: list[tuple[str, int, float, float]]  # prefix, frames, ms/frame end to end, cached
    notice: str | None
    backend: str


def run_reconstruct(
    checkpoint: Path,
    prepared: Sequence[Path],
    out: Path,
    run: ModelRunConfig,
    *,
    split: str = "test",
    batch: int = 64,
    branch: str = "fused",
    overwrite: bool = False,
    progress: StageFn | None = None,
) -> ReconstructResult:
    """Reconstruct ``split`` of ``prepared`` with a trained checkpoint into a recon file.

    ``branch`` selects the output: ``fused`` (the SIREM reconstruction), ``mri`` (the MRI branch
    alone: gridding of the learned arm-weighted k-space) or ``audio`` (the decoder's image).
    ``out`` follows the output policy of :mod:`sirem_cli.io.output` (never an input, replaced
    only with ``overwrite``, locked while written).
    """
    if batch <= 0:
        raise InputError(f"--batch must be positive, got {batch}")
    if branch not in BRANCHES:
        raise InputError(f"--branch must be one of {', '.join(BRANCHES)}, got {branch!r}")
    check_device_option(run.device)
    inputs = [*prepared, checkpoint]
    check_output(Path(out), inputs=inputs, overwrite=overwrite, kind=RECON_FORMAT)
    refs = PreparedSet(prepared).select(split)
    with claim_outputs(
        [out],
        inputs=inputs,
        overwrite=overwrite,
        expected_bytes=recon_bytes(refs),
        kind=RECON_FORMAT,
    ):
        return _run_reconstruct(
            checkpoint,
            prepared,
            out,
            run,
            split=split,
            batch=batch,
            branch=branch,
            overwrite=overwrite,
            progress=progress,
        )


def _run_reconstruct(
    checkpoint: Path,
    prepared: Sequence[Path],
    out: Path,
    run: ModelRunConfig,
    *,
    split: str,
    batch: int,
    branch: str,
    overwrite: bool,
    progress: StageFn | None,
) -> ReconstructResult:
    import torch

    from sirem_cli.mri.sense import FrameSenseOp
    from sirem_cli.training.checkpoint import load_model
    from sirem_cli.training.distributed import resolve_device

    if batch <= 0:
        raise InputError(f"--batch must be positive, got {batch}")
    if branch not in BRANCHES:
        raise InputError(f"--branch must be one of {', '.join(BRANCHES)}, got {branch!r}")
    dataset = PreparedSet(prepared)
    refs = dataset.select(split)
    device = resolve_device(run.device)
    info = backend_info("cuda" if device.type == "cuda" else "cpu")
    model, ckpt = load_model(Path(checkpoint), device=device)
    cfg = ckpt.model_config
    trained_n = cfg.arms_per_frame or cfg.n_arms
    for ref in refs:
        if ref.n_frames and tuple(cfg.image_size) != _image_size(ref):
            raise InputError(
                f"{checkpoint}: model image size {tuple(cfg.image_size)} does not match "
                f"{ref.path} ({_image_size(ref)})"
            )
        if ref.arms_per_frame != trained_n:
            raise InputError(
                f"{checkpoint}: trained on frames of {trained_n} arms, but {ref.path} holds "
                f"frames of {ref.arms_per_frame} (prepare it with --arms-per-frame {trained_n})"
            )
    encoder_run = ModelRunConfig(**{**run.__dict__, "encoder": ckpt.encoder})
    encoder = _make_encoder(encoder_run, str(device))
    if encoder.embedding_dim != cfg.embedding_dim:
        raise InputError(
            f"{checkpoint}: the model expects {cfg.embedding_dim}-dim {ckpt.encoder} embeddings, "
            f"the encoder gives {encoder.embedding_dim}"
        )
    method = "sirem-no-audio" if cfg.no_audio else "sirem"
    if branch != "fused":
        method = f"{method}-{branch}"
    rows = []
    model.eval()
    record = {
        "branch": branch,
        "checkpoint": str(checkpoint),
        "target": ckpt.train_config.get("target", "reference"),
        "split": split,
        "batch": batch,
        "encoder": ckpt.encoder,
        "model_config": cfg.to_dict(),
    }
    with ReconWriter(
        Path(out),
        method=method,
        source=[str(p) for p in dataset.paths],
        config=record,
        device=str(device),
        nufft_backend=info["nufft_backend"],
        overwrite=overwrite,
    ) as writer:
        for i, ref in enumerate(refs):
            if progress is not None:
                progress(ref.prefix, i, len(refs))
            emb, enc_ms = utterance_embeddings(
                ref, encoder, batch_size=run.encode_batch, cache=run.cache
            )
            data = PreparedSet.read(ref, ["kspace", "arms", "traj", "dcf", "smaps", "eba"])
            if data["traj"].shape[0] != cfg.n_arms:
                raise InputError(
                    f"{checkpoint}: trained on {cfg.n_arms} interleaves, {ref.path}: "
                    f"{ref.prefix} has {data['traj'].shape[0]}"
                )
            check_finite_arrays(ref.path, ref.prefix, {**data, "embeddings": emb}, RECON_INPUTS)
            if cfg.eba_mode == "frame" and "eba" not in data:
                raise InputError(
                    f"{ref.path}: {ref.prefix} has no eba maps, needed by a --eba frame model"
                )
            t0 = time.perf_counter()
            sense = FrameSenseOp(
                data["traj"],
                data["smaps"],
                data.get("arms"),
                n_frames=len(data["kspace"]),
                device=device,
            )
            dcf = torch.from_numpy(data["dcf"]).to(device)
            n_frames = data["kspace"].shape[0]
            frames = []
            for start in range(0, n_frames, batch):
                stop = min(n_frames, start + batch)
                emb_t = torch.from_numpy(emb[start:stop]).to(device)
                k_t = torch.from_numpy(data["kspace"][start:stop]).to(device)
                eba_t = (
                    torch.from_numpy(data["eba"][start:stop]).to(device)
                    if cfg.eba_mode == "frame"
                    else None
                )
                with torch.no_grad():
                    output = model.forward_kspace(
                        emb_t, k_t, sense.frames(slice(start, stop)), dcf, eba_t
                    )
                frames.append(getattr(output, BRANCHES[branch]).cpu().numpy())
            wall = time.perf_counter() - t0
            recon = np.concatenate(frames)
            cached_ms = 1000 * wall / max(1, n_frames)
            writer.write_recon(
                ref.prefix,
                recon,
                wall_s=wall + enc_ms * n_frames / 1000,
                extra={
                    "ms_per_frame_cached": cached_ms,
                    "encoder_ms_per_frame": enc_ms,
                    "frame_rate_hz": ref.frame_rate_hz,
                },
            )
            rows.append((ref.prefix, n_frames, cached_ms + enc_ms, cached_ms))
        if progress is not None:
            progress("", len(refs), len(refs))
    return ReconstructResult(Path(out), method, rows, info["notice"], info["nufft_backend"])


def _image_size(ref: UtteranceRef) -> tuple[int, int]:
    with h5_open_waiting(ref.path, "r") as f:
        return tuple(int(v) for v in f["utterances"][ref.prefix]["smaps"].shape[-2:])
