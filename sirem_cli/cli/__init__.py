"""The ``sirem`` command line. Each command lives in its own module and stays thin.

Importing this package must not import torch, finufft or librosa: ``sirem --help`` is fast.
"""

from __future__ import annotations

import typer

from sirem_cli import __version__

app = typer.Typer(
    name="sirem",
    help=(
        "Speech-informed reconstruction of real-time spiral MRI of speech.\n\n"
        "Typical pipeline: sirem synth demo/ (or your USC-75 tree) -> sirem prepare ROOT out.h5 -> "
        "sirem baseline / sirem train -> sirem reconstruct -> sirem evaluate."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sirem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Speech-informed reconstruction of real-time spiral MRI of speech."""


def _register() -> None:
    from sirem_cli.cli import baseline, evaluate, export, prepare, reconstruct, synth, train
    from sirem_cli.cli.weights import app as weights_app

    app.command("synth")(synth.synth)
    app.command("prepare")(prepare.prepare)
    app.command("baseline")(baseline.baseline)
    app.command("train")(train.train)
    app.command("reconstruct")(reconstruct.reconstruct)
    app.command("evaluate")(evaluate.evaluate)
    app.command("export")(export.export)
    app.add_typer(weights_app, name="weights")


_register()


def main() -> None:
    """Console-script entry point."""
    app()
