"""Command-line choices built from the library's registries (never listed here by hand).

Each registry becomes a ``str`` Enum, so Typer shows its names as the option's choices and
rejects any other value at parse time (exit 2, one line naming the option). Registry modules
import nothing heavy, so ``sirem --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

from sirem_cli.models.registry import ARM_SELECTIONS, ENCODERS, FUSION_MAPS, FUSIONS
from sirem_cli.recon.registry import BASELINES


def choice_enum(name: str, names: Iterable[str]) -> type[Enum]:
    """A ``str`` Enum whose values are ``names`` (member names made identifier-safe)."""
    return Enum(name, [(n.replace("-", "_"), n) for n in names], type=str)  # type: ignore[return-value]


def choices_help(lead: str, choices: Mapping[str, object]) -> str:
    """``lead`` followed by each choice and its one-line description."""
    parts = []
    for key, value in choices.items():
        text = getattr(value, "description", value)
        parts.append(f"{key}: {text}")
    return f"{lead} " + "; ".join(parts) + "."


BaselineMethod = choice_enum("BaselineMethod", BASELINES)
EncoderName = choice_enum("EncoderName", ENCODERS)
FusionMap = choice_enum("FusionMap", FUSION_MAPS)
Fusion = choice_enum("Fusion", FUSIONS)
ArmSelection = choice_enum("ArmSelection", ARM_SELECTIONS)
