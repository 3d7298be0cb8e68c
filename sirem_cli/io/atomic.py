"""Write outputs under a temporary name and rename them when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sirem_cli.errors import OutputError


def check_output_path(path: Path, *, overwrite: bool = True, is_dir: bool = False) -> Path:
    """Check that ``path`` can be written; raise :class:`OutputError` naming it otherwise."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
    if path.exists() and is_dir != path.is_dir():
        kind = "a folder" if path.is_dir() else "a file"
        raise OutputError(f"{path}: is {kind}")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write here ({probe} is not a writable folder)")
    return path


@contextlib.contextmanager
def atomic_path(path: Path, *, overwrite: bool = True, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    On any exception the temporary file or folder is removed, so no half-written output
    is ever left under the final name.
    """
    path = check_output_path(Path(path), overwrite=overwrite, is_dir=is_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        yield target
        if path.exists():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
