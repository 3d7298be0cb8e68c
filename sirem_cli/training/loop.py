"""Training loop for SIREM (paper section 3.5, ``method.md`` section 2).

Only the decoder, the arm logits and (``learned`` fusion) the fusion head are trained; the audio
encoder never runs here: :class:`FrameData` holds the cached embeddings and, per frame, the
per-arm coil-combined images B_a, so the MRI branch costs an einsum and no NUFFT.

Defaults follow the paper: AdamW (lr 1e-4, weight decay 1e-5), batch 8, cosine annealing over 20
epochs (stepped once per epoch, to 0), gradient norm clipped at 1.0, validation every 5 epochs and
after the last one, the weights with the best validation PSNR (mean of per-frame PSNR, data range
1) kept in ``out_path``. The full training state of the last finished epoch (weights, optimizer,
scheduler, RNG, log) goes to :func:`resume_path_for` ``(out_path)``; ``resume=True`` continues from
it and ends with the same weights as an uninterrupted run. Runs are deterministic on the CPU for a
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

from sirem_cli.config import JsonConfig
from sirem_cli.errors import FormatError, InputError, ShapeError, SiremError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.io.output import check_free_space, open_binary
from sirem_cli.models.decoder import DEFAULT_DROPOUT, DEFAULT_HIDDEN
from sirem_cli.models.sirem_net import ModelConfig, SiremNet
from sirem_cli.training.checkpoint import (
    checkpoint_payload,
    first_nonfinite,
    read_checkpoint,
    safe_torch_load,
    write_payload,
)
from sirem_cli.training.distributed import Runtime, resolve_device
from sirem_cli.training.losses import FFT_NORMS, LossWeights, psnr, sirem_loss

#: progress(epoch, step, n_steps, loss, val_psnr): epoch and step count from 1; val_psnr is the
#: latest validation PSNR in dB or None before the first validation.
ProgressFn = Callable[[int, int, int, float, float | None], None]

#: Name of the arm-logit parameter of SiremNet (its own optimizer group, see ``arm_lr``).
ARM_PARAM = "arm_logits"

_MODEL_FIELDS = (
    "image_size",
    "n_arms",
    "arms_per_frame",
    "decoder_hidden",
    "dropout",
    "arm_select",
    "arm_topk",
    "eba_mode",
    "no_audio",
    "encoder",
)
_RESUME_IGNORED = ("device",)


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Every training hyperparameter (defaults: the paper / ``method.md``).

    Attributes:
        image_size: (H, W) in pixels; must match the data.
        n_arms: A, interleaves (one arm weight each; set from the data by ``sirem train``).
        arms_per_frame: N, arms per frame of the data (None: A).
        decoder_hidden: decoder hidden widths.
        dropout: decoder dropout (the paper gives no value; 0.1).
        arm_select: "soft" or "topk" (straight-through hard top-K).
        arm_topk: K of the top-K selection.
        eba_mode: fusion map "static", "frame" or "learned".
        no_audio: "w/o audio" ablation (embeddings replaced by zeros).
        encoder: name of the audio encoder of the cached embeddings.
        lr: AdamW learning rate.
        decoder_prior: start the decoder at the mean training target (output bias = its
            logit, output weights x 0.01) rather than at sigmoid noise (not in the paper).
        arm_lr: learning rate of the arm logits (None: ``lr``, as in the paper). The paper's
            training takes ~10^5 steps; on small corpora a larger value lets the arm profile
            reach the budget within the run.
        weight_decay: AdamW weight decay.
        batch_size: frames per step (per process under DDP).
        epochs: epochs; the cosine schedule spans all of them.
        grad_clip: max gradient norm (<= 0 disables clipping).
        val_every: validate every this many epochs (and after the last).
        budget_k: K of the budget loss.
        psf_weight: alpha.
        budget_weight: beta.
        mask_weight: gamma.
        psf_exclude_dc: drop the DC term from L_psf.
        fft_norm: normalization of the FFTs in L_psf and L_mask.
        seed: seed of the weights, the frame order and dropout.
        device: "auto", "cpu", "cuda" or "cuda:N".
        val_batch_size: frames per validation batch.
        target: what the frames were trained against: "reference" or "truth" (recorded).
    """

    _unknown_what = "training option(s)"

    image_size: tuple[int, int] = (84, 84)
    n_arms: int = 13
    arms_per_frame: int | None = None
    decoder_hidden: tuple[int, ...] = DEFAULT_HIDDEN
    dropout: float = DEFAULT_DROPOUT
    arm_select: str = "soft"
    arm_topk: int = 2
    eba_mode: str = "static"
    no_audio: bool = False
    encoder: str = "hubert"
    lr: float = 1e-4
    arm_lr: float | None = None
    decoder_prior: bool = True
    weight_decay: float = 1e-5
    batch_size: int = 8
    epochs: int = 20
    grad_clip: float = 1.0
    val_every: int = 5
    budget_k: float = 2.0
    psf_weight: float = 0.1
    budget_weight: float = 0.01
    mask_weight: float = 0.01
    psf_exclude_dc: bool = False
    fft_norm: str = "backward"
    seed: int = 0
    device: str = "auto"
    val_batch_size: int = 32
    target: str = "reference"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "decoder_hidden", tuple(int(v) for v in self.decoder_hidden))
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--val-every", self.val_every),
            ("val_batch_size", self.val_batch_size),
        ):
            if value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        for flag, value, low in (
            ("--lr", self.lr, 0.0),
            ("--arm-lr", self.arm_lr, 0.0),
            ("--budget", self.budget_k, 0.0),
        ):
            if value is not None and not (math.isfinite(value) and value > low):
                raise InputError(f"{flag} must be a number > {low:g}, got {value:g}")
        if self.budget_k > self.n_arms:
            raise InputError(f"--budget must be at most {self.n_arms} arms, got {self.budget_k:g}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"--weight-decay must be >= 0, got {self.weight_decay:g}")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")
        if self.fft_norm not in FFT_NORMS:
            raise InputError(f"fft_norm must be one of {', '.join(FFT_NORMS)}")

    def model_config(self, embedding_dim: int) -> ModelConfig:
        """The :class:`ModelConfig` for embeddings of size ``embedding_dim``."""
        return ModelConfig(
            embedding_dim=embedding_dim, **{k: getattr(self, k) for k in _MODEL_FIELDS}
        )


def _shape(array: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in array.shape)


def _is_complex(array: Any) -> bool:
    dtype = array.dtype
    if isinstance(dtype, torch.dtype):
        return dtype.is_complex
    return np.issubdtype(np.dtype(dtype), np.complexfloating)


def _is_real_float(array: Any) -> bool:
    dtype = array.dtype
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point
    return np.issubdtype(np.dtype(dtype), np.floating)


def _take(array: Any, index: np.ndarray) -> Tensor:
    """Gather rows ``index`` from a tensor, numpy array or h5py dataset as a tensor."""
    if isinstance(array, Tensor):
        return array[torch.from_numpy(index)]
    unique, inverse = np.unique(index, return_inverse=True)
    rows = np.asarray(array[unique])  # h5py needs increasing, unique indices
    return torch.from_numpy(np.ascontiguousarray(rows[inverse]))


@dataclasses.dataclass
class FrameData:
    """Training or validation frames in memory (or any array supporting row indexing).

    Each field may be a torch tensor, a numpy array or an h5py dataset (read per batch).

    Attributes:
        embeddings: (N, E) float32 cached audio embeddings.
        arm_images: (N, A, H, W) complex64 per-arm coil-combined images
            B_a = sum_c conj(S_c) NUFFT^H(dcf_a * k_{c,a}) (A here: arms per frame).
        target: (N, H, W) float32 reference frames in [0, 1].
        eba: (N, H, W) float32 explained-by-audio maps in [0, 1], or None.
        arms: (N, A) int interleaf of each arm image, or None (every frame holds all
            interleaves in order).
    """

    embeddings: Any
    arm_images: Any
    target: Any
    eba: Any | None = None
    arms: Any | None = None

    def __post_init__(self) -> None:
        emb, arms, target = _shape(self.embeddings), _shape(self.arm_images), _shape(self.target)
        if len(emb) != 2 or not _is_real_float(self.embeddings):
            raise ShapeError(f"frame data: embeddings must be float (N, E), got {emb}")
        if len(arms) != 4 or not _is_complex(self.arm_images):
            raise ShapeError(f"frame data: arm_images must be complex (N, A, H, W), got {arms}")
        n_frames = emb[0]
        if (
            arms[0] != n_frames
            or target != (n_frames, *arms[2:])
            or not _is_real_float(self.target)
        ):
            raise ShapeError(
                f"frame data: expected target float (N, H, W) = {(n_frames, *arms[2:])} to match "
                f"embeddings {emb} and arm_images {arms}, got {target}"
            )
        if self.eba is not None and _shape(self.eba) != target:
            raise ShapeError(f"frame data: eba must be {target}, got {_shape(self.eba)}")
        if self.arms is not None and _shape(self.arms) != (n_frames, arms[1]):
            raise ShapeError(
                f"frame data: arms must be (N, A) = {(n_frames, arms[1])}, got {_shape(self.arms)}"
            )

    def __len__(self) -> int:
        return _shape(self.embeddings)[0]

    @property
    def embedding_dim(self) -> int:
        """E."""
        return _shape(self.embeddings)[1]

    @property
    def n_arms(self) -> int:
        """A."""
        return _shape(self.arm_images)[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        shape = _shape(self.arm_images)
        return shape[2], shape[3]

    def batch(
        self, index: np.ndarray, device: torch.device, *, with_eba: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Gather frames onto ``device``.

        Args:
            index: (b,) int64 frame indices.
            device: target device.
            with_eba: also return the eba maps (an error if there are none).

        Returns:
            embeddings (b, E) float32, arm_images (b, A, H, W) complex64, target (b, H, W)
            float32, eba (b, H, W) float32 or None, arms (b, A) int64 or None.
        """
        embeddings = _take(self.embeddings, index).to(device=device, dtype=torch.float32)
        arm_images = _take(self.arm_images, index).to(device=device, dtype=torch.complex64)
        target = _take(self.target, index).to(device=device, dtype=torch.float32)
        eba = None
        if with_eba:
            if self.eba is None:
                raise InputError("these frames have no explained-by-audio maps (eba)")
            eba = _take(self.eba, index).to(device=device, dtype=torch.float32)
        arms = None
        if self.arms is not None:
            arms = _take(self.arms, index).to(device=device, dtype=torch.long)
        return embeddings, arm_images, target, eba, arms

    def embedding_stats(self, chunk: int = 1024) -> tuple[Tensor, Tensor]:
        """(E,) mean and standard deviation of the embeddings over all frames."""
        total = torch.zeros(self.embedding_dim, dtype=torch.float64)
        square = torch.zeros(self.embedding_dim, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            rows = _take(self.embeddings, np.arange(start, min(len(self), start + chunk)))
            rows = rows.to(torch.float64)
            total += rows.sum(dim=0)
            square += (rows**2).sum(dim=0)
        mean = total / len(self)
        var = (square / len(self) - mean**2).clamp_min(0.0)
        return mean.to(torch.float32), var.sqrt().to(torch.float32)

    def mean_target(self, chunk: int = 256) -> Tensor:
        """(H, W) float32 mean target frame."""
        total = torch.zeros(self.image_size, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            index = np.arange(start, min(len(self), start + chunk))
            total += _take(self.target, index).to(torch.float64).sum(dim=0)
        return (total / len(self)).to(torch.float32)

    def mean_eba(self, chunk: int = 256) -> Tensor:
        """(H, W) float32 mean explained-by-audio map over all frames (the static map)."""
        if self.eba is None:
            raise InputError("these frames have no explained-by-audio maps (eba)")
        total = torch.zeros(self.image_size, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            index = np.arange(start, min(len(self), start + chunk))
            total += _take(self.eba, index).to(torch.float64).sum(dim=0)
        return (total / len(self)).to(torch.float32)

    @staticmethod
    def concat(parts: Sequence[FrameData]) -> FrameData:
        """Concatenate frame sets (e.g. one per prepared file) into one in-memory set."""
        if not parts:
            raise InputError("no frame data given")
        if len(parts) == 1:
            return parts[0]
        with_eba = all(part.eba is not None for part in parts)
        with_arms = any(part.arms is not None for part in parts)

        def cat(field: str) -> Tensor:
            return torch.cat([_take(getattr(p, field), np.arange(len(p))) for p in parts])

        return FrameData(
            embeddings=cat("embeddings"),
            arm_images=cat("arm_images"),
            target=cat("target"),
            eba=cat("eba") if with_eba else None,
            arms=torch.cat([_arms_of(p) for p in parts]) if with_arms else None,
        )


def _arms_of(part: FrameData) -> Tensor:
    """A part's arms, or every interleaf in order when it has none."""
    if part.arms is not None:
        return _take(part.arms, np.arange(len(part))).to(torch.long)
    return torch.arange(part.n_arms).expand(len(part), -1)


def save_frame_data(data: FrameData, path: Path) -> Path:
    """Write frames to a torch file of tensors only (loadable with ``weights_only=True``)."""
    index = np.arange(len(data))
    payload: dict[str, Any] = {
        "format": "sirem-frame-data",
        "embeddings": _take(data.embeddings, index).to(torch.float32),
        "arm_images": _take(data.arm_images, index).to(torch.complex64),
        "target": _take(data.target, index).to(torch.float32),
    }
    if data.eba is not None:
        payload["eba"] = _take(data.eba, index).to(torch.float32)
    if data.arms is not None:
        payload["arms"] = _take(data.arms, index).to(torch.long)
    with atomic_path(Path(path)) as tmp, open_binary(tmp) as handle:
        torch.save(payload, handle)
    return Path(path)


def load_frame_data(path: Path) -> FrameData:
    """Read frames written by :func:`save_frame_data`."""
    payload = safe_torch_load(Path(path))
    if not isinstance(payload, dict) or payload.get("format") != "sirem-frame-data":
        raise FormatError(f"{path}: not a sirem frame-data file")
    return FrameData(
        payload["embeddings"],
        payload["arm_images"],
        payload["target"],
        payload.get("eba"),
        payload.get("arms"),
    )


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
    if data.image_size != config.image_size:
        raise ShapeError(
            f"{name} data: images are {data.image_size[0]}x{data.image_size[1]} but image_size "
            f"is {config.image_size[0]}x{config.image_size[1]}"
        )
    per_frame = config.arms_per_frame or config.n_arms
    if data.n_arms != per_frame:
        raise ShapeError(
            f"{name} data: {data.n_arms} arms per frame, the model expects {per_frame}"
        )
    if data.arms is None and data.n_arms != config.n_arms:
        raise ShapeError(
            f"{name} data: no arms index, but {data.n_arms} != {config.n_arms} interleaves"
        )
    if data.embedding_dim != embedding_dim:
        raise ShapeError(
            f"{name} data: embeddings of size {data.embedding_dim}, expected {embedding_dim}"
        )
    if config.eba_mode == "frame" and data.eba is None:
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
    weights = LossWeights(config.psf_weight, config.budget_weight, config.mask_weight)
    with_eba = config.eba_mode == "frame"
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
    if config.eba_mode == "static" and train_data.eba is None:
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
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
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
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        start_epoch = int(state["epoch"])
        best_psnr = state.get("best_val_psnr")
        best_epoch = int(state.get("best_epoch", 0))
        records = json.loads(state["records_json"])
    wrapped = runtime.wrap(model)
    weights = LossWeights(config.psf_weight, config.budget_weight, config.mask_weight)
    with_eba = config.eba_mode == "frame"
    last_val_psnr = best_psnr
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
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
        scheduler.step()
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
        records.append(
            {
                "epoch": epoch + 1,
                "loss": means[0],
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
                "scheduler": scheduler.state_dict(),
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
