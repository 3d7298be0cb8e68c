"""Training of the speech-informed prior network on in-memory arrays.

The network (:class:`~sirem_cli.models.speech_prior.SpeechPriorNet`) predicts, per frame,
the deviation Delta_t of the frame from its speaker's normalized time-averaged image; the
prior is ``p_t = |x_bar|_n + w (.) Delta_t`` (the magnitude of
:func:`~sirem_cli.models.speech_prior.prior_frames`) and the loss is the pixel-weighted mean
squared error of p_t against the target frame (the ground truth where the corpus has it,
normalized to [0, 1] per frame)::

    loss = mean_t mean_r lw(r) (|x_bar|_n(r) + w(r) Delta_t(r) - target_t(r))^2

Batches hold ``speakers_per_batch`` speakers (the speaker U-Net runs once per speaker and
batch). Augmentation (``shift_px``, ``zoom``, ``rotate_deg``) warps a speaker's x_bar and
its frames' targets and weights by one random similarity transform per speaker and batch:
new anatomies from the training speakers only. Optimizer AdamW, cosine annealing of the
learning rate per epoch, gradient norm clipping, validation after every ``val_every``
epochs, the weights of the best validation PSNR kept. Runs are deterministic on the CPU for
a seed (initialization, batch order, augmentation and dropout all draw from seeded
generators).

Checkpoints (:func:`prior_checkpoint_payload`) hold tensors, numbers and strings only and
are read with ``torch.load(weights_only=True)`` (:func:`read_prior_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sirem_cli import __version__
from sirem_cli.config import JsonConfig
from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.models.speech_prior import SpeechPriorConfig, SpeechPriorNet
from sirem_cli.training.checkpoint import safe_torch_load

PRIOR_CHECKPOINT_FORMAT = "sirem-speech-prior"
PRIOR_CHECKPOINT_VERSION = 1

#: progress(epoch, n_epochs, train_loss, val_psnr or None)
ProgressFn = Callable[[int, int, float, float | None], None]


@dataclasses.dataclass(frozen=True)
class PriorTrainConfig(JsonConfig):
    """Hyperparameters of :func:`train_prior`.

    Attributes:
        epochs: passes over the (sub-sampled) training frames.
        batch_size: frames per step.
        speakers_per_batch: distinct speakers per step (each contributes
            ``batch_size // speakers_per_batch`` frames).
        frames_per_epoch: training frames drawn per epoch (0: all).
        lr: AdamW learning rate (cosine-annealed to ``lr_min`` over the epochs).
        lr_min: final learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: gradient norm bound (0: none).
        val_every: validate after every this many epochs (and after the last).
        nll_weight: weight of the log-variance head's Gaussian negative log-likelihood
            (models with ``uncertainty``; it sees the prior's residual detached, so it does
            not change the mean).
        shift_px: augmentation: random translation up to this many pixels (0: off).
        zoom: augmentation: random isotropic scale in [1 - zoom, 1 + zoom].
        rotate_deg: augmentation: random rotation up to this many degrees.
        seed: seed of initialization, batch order, augmentation and dropout.
    """

    _unknown_what = "prior training config keys"

    epochs: int = 20
    batch_size: int = 64
    speakers_per_batch: int = 2
    frames_per_epoch: int = 0
    lr: float = 1e-3
    lr_min: float = 1e-5
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    val_every: int = 1
    nll_weight: float = 1.0
    shift_px: float = 0.0
    zoom: float = 0.0
    rotate_deg: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise InputError("epochs, batch_size and val_every must be >= 1")
        if not 1 <= self.speakers_per_batch <= self.batch_size:
            raise InputError(
                f"speakers_per_batch must be in 1..batch_size, got {self.speakers_per_batch}"
            )
        if self.frames_per_epoch < 0:
            raise InputError(f"frames_per_epoch must be >= 0, got {self.frames_per_epoch}")
        if not (self.lr > 0 and 0 <= self.lr_min <= self.lr):
            raise InputError(f"need lr > 0 and 0 <= lr_min <= lr, got {self.lr}, {self.lr_min}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise InputError("weight_decay and grad_clip must be >= 0")
        if self.shift_px < 0 or not 0 <= self.zoom < 1 or self.rotate_deg < 0:
            raise InputError("shift_px >= 0, 0 <= zoom < 1 and rotate_deg >= 0 are required")

    @property
    def augments(self) -> bool:
        """Whether any augmentation is on."""
        return self.shift_px > 0 or self.zoom > 0 or self.rotate_deg > 0


@dataclasses.dataclass
class PriorData:
    """Training or validation frames of several speakers, in memory.

    Attributes:
        contexts: (N, T, E) float32 embedding contexts (``context_windows``).
        xbar: (U, H, W) float32 normalized |x_bar| per speaker (``normalize_xbar``).
        speaker: (N,) int64 speaker index of each frame into ``xbar``.
        targets: (N, H, W) float32 target frames in [0, 1].
        weight: (H, W) float32 map w of ``p = |x_bar|_n + w Delta`` (None: 1).
        loss_weight: (H, W) float32 pixel weights of the loss (None: 1).
    """

    contexts: Tensor
    xbar: Tensor
    speaker: Tensor
    targets: Tensor
    weight: Tensor | None = None
    loss_weight: Tensor | None = None

    def __post_init__(self) -> None:
        self.contexts = torch.as_tensor(self.contexts, dtype=torch.float32)
        self.xbar = torch.as_tensor(self.xbar, dtype=torch.float32)
        self.speaker = torch.as_tensor(self.speaker, dtype=torch.long)
        self.targets = torch.as_tensor(self.targets, dtype=torch.float32)
        n = self.contexts.shape[0]
        if self.contexts.ndim != 3 or n < 1:
            raise ShapeError(f"contexts: expected (N, T, E), got {tuple(self.contexts.shape)}")
        if self.xbar.ndim != 3:
            raise ShapeError(f"xbar: expected (U, H, W), got {tuple(self.xbar.shape)}")
        size = tuple(self.xbar.shape[1:])
        if tuple(self.speaker.shape) != (n,):
            raise ShapeError(f"speaker: expected ({n},), got {tuple(self.speaker.shape)}")
        if int(self.speaker.min()) < 0 or int(self.speaker.max()) >= self.xbar.shape[0]:
            raise ShapeError(f"speaker: indices must lie in [0, {self.xbar.shape[0]})")
        if tuple(self.targets.shape) != (n, *size):
            raise ShapeError(f"targets: expected {(n, *size)}, got {tuple(self.targets.shape)}")
        for name in ("weight", "loss_weight"):
            value = getattr(self, name)
            if value is not None:
                value = torch.as_tensor(value, dtype=torch.float32)
                if tuple(value.shape) != size:
                    raise ShapeError(f"{name}: expected {size}, got {tuple(value.shape)}")
                setattr(self, name, value)
        for name in ("contexts", "xbar", "targets"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise InputError(f"{name}: contains NaN or infinite values")

    def __len__(self) -> int:
        return int(self.contexts.shape[0])


@dataclasses.dataclass
class PriorTrainResult:
    """What :func:`train_prior` returns.

    Attributes:
        model: the network with the best validation weights, in eval mode.
        log: one dict per epoch (epoch, lr, train_loss, val_loss, val_psnr, seconds).
        best_epoch: epoch of the kept weights.
        best_val_psnr: their validation PSNR (dB).
        start_val_psnr: validation PSNR of the untrained network (Delta = 0: p = x_bar).
    """

    model: SpeechPriorNet
    log: list[dict[str, Any]]
    best_epoch: int
    best_val_psnr: float
    start_val_psnr: float


def _prior_magnitude(data: PriorData, delta: Tensor, rows: Tensor) -> Tensor:
    """``|x_bar|_n + w Delta`` for the given rows: (B, H, W)."""
    base = data.xbar[data.speaker[rows]]
    return base + (delta if data.weight is None else data.weight * delta)


def _weighted_mse(pred: Tensor, target: Tensor, loss_weight: Tensor | None) -> Tensor:
    err = (pred - target).square()
    if loss_weight is not None:
        err = err * loss_weight
    return err.mean()


@torch.no_grad()
def evaluate_prior(
    model: SpeechPriorNet, data: PriorData, *, batch_size: int = 256
) -> tuple[float, float]:
    """Loss and PSNR of the prior magnitudes against the targets.

    Args:
        model: the network (put in eval mode here).
        data: frames to score.
        batch_size: frames per forward pass.

    Returns:
        (mean weighted loss, mean per-frame PSNR in dB with data range 1).
    """
    model.eval()
    losses, psnrs = [], []
    maps_cache: dict[int, Tensor] = {}
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(len(data), start + batch_size))
        spk = data.speaker[rows]
        uniq = torch.unique(spk)
        for u in uniq.tolist():
            if u not in maps_cache:
                maps_cache[u] = model.encode_image(data.xbar[u : u + 1])
        maps = torch.cat([maps_cache[u] for u in uniq.tolist()], dim=0)
        local = torch.searchsorted(uniq, spk)
        delta, _ = model.heads(maps, model.encode_audio(data.contexts[rows]), local)
        pred = _prior_magnitude(data, delta, rows)
        target = data.targets[rows]
        err = (pred - target).square()
        lw = data.loss_weight
        losses.append(float((err if lw is None else err * lw).mean(dim=(1, 2)).sum()))
        mse = err.mean(dim=(1, 2)).clamp_min(1e-10)
        psnrs.append((-10.0 * torch.log10(mse)).sum().item())
    n = len(data)
    return sum(losses) / n, sum(psnrs) / n


def _batches(data: PriorData, config: PriorTrainConfig, gen: torch.Generator) -> list[Tensor]:
    """One epoch's batches: blocks of one speaker's frames, ``speakers_per_batch`` per batch."""
    n = len(data)
    rows = torch.randperm(n, generator=gen)
    if config.frames_per_epoch and config.frames_per_epoch < n:
        rows = rows[: config.frames_per_epoch]
    per = max(1, config.batch_size // config.speakers_per_batch)
    blocks: list[Tensor] = []
    spk = data.speaker[rows]
    for u in torch.unique(spk).tolist():
        mine = rows[spk == u]
        blocks.extend(mine[i : i + per] for i in range(0, mine.shape[0], per))
    order = torch.randperm(len(blocks), generator=gen).tolist()
    blocks = [blocks[i] for i in order]
    k = config.speakers_per_batch
    return [torch.cat(blocks[i : i + k]) for i in range(0, len(blocks), k)]


def _random_warps(
    n: int, config: PriorTrainConfig, size: tuple[int, int], gen: torch.Generator
) -> Tensor:
    """(n, 2, 3) affine matrices for ``affine_grid`` (normalized coordinates)."""
    u = torch.rand((n, 4), generator=gen) * 2 - 1  # (n, 4) in [-1, 1)
    scale = 1.0 + config.zoom * u[:, 0]
    angle = math.radians(config.rotate_deg) * u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    tx = config.shift_px * u[:, 2] * 2 / size[1]
    ty = config.shift_px * u[:, 3] * 2 / size[0]
    return torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], dim=1
    )  # (n, 2, 3)


def _warp(images: Tensor, theta: Tensor) -> Tensor:
    """Warp (n, K, H, W) images with (n, 2, 3) affine matrices (bilinear, zeros outside)."""
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def _step_loss(
    model: SpeechPriorNet,
    data: PriorData,
    rows: Tensor,
    config: PriorTrainConfig,
    gen: torch.Generator,
) -> Tensor:
    spk = data.speaker[rows]
    uniq = torch.unique(spk)
    local = torch.searchsorted(uniq, spk)  # (B,) index into uniq
    xbar = data.xbar[uniq]  # (U, H, W)
    targets = data.targets[rows]  # (B, H, W)
    weight = data.weight
    loss_weight = data.loss_weight
    if config.augments:
        size = (xbar.shape[-2], xbar.shape[-1])
        theta = _random_warps(uniq.shape[0], config, size, gen)  # (U, 2, 3)
        xbar = _warp(xbar[:, None], theta)[:, 0]
        targets = _warp(targets[:, None], theta[local])[:, 0]
        if weight is not None:
            weight = _warp(weight.expand(uniq.shape[0], 1, *size), theta)[:, 0][local]
        if loss_weight is not None:
            loss_weight = _warp(loss_weight.expand(uniq.shape[0], 1, *size), theta)[:, 0][local]
    delta, logvar = model.forward_full(data.contexts[rows], xbar, local)
    dev = delta if weight is None else weight * delta
    pred = xbar[local] + dev
    loss = _weighted_mse(pred, targets, loss_weight)
    if logvar is not None and config.nll_weight > 0:
        loss = loss + config.nll_weight * gaussian_nll(pred.detach() - targets, logvar)
    return loss


def gaussian_nll(residual: Tensor, logvar: Tensor) -> Tensor:
    """Mean Gaussian negative log-likelihood (up to constants): ``r^2 e^{-v} + v``, halved."""
    return 0.5 * (residual.square() * torch.exp(-logvar) + logvar).mean()


def train_prior(
    model_config: SpeechPriorConfig,
    train: PriorData,
    val: PriorData,
    config: PriorTrainConfig,
    *,
    progress: ProgressFn | None = None,
) -> PriorTrainResult:
    """Train a :class:`SpeechPriorNet` and keep the weights of the best validation PSNR.

    Args:
        model_config: the network to build.
        train: training frames.
        val: validation frames (other speakers).
        config: hyperparameters.
        progress: called after every epoch.

    Returns:
        :class:`PriorTrainResult`.

    Raises:
        ShapeError: data that do not fit the model configuration.
    """
    for name, data in (("train", train), ("val", val)):
        shape = tuple(data.contexts.shape[1:])
        if shape != (model_config.context, model_config.embedding_dim):
            raise ShapeError(
                f"{name} contexts: expected (N, {model_config.context}, "
                f"{model_config.embedding_dim}), got {tuple(data.contexts.shape)}"
            )
        if tuple(data.xbar.shape[1:]) != model_config.image_size:
            raise ShapeError(
                f"{name} images: expected {model_config.image_size}, got "
                f"{tuple(data.xbar.shape[1:])}"
            )
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed + 1)
    model = SpeechPriorNet(model_config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=config.epochs, eta_min=config.lr_min
    )
    _, start_psnr = evaluate_prior(model, val)
    best_psnr, best_epoch = start_psnr, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log: list[dict[str, Any]] = []
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        lr = opt.param_groups[0]["lr"]
        for rows in _batches(train, config, gen):
            loss = _step_loss(model, train, rows, config, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total += float(loss.detach()) * rows.shape[0]
            count += rows.shape[0]
        sched.step()
        entry: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": total / max(count, 1)}
        val_psnr = None
        if epoch % config.val_every == 0 or epoch == config.epochs:
            val_loss, val_psnr = evaluate_prior(model, val)
            entry.update(val_loss=val_loss, val_psnr=val_psnr)
            if val_psnr > best_psnr:
                best_psnr, best_epoch = val_psnr, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        entry["seconds"] = time.perf_counter() - t0
        log.append(entry)
        if progress is not None:
            progress(epoch, config.epochs, entry["train_loss"], val_psnr)
    model.load_state_dict(best_state)
    model.eval()
    return PriorTrainResult(model, log, best_epoch, best_psnr, start_psnr)


# -- checkpoints -------------------------------------------------------------------------
def prior_checkpoint_payload(
    model: SpeechPriorNet,
    *,
    train_config: PriorTrainConfig | None = None,
    weight: Tensor | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict a speech-prior checkpoint holds (tensors, numbers and strings only).

    Layout::

        format          "sirem-speech-prior"
        format_version  1
        sirem_version   str
        state_dict      {name: tensor}
        model_config    JSON string (SpeechPriorConfig)
        train_config    JSON string (PriorTrainConfig) or "{}"
        weight          (H, W) float32 map w of p = |x_bar|_n + w Delta (absent: 1)
        info            dict of numbers/strings (best_epoch, val_psnr, feature settings, ...)

    Args:
        model: the network.
        train_config: its training configuration.
        weight: the map w used in training (the prior must be formed with the same map).
        info: extra numbers and strings.

    Returns:
        The payload, loadable with ``torch.load(weights_only=True)``.
    """
    payload: dict[str, Any] = {
        "format": PRIOR_CHECKPOINT_FORMAT,
        "format_version": PRIOR_CHECKPOINT_VERSION,
        "sirem_version": __version__,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_config": model.config.to_json(),
        "train_config": train_config.to_json() if train_config is not None else "{}",
        "info": {str(k): v for k, v in (info or {}).items()},
    }
    for key, value in payload["info"].items():
        if not isinstance(value, str | int | float | bool):
            raise InputError(f"checkpoint info {key!r}: only numbers and strings are stored")
    if weight is not None:
        payload["weight"] = torch.as_tensor(weight, dtype=torch.float32).detach().cpu().clone()
    return payload


def save_prior_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write a payload from :func:`prior_checkpoint_payload` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_prior_checkpoint(path: Path) -> tuple[SpeechPriorNet, dict[str, Any]]:
    """Read a speech-prior checkpoint (``weights_only=True``) and rebuild its network.

    Args:
        path: the file.

    Returns:
        (the network in eval mode, the payload).

    Raises:
        InputError: the file does not exist.
        FormatError: not a speech-prior checkpoint, another version, or weights that do not
            fit the stored configuration (one line naming the file).
    """
    path = Path(path)
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != PRIOR_CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise FormatError(f"{path}: not a sirem speech-prior checkpoint (format {found!r})")
    if payload.get("format_version") != PRIOR_CHECKPOINT_VERSION:
        raise FormatError(
            f"{path}: speech-prior checkpoint format_version {payload.get('format_version')!r}; "
            f"this sirem reads version {PRIOR_CHECKPOINT_VERSION}"
        )
    try:
        config = SpeechPriorConfig.from_dict(json.loads(payload["model_config"]))
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise FormatError(f"{path}: speech-prior config is not valid ({exc})") from exc
    model = SpeechPriorNet(config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise FormatError(f"{path}: weights do not fit the model ({first})") from exc
    return model.eval(), payload


def log_to_json(log: list[dict[str, Any]]) -> str:
    """The training log as a JSON string (numbers rounded to 6 significant digits)."""
    return json.dumps(
        [{k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in e.items()} for e in log]
    )
