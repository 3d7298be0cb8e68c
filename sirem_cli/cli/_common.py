"""Shared pieces of the command-line layer: consoles, error handling, progress bars, output modes.

Only this layer prints and exits. Library functions raise :class:`SiremError` subclasses;
:func:`cli_errors` turns them (and OS-level I/O errors) into one red line on stderr and a
non-zero exit, never a traceback.

Every command takes ``--quiet`` and ``--json`` (:mod:`sirem_cli.cli._options`), which set
:data:`mode`. ``--quiet`` silences everything but errors: tables, progress bars, notes and
warnings. ``--json`` replaces the tables on stdout by one JSON object (:func:`emit`) that also
lists every note and warning the command gave; the notes, warnings and progress stay on stderr
unless ``--quiet``. Errors always print their one line on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from sirem_cli import __version__
from sirem_cli.errors import SiremError

#: Results (tables) go to stdout so they can be piped; progress, notices and errors to stderr.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line
#: Errors only: never silenced (``--quiet`` silences :data:`out` and :data:`err`).
_errors = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_ERROR = 2


@dataclass
class OutputMode:
    """How the running command reports (set from ``--quiet`` and ``--json`` while parsing).

    Attributes:
        quiet: print nothing but errors.
        json: one JSON object on stdout (:func:`emit`) instead of the tables.
        notes: every :func:`notice` of this command, for the JSON.
        warnings: every :func:`warn` of this command, for the JSON.
    """

    quiet: bool = False
    json: bool = False
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


#: The mode of the command being run (one command per process; reset by each command's options).
mode = OutputMode()


def _apply_mode() -> None:
    out.quiet = mode.quiet or mode.json
    err.quiet = mode.quiet


def _reset_mode() -> None:
    mode.quiet = mode.json = False
    mode.notes.clear()
    mode.warnings.clear()
    _apply_mode()


def set_quiet(ctx: typer.Context, value: bool) -> bool:
    """Typer callback of ``--quiet``: set :data:`mode` for this command (reset when it ends)."""
    mode.quiet = bool(value)
    mode.notes.clear()
    mode.warnings.clear()
    _apply_mode()
    ctx.call_on_close(_reset_mode)
    return value


def set_json(ctx: typer.Context, value: bool) -> bool:
    """Typer callback of ``--json``: set :data:`mode` for this command (reset when it ends)."""
    mode.json = bool(value)
    _apply_mode()
    ctx.call_on_close(_reset_mode)
    return value


def given_options(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` (parameter names) that the command line set, as flags."""
    given = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            given.append("--" + name.replace("_", "-"))
    return given


def fail(message: str) -> typer.Exit:
    """Print one error line (even with ``--quiet``) and return the Exit to raise."""
    _errors.print(Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(EXIT_ERROR)


def notice(message: str) -> None:
    """A one-line notice (e.g. a backend fallback) on stderr, and in the JSON's ``notes``."""
    mode.notes.append(message)
    err.print(Text.assemble(("note: ", "bold yellow"), message))


def warn(message: str) -> None:
    """A one-line warning on stderr, and in the JSON's ``warnings``."""
    mode.warnings.append(message)
    err.print(Text.assemble(("warning: ", "bold yellow"), message))


def emit(command: str, payload: Mapping[str, Any]) -> None:
    """With ``--json``: print what ``command`` did as one JSON object on stdout (else nothing).

    The object holds ``command``, ``sirem_version``, ``payload`` (paths as strings, numpy values
    as numbers or lists, NaN and infinities as null, dataclasses as objects), then ``notes`` and
    ``warnings``: every :func:`notice` and :func:`warn` of the command. Call it last.
    """
    if not mode.json:
        return
    doc = {
        "command": command,
        "sirem_version": __version__,
        **payload,
        "notes": list(mode.notes),
        "warnings": list(mode.warnings),
    }
    sys.stdout.write(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: Paths as strings, numpy scalars and arrays as numbers and
    lists, non-finite floats as None, dataclasses and mappings as objects (keys as strings),
    tuples and sets as lists, Enums as their values."""
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k if isinstance(k, str) else str(jsonable(k)): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return jsonable(obj.tolist())
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


class _NoteHandler(logging.Handler):
    """Library notes (logger ``sirem``: a stale lock taken over, temporaries removed) as
    ``note:`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        notice(record.getMessage())


def _install_note_handler() -> None:
    logger = logging.getLogger("sirem")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and exit status 2."""
    _install_note_handler()
    try:
        with warnings.catch_warnings():
            if mode.quiet:  # third-party warnings too: --quiet prints nothing but errors
                warnings.simplefilter("ignore")
            yield
    except SiremError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        _errors.print(Text("interrupted", style="bold red"))
        raise typer.Exit(130) from None
    except MemoryError:
        raise fail("out of memory (try fewer utterances at once)") from None
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise fail(f"{where}{exc.strerror or exc}") from None


def progress() -> Progress:
    """A rich progress display on stderr (off when stderr is not a terminal, and with --quiet)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=False,
        disable=not sys.stderr.isatty() or mode.quiet,
    )


@contextlib.contextmanager
def stage_progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """One progress bar driven by a library callback ``report(info, done, total)``."""
    with progress() as bar:
        task = bar.add_task(description, total=None, info="")

        def report(info: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, info=info)

        yield report


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """Build a rich table from rows of plain values."""
    tab = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        tab.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        tab.add_row(*[_fmt(v) for v in row])
    return tab


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` (see :func:`jsonable`) as indented JSON atomically."""
    from sirem_cli.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n")
