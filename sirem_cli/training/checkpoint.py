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

Files are written under a temporary name and renamed when complete. Weights that hold NaN or
Inf are never written (:class:`NonFiniteWeights`) and never loaded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sirem_cli import __version__
from sirem_cli.errors import FormatError, InputError, SiremError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.io.output import check_free_space, open_binary
from sirem_cli.io.torchfile import describe_load_error
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


class NonFiniteWeights(SiremError):
    """A checkpoint was not written because its weights hold NaN or Inf (a diverged training)."""


def first_nonfinite(state: dict[str, Any]) -> str | None:
    """The name of the first floating tensor of ``state`` holding NaN or Inf, or None."""
    for name, value in state.items():
        if isinstance(value, Tensor) and (value.is_floating_point() or value.is_complex()):
            if not bool(torch.isfinite(value).all()):
                return name
    return None


def payload_bytes(payload: Any) -> int:
    """About the bytes ``torch.save(payload)`` writes: its tensors plus 1 MB."""
    total = 0
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return total + 2**20


def write_payload(path: Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint dict: never with NaN/Inf weights, with room checked first, under a
    temporary name flushed and renamed when complete (an existing file is kept on any error).

    Raises:
        NonFiniteWeights: the weights hold NaN or Inf (nothing is written).
        OutputError: not enough free space, a full disk or an I/O error while writing.
    """
    path = Path(path)
    bad = first_nonfinite(payload["state_dict"])
    if bad is not None:
        raise NonFiniteWeights(f"{path}: not written: the weights hold NaN or Inf ({bad})")
    check_free_space(path, payload_bytes(payload))
    with atomic_path(path) as tmp, open_binary(tmp) as handle:
        torch.save(payload, handle)
    return path


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
    return write_payload(Path(path), payload)


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
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError...
        raise FormatError(describe_load_error(path, exc, what="sirem checkpoint")) from exc


def checkpoint_kind(path: Path) -> str:
    """The ``format`` a checkpoint file declares (``sirem-checkpoint`` for the paper model,
    ``sirem-speech-prior`` for the speech prior); loads it with ``weights_only=True``.

    Raises:
        InputError, FormatError: as :func:`safe_torch_load`; FormatError for a file that
            declares no format.
    """
    payload = safe_torch_load(Path(path))
    kind = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(kind, str):
        raise FormatError(f"{path}: not a sirem checkpoint (no format)")
    return kind


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
    _check_fields(path, payload)
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


def _check_fields(path: Path, payload: dict[str, Any]) -> None:
    """Types and values of a checkpoint's fields; NaN/Inf weights are refused."""

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    size = payload["image_size"]
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(map(positive_int, size))):
        raise FormatError(f"{path}: image_size must be two positive integers [H, W], got {size!r}")
    if not positive_int(payload["embedding_dim"]):
        raise FormatError(
            f"{path}: embedding_dim must be a positive integer, got {payload['embedding_dim']!r}"
        )
    if not isinstance(payload["encoder"], str) or not payload["encoder"]:
        raise FormatError(f"{path}: encoder must be a name, got {payload['encoder']!r}")
    for key in ("model_config", "train_config"):
        if key in payload and not isinstance(payload[key], str):
            raise FormatError(f"{path}: {key} must be a JSON string")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise FormatError(f"{path}: state_dict must map names to tensors")
    bad = first_nonfinite(state)
    if bad is not None:
        raise FormatError(
            f"{path}: the weights hold NaN or Inf ({bad}): the checkpoint is unusable "
            "(written by a training that diverged?)"
        )
    info = payload.get("info")
    if info is not None and not isinstance(info, dict):
        raise FormatError(f"{path}: info must be a dict")


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
