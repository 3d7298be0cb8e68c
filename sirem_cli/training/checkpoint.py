"""SIREM checkpoints: torch files that hold tensors, numbers and strings only.

A checkpoint is a dict saved with ``torch.save`` and read back with
``torch.load(..., weights_only=True)``, so loading never executes code from the file:

    format          "sirem-checkpoint"
    format_version  1
    sirem_version   str
    state_dict      {name: tensor} of the SiremNet (decoder, arm logits, static map, head)
    arm_logits      (A,) float32 tensor (a copy of the parameter, for inspection)
    static_eba      (H, W) float32 tensor (the static fusion map)
    encoder         str, the audio encoder whose cached embeddings the model consumes
    embedding_dim   int E
    image_size      [H, W]
    model_config    JSON string (ModelConfig)
    train_config    JSON string (TrainConfig) or "{}"
    info            dict of numbers/strings (epoch, val_psnr, ...)
    training_state  optional dict (optimizer, scheduler, epoch, RNG state, log) for --resume

Files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sirem_cli import __version__
from sirem_cli.errors import FormatError, InputError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.models.sirem_net import ModelConfig, SiremNet

CHECKPOINT_FORMAT = "sirem-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = (
    "format",
    "format_version",
    "state_dict",
    "encoder",
    "embedding_dim",
    "image_size",
    "model_config",
)


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint read from disk and validated.

    Attributes:
        path: the file.
        model_config: the model configuration.
        train_config: the training configuration as a dict ({} if none was stored).
        state_dict: the model's tensors.
        encoder: audio encoder name.
        embedding_dim: E.
        image_size: (H, W).
        sirem_version: version that wrote the file.
        info: extra numbers and strings (epoch, val_psnr, ...).
        training_state: optimizer/scheduler/RNG state for resuming, or None.
    """

    path: Path
    model_config: ModelConfig
    train_config: dict[str, Any]
    state_dict: dict[str, Tensor]
    encoder: str
    embedding_dim: int
    image_size: tuple[int, int]
    sirem_version: str
    info: dict[str, Any]
    training_state: dict[str, Any] | None


def checkpoint_payload(
    model: SiremNet,
    *,
    train_config_json: str = "{}",
    info: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the dict that :func:`save_checkpoint` writes (tensors copied to the CPU).

    Args:
        model: the network (unwrapped, not DistributedDataParallel).
        train_config_json: the training configuration as JSON.
        info: extra numbers/strings.
        training_state: resume state (weights_only-safe values only).

    Returns:
        The checkpoint dict.
    """
    config = model.config
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "sirem_version": __version__,
        "state_dict": state,
        "arm_logits": state["arm_logits"].clone(),
        "static_eba": state["static_eba"].clone(),
        "encoder": config.encoder,
        "embedding_dim": int(config.embedding_dim),
        "image_size": [int(v) for v in config.image_size],
        "model_config": config.to_json(),
        "train_config": train_config_json,
        "info": dict(info or {}),
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return payload


def save_checkpoint(
    path: Path,
    model: SiremNet,
    *,
    train_config_json: str = "{}",
    info: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary name, then rename).

    Args:
        path: output file.
        model: the network.
        train_config_json: the training configuration as JSON.
        info: extra numbers/strings.
        training_state: resume state.

    Returns:
        ``path``.
    """
    payload = checkpoint_payload(
        model, train_config_json=train_config_json, info=info, training_state=training_state
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def safe_torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line sirem errors.

    Raises:
        InputError: the file does not exist.
        FormatError: the file holds pickled code/objects (refused, nothing is executed), or it
            is not a readable torch file (truncated, empty, another format).
    """
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        marker = "Unsupported global: GLOBAL "
        what = ""
        if marker in message:
            what = " (" + message.split(marker, 1)[1].split()[0] + ")"
        raise FormatError(
            f"{path}: refusing to load: the file holds pickled code/objects{what}; "
            f"sirem checkpoints hold tensors only"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... on junk
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise FormatError(
            f"{path}: not a readable sirem checkpoint (truncated or not a torch file: {first})"
        ) from exc


def read_checkpoint(
    path: Path,
    *,
    image_size: tuple[int, int] | None = None,
    encoder: str | None = None,
    embedding_dim: int | None = None,
) -> Checkpoint:
    """Read and validate a checkpoint (``weights_only=True``; never runs code from the file).

    Args:
        path: the checkpoint file.
        image_size: expected (H, W), or None to accept any.
        encoder: expected encoder name, or None.
        embedding_dim: expected E, or None.

    Returns:
        The validated :class:`Checkpoint`.

    Raises:
        InputError: the file does not exist.
        FormatError: pickled code, not a torch file, truncated, another format or version, or
            a mismatch with the expected image size / encoder (one line naming the file).
    """
    path = Path(path)
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise FormatError(f"{path}: not a sirem checkpoint (format {found!r})")
    version = payload.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise FormatError(
            f"{path}: checkpoint format_version {version!r}; this sirem reads version "
            f"{CHECKPOINT_VERSION} (retrain or use the sirem that wrote it)"
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise FormatError(f"{path}: checkpoint lacks {', '.join(missing)}")
    try:
        model_config = ModelConfig.from_dict(json.loads(payload["model_config"]))
        train_config = json.loads(payload.get("train_config") or "{}")
    except (TypeError, ValueError, InputError) as exc:
        raise FormatError(f"{path}: checkpoint config is not valid ({exc})") from exc
    stored_size = tuple(int(v) for v in payload["image_size"])
    if stored_size != model_config.image_size:
        raise FormatError(f"{path}: image_size {stored_size} disagrees with its model config")
    if image_size is not None and tuple(image_size) != stored_size:
        raise FormatError(
            f"{path}: checkpoint is for {stored_size[0]}x{stored_size[1]} images, "
            f"the data are {image_size[0]}x{image_size[1]}"
        )
    if encoder is not None and encoder != payload["encoder"]:
        raise FormatError(
            f"{path}: checkpoint expects {payload['encoder']!r} embeddings, got {encoder!r}"
        )
    if embedding_dim is not None and int(embedding_dim) != int(payload["embedding_dim"]):
        raise FormatError(
            f"{path}: checkpoint expects embeddings of size {payload['embedding_dim']}, "
            f"got {embedding_dim}"
        )
    return Checkpoint(
        path=path,
        model_config=model_config,
        train_config=train_config,
        state_dict=payload["state_dict"],
        encoder=str(payload["encoder"]),
        embedding_dim=int(payload["embedding_dim"]),
        image_size=(stored_size[0], stored_size[1]),
        sirem_version=str(payload.get("sirem_version", "")),
        info=dict(payload.get("info") or {}),
        training_state=payload.get("training_state"),
    )


def model_from_checkpoint(
    checkpoint: Checkpoint, *, device: str | torch.device = "cpu"
) -> SiremNet:
    """Rebuild the network from a validated checkpoint, in eval mode.

    Args:
        checkpoint: from :func:`read_checkpoint`.
        device: torch device.

    Returns:
        The :class:`SiremNet` with the stored weights.
    """
    model = SiremNet(checkpoint.model_config)
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise FormatError(f"{checkpoint.path}: weights do not fit the model ({first})") from exc
    return model.to(device).eval()


def load_model(
    path: Path,
    *,
    image_size: tuple[int, int] | None = None,
    encoder: str | None = None,
    embedding_dim: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[SiremNet, Checkpoint]:
    """Read a checkpoint and rebuild its network (see :func:`read_checkpoint`).

    Returns:
        (model in eval mode on ``device``, the checkpoint).
    """
    checkpoint = read_checkpoint(
        path, image_size=image_size, encoder=encoder, embedding_dim=embedding_dim
    )
    return model_from_checkpoint(checkpoint, device=device), checkpoint
