"""The model's named choices: audio encoders, fusion maps, arm selection (one registry each).

Import-light on purpose (standard library only): the CLI turns these into the choices of
``--encoder``, ``--eba`` and ``--arm-select`` (a bad value fails at parse time), and the
model and training code validate against the same tables.

Adding an audio encoder is two steps: write it (a class with ``name``, ``embedding_dim``,
``sample_rate_hz`` and ``encode(windows, batch_size=, progress=)``, see
:class:`sirem_cli.models.encoders.AudioEncoder`) with a builder
``build(options: EncoderOptions) -> encoder``, then add one :class:`EncoderSpec` below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sirem_cli.errors import InputError


@dataclass(frozen=True)
class EncoderOptions:
    """What an encoder builder may use; each encoder ignores what it does not need.

    Attributes:
        weights: a weights folder or hub id (``--hubert``), None for the default/cache.
        device: torch device.
        bf16: bfloat16 autocast.
        cache_dir: Hugging Face hub cache folder (None: the standard one).
    """

    weights: str | Path | None = None
    device: str = "cpu"
    bf16: bool = False
    cache_dir: Path | None = None


@dataclass(frozen=True)
class EncoderSpec:
    """One frozen audio encoder.

    Attributes:
        name: identifier on the command line, in checkpoints and in the embedding cache.
        description: one line for ``--help``.
        builder: ``"module:function"`` taking :class:`EncoderOptions`.
        needs_weights: pretrained weights must be available locally.
    """

    name: str
    description: str
    builder: str
    needs_weights: bool


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            "hubert",
            "frozen HuBERT-base, mean-pooled last hidden state (E = 768; local weights)",
            "sirem_cli.models.encoders:build_hubert",
            True,
        ),
        EncoderSpec(
            "mel",
            "log-mel statistics from librosa (E = 256; no weights, the demo's choice)",
            "sirem_cli.models.encoders:build_mel",
            False,
        ),
    )
}

#: Encoder names in registry order.
ENCODER_NAMES: tuple[str, ...] = tuple(ENCODERS)

#: Default encoder of ``sirem train`` (and of :class:`~sirem_cli.models.sirem_net.ModelConfig`).
DEFAULT_ENCODER = "hubert"


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of an encoder; InputError naming the choices when unknown."""
    spec = ENCODERS.get(name)
    if spec is None:
        raise InputError(f"unknown audio encoder {name!r}; choose from {', '.join(ENCODERS)}")
    return spec


def build_encoder(name: str, options: EncoderOptions | None = None) -> Any:
    """Build the encoder ``name`` with ``options`` (its module is imported only now)."""
    spec = encoder_spec(name)
    module, _, function = spec.builder.partition(":")
    return getattr(importlib.import_module(module), function)(options or EncoderOptions())


#: Fusion maps w of the paper model (``--eba``): name -> description.
FUSION_MAPS: dict[str, str] = {
    "static": "mean of the training frames' explained-by-audio maps (deployable)",
    "frame": "each frame's annotated map (an oracle: needs test annotations)",
    "learned": "predicted from audio and both branch images, around the static map",
}

#: How the paper model combines its branches (``--fusion``): name -> description.
#: The models ``sirem train --model`` trains: name -> description.
MODELS: dict[str, str] = {
    "fusion": "the paper's SIREM: audio decoder fused with the learned-arm MRI branch",
    "prior": "speech-informed prior inside a data-consistent temporal-TV reconstruction "
    "(log-mel audio at the frame centres plus the utterance's time-averaged image)",
}

FUSIONS: dict[str, str] = {
    "convex": "x = w x_a + (1 - w) x_m with w from --eba (the paper, eq. 3)",
    "residual": "x = x_m + w (x_a - x_m), w a learned map starting at 0, trained on the MSE "
    "alone and kept only if it beats w = 0 on validation (never worse than the MRI branch)",
}

#: Arm selection of the paper model (``--arm-select``): name -> description.
ARM_SELECTIONS: dict[str, str] = {
    "soft": "every arm weighted by p = sigmoid(l) (the paper)",
    "topk": "the K largest p kept (0/1), straight-through gradient",
}


def check_choice(what: str, value: str, choices: dict[str, Any]) -> str:
    """``value`` if it is a key of ``choices``, else InputError naming ``what`` and the choices."""
    if value not in choices:
        raise InputError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value
