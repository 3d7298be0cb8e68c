"""``sirem train`` and ``sirem reconstruct``: prepared files <-> the SIREM model.

Training never runs a NUFFT per epoch: each frame's per-arm coil-combined images
``B_j = sum_c conj(S_c) NUFFT_j^H(dcf_j * k_{c,j})`` are computed once by the SENSE operator
(:meth:`~sirem_cli.mri.sense.FrameSenseOp.arm_adjoint`), and the MRI branch
``|sum_j p_j B_j|`` is then exact and cheap. Reconstruction goes the direct way, the weighted
k-space through the same operator's adjoint.

Frozen-encoder embeddings are computed once per utterance and cached in the prepared file
under ``embeddings/<encoder>`` together with their source and timing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.api.common import backend_info, check_finite
from sirem_cli.errors import InputError
from sirem_cli.io.atomic import check_output_path
from sirem_cli.io.prepared import (
    PreparedSet,
    ReconWriter,
    UtteranceRef,
    h5_open_waiting,
    store_embeddings,
)

StageFn = Callable[[str, int, int], None]
#: reconstruct --branch -> the field of SiremOutput written.
BRANCHES = {"fused": "recon", "mri": "x_mri", "audio": "x_audio"}


def _encoder_source(encoder: Any) -> str:
    return str(getattr(encoder, "source", None) or encoder.name)


def utterance_embeddings(
    ref: UtteranceRef,
    encoder: Any,
    *,
    batch_size: int = 16,
    cache: bool = True,
    progress: StageFn | None = None,
) -> tuple[np.ndarray, float]:
    """Embeddings (F, E) of one utterance, from the cache or computed (and then cached).

    Returns:
        The embeddings and the encoder's cost in ms per frame (measured now or when cached).
    """
    from sirem_cli.models.encoders import cut_windows

    key = f"embeddings/{encoder.name}"
    with h5_open_waiting(ref.path, "r") as f:
        group = f["utterances"][ref.prefix]
        if key in group:
            info = json.loads(group[key].attrs.get("info", "{}"))
            if (
                info.get("source") == _encoder_source(encoder)
                and group[key].shape[0] == ref.n_frames
            ):
                return group[key][()], float(info.get("ms_per_frame", float("nan")))
    data = PreparedSet.read(ref, ["audio", "audio_window"])
    windows = cut_windows(data["audio"], data["audio_window"])

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(f"encode {ref.prefix}", done, total)

    t0 = time.perf_counter()
    values = encoder.encode(windows, batch_size=batch_size, progress=report)
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(windows))
    if cache:
        try:
            store_embeddings(
                ref.path,
                ref.prefix,
                encoder.name,
                values,
                {"source": _encoder_source(encoder), "ms_per_frame": ms},
            )
        except OSError:
            pass  # a read-only prepared file: keep the embeddings in memory only
    return np.asarray(values, dtype=np.float32), ms


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
        emb, _ = utterance_embeddings(ref, encoder, batch_size=run.encode_batch, progress=progress)
        data = PreparedSet.read(
            ref, ["kspace", "arms", "traj", "dcf", "smaps", "reference", "truth", "eba"]
        )
        check_finite(ref.path, ref.prefix, "kspace", data["kspace"])
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
    best_val_psnr: float
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


def run_train(
    prepared: Sequence[Path],
    out: Path | None,
    config: Any,
    run: ModelRunConfig,
    *,
    resume: bool = False,
    progress: StageFn | None = None,
    step_progress: Callable[..., None] | None = None,
) -> TrainRunResult:
    """Train SIREM on the train split of ``prepared`` (validated on the val split)."""
    from sirem_cli.training.distributed import init_runtime, resolve_device, shutdown_runtime
    from sirem_cli.training.loop import train

    run.validate()
    out = Path(out) if out is not None else default_checkpoint_path(prepared, config.no_audio)
    check_output_path(out, overwrite=True)
    dataset = PreparedSet(prepared)
    notes: list[str] = []
    train_refs = dataset.select("train")
    val_refs = [u for u in dataset.utterances if u.split == "val"]
    if not val_refs:
        notes.append("no validation utterances: the last epoch is kept")
    # Under torchrun (WORLD_SIZE > 1) every process joins one DistributedDataParallel run;
    # otherwise this is a single-process runtime.
    runtime = init_runtime(config.device)
    device = str(resolve_device(config.device, runtime))
    encoder = _make_encoder(run, device)
    if runtime.distributed:  # one writer: rank 0 caches the embeddings, the others wait
        import torch.distributed as dist

        if runtime.rank == 0:
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
        best_val_psnr=float(result.best_val_psnr),
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
    overwrite: bool = True,
    progress: StageFn | None = None,
) -> ReconstructResult:
    """Reconstruct ``split`` of ``prepared`` with a trained checkpoint into a recon file.

    ``branch`` selects the output: ``fused`` (the SIREM reconstruction), ``mri`` (the MRI branch
    alone: gridding of the learned arm-weighted k-space) or ``audio`` (the decoder's image).
    """
    import torch

    from sirem_cli.mri.sense import FrameSenseOp
    from sirem_cli.training.checkpoint import load_model
    from sirem_cli.training.distributed import resolve_device

    if batch <= 0:
        raise InputError(f"--batch must be positive, got {batch}")
    if branch not in BRANCHES:
        raise InputError(f"--branch must be one of {', '.join(BRANCHES)}, got {branch!r}")
    check_output_path(Path(out), overwrite=overwrite)
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
            emb, enc_ms = utterance_embeddings(ref, encoder, batch_size=run.encode_batch)
            data = PreparedSet.read(ref, ["kspace", "arms", "traj", "dcf", "smaps", "eba"])
            if data["traj"].shape[0] != cfg.n_arms:
                raise InputError(
                    f"{checkpoint}: trained on {cfg.n_arms} interleaves, {ref.path}: "
                    f"{ref.prefix} has {data['traj'].shape[0]}"
                )
            check_finite(ref.path, ref.prefix, "kspace", data["kspace"])
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
