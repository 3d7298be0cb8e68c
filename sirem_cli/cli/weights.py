"""``sirem weights fetch|status``: the LPIPS/FID weight files, ahead of time and where they are."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from sirem_cli.cli._common import cli_errors, emit, err, fail, mode, notice, out
from sirem_cli.cli._options import JsonOutput, Quiet
from sirem_cli.errors import InputError
from sirem_cli.metrics import weights as W

app = typer.Typer(
    help=(
        "The published LPIPS (AlexNet + v0.1 heads) and FID (Inception) weight files: fetch "
        "them ahead of time (for offline machines) and show where they are. sirem evaluate "
        "also fetches a missing file on first use unless --offline."
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_METRIC_HELP = "lpips | fid | all."


def _metrics(choice: str) -> tuple[str, ...]:
    key = choice.strip().lower()
    if key == "all":
        return tuple(W.METRIC_FILES)
    if key not in W.METRIC_FILES:
        raise InputError(f"--metric {choice!r}: choose lpips, fid or all")
    return (key,)


def _mib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def _table(rows: list[W.FileStatus], title: str, *, with_action: bool = False) -> Table:
    tab = Table(title=title, title_justify="left")
    for col in ("File", "Metric", "Found in", "Check", "Size"):
        tab.add_column(col, justify="right" if col == "Size" else "left")
    if with_action:
        tab.add_column("Done")
    for r in rows:
        kind = "SHA-256" if r.full_hash else "hash prefix"
        if r.verified is None:
            check = "[yellow]missing[/]"
            size = f"({_mib(r.entry.size)})"
        elif r.verified:
            check = f"[green]{kind} ok[/]"
            size = _mib(r.size)
        else:
            check = f"[bold red]WRONG {kind}[/] ({(r.actual_sha256 or '')[:12]}...)"
            size = _mib(r.size)
        cells = [
            r.entry.name,
            ", ".join(r.metrics),
            str(r.path.parent) if r.path else "-",
            check,
            size,
        ]
        if with_action:
            cells.append(r.action or "-")
        tab.add_row(*cells)
    return tab


def _rows(rows: list[W.FileStatus]) -> list[dict[str, object]]:
    """The JSON rows of ``--json``: one object per weight file."""
    return [
        {
            "file": r.entry.name,
            "metrics": r.metrics,
            "path": r.path,
            "verified": r.verified,
            "check": "sha256" if r.full_hash else "hash prefix",
            "size": r.size,
            "sha256": r.actual_sha256,
            "url": r.entry.url,
            "action": r.action or None,
        }
        for r in rows
    ]


@contextlib.contextmanager
def _download_bar() -> Iterator[W.DownloadProgress]:
    """A rich byte-progress bar per downloaded file, on stderr (off when not a terminal)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not sys.stderr.isatty() or mode.quiet,
    )
    tasks: dict[str, int] = {}
    with bar:

        def report(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total or None)
            bar.update(tasks[name], completed=done, total=total or None)

        yield report


def _registry_note() -> None:
    override = os.environ.get("SIREM_WEIGHTS_REGISTRY")
    if override:
        notice(f"URLs and hashes overridden by SIREM_WEIGHTS_REGISTRY={override}")


def fetch(
    metric: str = typer.Option("all", "--metric", help=_METRIC_HELP),
    weights_dir: Path = typer.Option(
        None,
        "--weights-dir",
        help="Put the files here (default: the torch hub cache, $TORCH_HOME/hub/checkpoints).",
    ),
    timeout: float = typer.Option(
        None,
        "--timeout",
        help=f"Seconds to wait for the server; one attempt (default {W.DEFAULT_TIMEOUT_S:g}, "
        "or $SIREM_DOWNLOAD_TIMEOUT).",
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Download again over a file that fails its SHA-256 check."
    ),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Download the weight files from their published URLs, each checked by SHA-256.

    An explicit request: it downloads even where SIREM_OFFLINE / HF_HUB_OFFLINE are set. A verified file already there is kept without any request; files are streamed to a temporary name and renamed into place only once their hash matches. Run it on an online machine, then copy the folder to an offline one and pass it as --weights-dir (or put the files in that machine's torch hub cache).
    """
    with cli_errors():
        chosen = _metrics(metric)
        if timeout is not None and timeout <= 0:
            raise InputError(f"--timeout {timeout:g}: must be > 0 seconds")
        _registry_note()
        with _download_bar() as report:
            rows = W.fetch_weights(
                chosen, weights_dir, timeout=timeout, progress=report, replace=replace
            )
    target = Path(weights_dir).expanduser() if weights_dir is not None else W.hub_checkpoint_dir()
    out.print(_table(rows, f"Weight files in {target}", with_action=True))
    emit("weights fetch", {"folder": target, "files": _rows(rows)})


def status(
    metric: str = typer.Option("all", "--metric", help=_METRIC_HELP),
    weights_dir: Path = typer.Option(
        None, "--weights-dir", help="Folder searched before the torch hub cache."
    ),
    quiet: Quiet = False,
    json_output: JsonOutput = False,
) -> None:
    """Show where each weight file is found, whether its SHA-256 checks out, and its size.

    Exits 0 when every file is present and verified, else 2 with one line saying what to do
    (after the table, or the JSON with --json).
    """
    with cli_errors():
        chosen = _metrics(metric)
        _registry_note()
        rows = W.status(chosen, weights_dir)
    where = ", ".join(str(d) for d in W.search_dirs(weights_dir))
    out.print(_table(rows, f"Weight files (searched {where})"))
    emit("weights status", {"searched": W.search_dirs(weights_dir), "files": _rows(rows)})
    missing = [r.entry.name for r in rows if r.verified is None]
    wrong = [str(r.path) for r in rows if r.verified is False]
    if wrong:
        raise fail(
            f"{', '.join(wrong)}: wrong SHA-256; delete or replace, then run `sirem weights fetch`"
        )
    if missing:
        flag = f" --metric {chosen[0]}" if len(chosen) == 1 else ""
        raise fail(
            f"missing {', '.join(missing)}; run `sirem weights fetch{flag}` on an online machine "
            "(or let sirem evaluate fetch them on first use)"
        )


app.command("fetch")(fetch)
app.command("status")(status)
