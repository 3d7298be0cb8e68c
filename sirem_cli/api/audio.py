"""What ``sirem train`` and ``sirem reconstruct`` share: the run options and the audio side.

Frozen-encoder embeddings are computed once per utterance and kept in the user's embedding
cache (:mod:`sirem_cli.io.embcache`); prepared files are inputs and are never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sirem_cli.errors import FormatError, InputError
from sirem_cli.io import embcache
from sirem_cli.io.prepared import UtteranceRef

StageFn = Callable[[str, int, int], None]


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


def make_encoder(run: ModelRunConfig, device: str) -> Any:
    from sirem_cli.models.encoders import make_encoder

    return make_encoder(run.encoder, hubert=run.hubert, device=device, bf16=run.bf16)


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
