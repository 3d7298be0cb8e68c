"""Shared behaviour of sirem's configuration dataclasses (JSON round trip)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Self

from sirem_cli.errors import InputError


class JsonConfig:
    """Mixin for frozen dataclasses stored as JSON in checkpoints and output files."""

    #: What an unknown key is called in the error message.
    _unknown_what: ClassVar[str] = "config keys"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()  # type: ignore[call-overload]
        }

    def to_json(self) -> str:
        """Return the config as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`InputError`."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f"unknown {cls._unknown_what}: {', '.join(unknown)}")
        return cls(**values)
