"""Options shared by the commands, and choices built from the library's registries.

Each registry becomes a ``str`` Enum, so Typer shows its names as the option's choices and
rejects any other value at parse time (exit 2, one line naming the option). Registry modules
import nothing heavy, so ``sirem --help`` stays fast.

:data:`Quiet` and :data:`JsonOutput` are the ``--quiet`` and ``--json`` of every command: a
command declares ``quiet: Quiet = False, json_output: JsonOutput = False`` and ends with one
:func:`sirem_cli.cli._common.emit`; their callbacks set the output mode while the command line
is parsed, so nothing else in the command reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Annotated

import typer

from sirem_cli.cli._common import set_json, set_quiet
from sirem_cli.models.registry import ARM_SELECTIONS, ENCODERS, FUSION_MAPS, FUSIONS, MODELS
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
ModelKind = choice_enum("ModelKind", MODELS)


OUTPUT_PANEL = "Output (for scripts)"

Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        callback=set_quiet,
        rich_help_panel=OUTPUT_PANEL,
        help="Print nothing but errors: no tables, progress bars, notes or warnings (warnings "
        "included: add --json to keep them, as data). Errors still print one line on stderr "
        "with exit status 2.",
    ),
]
JsonOutput = Annotated[
    bool,
    typer.Option(
        "--json",
        callback=set_json,
        rich_help_panel=OUTPUT_PANEL,
        help="Print one JSON object on stdout instead of the tables: what the command did "
        "(output paths, per-utterance rows, results) with its notes and warnings as lists. "
        "Progress, notes and warnings stay on stderr unless --quiet. A failed command prints "
        "no JSON (weights status prints its JSON, then exits 2 for a missing or bad file).",
    ),
]
