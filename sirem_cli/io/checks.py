"""Checks of values read from users' files, each failing with one line naming the file.

Used where data are loaded (prepare, train, reconstruct, baseline), so that a NaN or a
mismatched file is reported with the file and the utterance, before any work that would hide it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import FormatError
from sirem_cli.imaging import all_finite

#: Sample rates audio is recorded at: a duration that fits one of them (within 2 %) better than
#: the header's rate points at a wrong rate in the wav header.
COMMON_RATES_HZ = (8000, 11025, 16000, 20000, 22050, 24000, 32000, 44100, 48000, 96000)


def check_audio_duration(
    path: Path, audio: np.ndarray, rate: int, scan_s: float, tolerance_s: float
) -> None:
    """Raise FormatError when the audio and the scan differ by more than ``tolerance_s``.

    Args:
        path: the wav file (named in the message).
        audio: (T,) samples.
        rate: the sample rate of the wav header in Hz.
        scan_s: duration of the scan (acquisitions x TR) in seconds.
        tolerance_s: the largest accepted difference in seconds (``--audio-tolerance``).
    """
    duration = audio.shape[0] / rate
    if not np.all(np.isfinite(audio)):
        raise FormatError(f"{path}: audio holds NaN or Inf samples")
    if abs(duration - scan_s) <= tolerance_s:
        return
    ratio = duration / scan_s if scan_s > 0 else float("inf")
    fits = [r for r in COMMON_RATES_HZ if r != rate and abs(rate * ratio / r - 1) < 0.02]
    if fits:
        cause = (
            f"the wav header says {rate} Hz but the samples fit the scan at {fits[0]} Hz: "
            "a wrong sample rate in the header? (USC audio is 20000 Hz)"
        )
    elif duration < scan_s:
        cause = "much shorter than the scan: a truncated audio file?"
    else:
        cause = "longer than the scan: the audio of another take?"
    raise FormatError(
        f"{path}: audio lasts {duration:.2f} s but the scan {scan_s:.2f} s "
        f"({ratio:.2f}x, more than --audio-tolerance {tolerance_s:g} s apart): {cause}"
    )


def check_finite_arrays(
    path: Path, prefix: str, data: Mapping[str, Any], names: Iterable[str]
) -> None:
    """Raise FormatError naming file, utterance and dataset when one holds NaN or Inf.

    Args:
        path: the prepared file.
        prefix: the utterance.
        data: arrays by dataset name (absent names are skipped).
        names: the datasets to check.
    """
    for name in names:
        if name not in data or data[name] is None:
            continue
        values = np.asarray(data[name])
        if values.dtype.kind not in "fc" or all_finite(values):
            continue
        finite = np.isfinite(values)
        if not finite.all():
            where = ""
            if values.ndim >= 1 and values.shape[0] > 1:
                bad = int(np.argmin(finite.reshape(values.shape[0], -1).all(axis=1)))
                where = f" (first at index {bad} of {values.shape[0]})"
            raise FormatError(f"{path}: utterance {prefix}: {name} holds NaN or Inf values{where}")


def check_device_option(device: str, flag: str = "--device") -> None:
    """Raise InputError unless ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    from sirem_cli.errors import InputError

    if device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", str(device)):
        return
    raise InputError(f"{flag} must be auto, cpu, cuda or cuda:N, got {device!r}")
