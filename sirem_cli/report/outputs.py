"""The files of an evaluation: metrics as JSON, CSV and markdown, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sirem_cli.io.atomic import atomic_path
from sirem_cli.metrics.evaluate import EvalResult, results_to_csv, results_to_json
from sirem_cli.report.tables import results_to_markdown

__all__ = ["write_results"]


def write_results(
    results: Sequence[EvalResult],
    out_dir: Path | str,
    *,
    stem: str = "metrics",
    include_frames: bool = False,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>.md`` into ``out_dir`` atomically.

    Returns:
        ``{"json": path, "csv": path, "md": path}``.

    Raises:
        OutputError: a file exists and ``overwrite`` is False, or the folder is not writable.
    """
    out = Path(out_dir)
    texts = {
        "json": results_to_json(results, include_frames=include_frames),
        "csv": results_to_csv(results),
        "md": results_to_markdown(results),
    }
    paths: dict[str, Path] = {}
    for ext, text in texts.items():
        path = out / f"{stem}.{ext}"
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths[ext] = path
    return paths
