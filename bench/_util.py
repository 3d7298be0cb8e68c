"""Benchmark helpers: run a Python snippet in a fresh process, return its JSON result and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_FOOTER = """
import json as _json, resource as _resource, sys as _sys
_result = dict(result)
_result["peak_rss_mb"] = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024
_sys.stdout.write("\\nBENCH-RESULT " + _json.dumps(_result) + "\\n")
"""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmark child process: offline, no spinning OpenMP threads."""
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", **(extra or {})}


def run_isolated(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run ``code`` (which must define a dict ``result``) in a new interpreter.

    Peak memory is the child's own maximum resident set size, so cases do not pollute each other.
    """
    full_env = child_env(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _FOOTER],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")][-1]
    return json.loads(line.removeprefix("BENCH-RESULT "))


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
