"""Shared behaviour of sirem's configuration dataclasses (JSON round trip, nested configs)."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, ClassVar, Self

from sirem_cli.errors import InputError


def _plain(value: Any) -> Any:
    """Tuples as lists and nested configs as dicts, recursively (JSON-ready)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class JsonConfig:
    """Mixin for frozen dataclasses stored as JSON in checkpoints and output files.

    A field whose type is another :class:`JsonConfig` (e.g. the model configuration inside the
    training configuration) is stored as a nested object and rebuilt by :meth:`from_dict`.
    """

    #: What an unknown key is called in the error message.
    _unknown_what: ClassVar[str] = "config keys"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists, nested configs dicts)."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    def to_json(self) -> str:
        """Return the config as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`InputError`."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise InputError(f"unknown {cls._unknown_what}: {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in values.items():
            kind = hints.get(name)
            if isinstance(value, dict) and isinstance(kind, type) and issubclass(kind, JsonConfig):
                value = kind.from_dict(value)
            kwargs[name] = value
        return cls(**kwargs)
