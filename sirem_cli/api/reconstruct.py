"""``sirem reconstruct``: apply a trained checkpoint to prepared utterances."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sirem_cli.api.audio import ModelRunConfig, StageFn, make_encoder, utterance_embeddings
from sirem_cli.api.common import backend_info, training_leak_warnings
from sirem_cli.errors import InputError
from sirem_cli.io.checks import check_device_option, check_finite_arrays
from sirem_cli.io.estimates import recon_bytes
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedSet, ReconWriter
from sirem_cli.io.schema import RECON_FORMAT

#: reconstruct --branch -> the field of SiremOutput written.
BRANCHES = {"fused": "recon", "mri": "x_mri", "audio": "x_audio"}
#: Datasets checked for NaN/Inf when frames are loaded for reconstruction.
RECON_INPUTS = ("kspace", "traj", "dcf", "smaps", "eba", "embeddings")


@dataclass
class ReconstructResult:
    """What :func:`run_reconstruct` wrote."""

    out: Path
    method: str
    rows: list[tuple[str, int, float, float]]  # prefix, frames, ms/frame end to end, cached
    notice: str | None
    backend: str
    warnings: list[str] = field(default_factory=list)


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
        if ref.n_frames and tuple(cfg.image_size) != ref.image_size:
            raise InputError(
                f"{checkpoint}: model image size {tuple(cfg.image_size)} does not match "
                f"{ref.path} ({ref.image_size})"
            )
        if ref.arms_per_frame != trained_n:
            raise InputError(
                f"{checkpoint}: trained on frames of {trained_n} arms, but {ref.path} holds "
                f"frames of {ref.arms_per_frame} (prepare it with --arms-per-frame {trained_n})"
            )
    encoder_run = ModelRunConfig(**{**run.__dict__, "encoder": ckpt.encoder})
    encoder = make_encoder(encoder_run, str(device))
    if encoder.embedding_dim != cfg.embedding_dim:
        raise InputError(
            f"{checkpoint}: the model expects {cfg.embedding_dim}-dim {ckpt.encoder} embeddings, "
            f"the encoder gives {encoder.embedding_dim}"
        )
    trained_on = set(ckpt.train_config.get("train_subjects", []))
    warnings = training_leak_warnings(checkpoint, (r.subject for r in refs), trained_on, split)
    method = "sirem-no-audio" if cfg.no_audio else "sirem"
    if branch != "fused":
        method = f"{method}-{branch}"
    rows = []
    model.eval()
    record = {
        "branch": branch,
        "checkpoint": str(checkpoint),
        "target": ckpt.train_config.get("target", "reference"),
        "train_subjects": sorted(trained_on),
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
            oracle = cfg.fusion == "convex" and cfg.eba_mode == "frame"
            if oracle and "eba" not in data:
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
                eba_t = torch.from_numpy(data["eba"][start:stop]).to(device) if oracle else None
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
    return ReconstructResult(
        Path(out), method, rows, info["notice"], info["nufft_backend"], warnings
    )
