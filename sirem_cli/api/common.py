"""Helpers shared by the verbs: input checks on prepared data and the NUFFT backend."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import FormatError, InputError


def check_finite(ref_path: Path, prefix: str, name: str, values: np.ndarray) -> None:
    """Raise FormatError naming file, utterance and dataset if ``values`` holds NaN or Inf."""
    if not np.all(np.isfinite(values)):
        raise FormatError(f"{ref_path}: {prefix}/{name} holds NaN or Inf values")


def check_positive(name: str, value: float) -> None:
    """Raise InputError unless ``value`` is a finite positive number."""
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be positive, got {value:g}")


def backend_info(device: str) -> dict[str, Any]:
    """Resolve ``auto|cpu|cuda`` to a NUFFT backend; returns name, device and a fallback notice."""
    from sirem_cli.nufft.backend import select_backend

    choice = select_backend(device)
    return {"nufft_backend": choice.name, "device": str(choice.device), "notice": choice.notice}


def training_leak_warnings(
    checkpoint: Path, subjects: Iterable[str], trained_on: Iterable[str], split: str
) -> list[str]:
    """The warning (as a one-item list, else empty) that a checkpoint reconstructs utterances of
    speakers it was trained on: their scores would not be held-out results."""
    leaked = sorted(set(subjects) & set(trained_on))
    if not leaked:
        return []
    return [
        f"{checkpoint} was trained on {', '.join(leaked)}, whose utterances are "
        f"reconstructed here ({split} split): their scores are not held-out results"
    ]
