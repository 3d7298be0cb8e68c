"""Shared pieces of the command-line layer: consoles, error handling, progress bars.

Only this layer prints and exits. Library functions raise :class:`SiremError` subclasses;
:func:`cli_errors` turns them (and OS-level I/O errors) into one red line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
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

from sirem_cli.errors import SiremError

#: Results (tables) go to stdout so they can be piped; progress, notices and errors to stderr.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line

EXIT_ERROR = 2


def fail(message: str) -> typer.Exit:
    """Print one error line and return the Exit to raise."""
    err.print(Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(EXIT_ERROR)


def notice(message: str) -> None:
    """Print a one-line notice (e.g. a backend fallback) on stderr."""
    err.print(Text.assemble(("note: ", "bold yellow"), message))


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    err.print(Text.assemble(("warning: ", "bold yellow"), message))


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
        yield
    except SiremError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="bold red"))
        raise typer.Exit(130) from None
    except MemoryError:
        raise fail("out of memory (try fewer utterances at once)") from None
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        raise fail(f"{where}{exc.strerror or exc}") from None


def progress() -> Progress:
    """A rich progress display on stderr (disabled automatically when stderr is not a terminal)."""
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
        disable=not sys.stderr.isatty(),
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
    """Write ``payload`` as indented JSON atomically."""
    from sirem_cli.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
