"""The user's cache of frozen-encoder embeddings, shared by ``sirem train`` and ``sirem reconstruct``.

Prepared files are inputs and are never written; the embeddings an encoder computes for an
utterance are kept in the user cache folder instead::

    $SIREM_CACHE                 (else $XDG_CACHE_HOME/sirem, else ~/.cache/sirem)
      embeddings/<encoder key>/<content key>.npz

``<encoder key>`` is the encoder's name and a hash of its identity (its source, e.g. the HuBERT
folder, and its settings); ``<content key>`` is the SHA-256 of the utterance's 16 kHz audio, its
per-frame windows, the sample rate and the encoder identity. So an entry is found again from any
copy of the prepared file, and a changed audio, window or encoder never reuses a stale entry.
Each entry is one ``.npz`` (``embeddings`` (F, E) float32, ``ms_per_frame``) written under a
temporary name, flushed and renamed: two processes computing the same entry at once both write
a complete file, and a process killed while writing leaves only its temporary, which a later
store in that folder removes. A damaged entry is ignored and computed again.

Clear the cache by removing the folder (``rm -r ~/.cache/sirem/embeddings``); ``--no-cache``
(train, reconstruct) neither reads nor writes it. Prepared files written by earlier sirem versions may
hold embeddings under ``embeddings/<encoder>``; they are still read when their source matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.io.output import (
    fault_point,
    log,
    open_binary,
    pid_alive,
    temporary_name,
)

CACHE_FORMAT = "sirem-embeddings/1"
#: Temporaries of other machines (or of a reused pid) older than this are removed.
STALE_TEMP_S = 24 * 3600.0
_warned: set[str] = set()


def cache_root() -> Path:
    """``$SIREM_CACHE``, else ``$XDG_CACHE_HOME/sirem``, else ``~/.cache/sirem``."""
    if os.environ.get("SIREM_CACHE"):
        return Path(os.environ["SIREM_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "sirem"
    return Path.home() / ".cache" / "sirem"


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """What makes an encoder's embeddings what they are: its name, source and scalar settings."""
    identity: dict[str, Any] = {"name": str(encoder.name)}
    for key, value in sorted(vars(encoder).items()):
        if key.startswith("_") or key == "device":
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            identity[key] = value
    source = getattr(encoder, "source", None)
    if source:
        identity["source"] = str(source)
    return identity


def encoder_key(identity: dict[str, Any]) -> str:
    """``<name>-<16 hex digits>``: the cache folder of one encoder."""
    text = json.dumps(identity, sort_keys=True)
    name = re.sub(r"[^A-Za-z0-9_.]", "_", str(identity.get("name", "encoder")))[:32]
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def content_key(
    identity: dict[str, Any], audio: np.ndarray, window: np.ndarray, sample_rate: float
) -> str:
    """SHA-256 of the audio (float32), the windows (int64), the rate and the encoder identity."""
    digest = hashlib.sha256()
    digest.update(CACHE_FORMAT.encode() + b"\0")
    digest.update(json.dumps(identity, sort_keys=True).encode() + b"\0")
    digest.update(f"{float(sample_rate):.6f}\0".encode())
    digest.update(np.ascontiguousarray(window, dtype=np.int64).tobytes())
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    return digest.hexdigest()


@dataclass
class Lookup:
    """The result of :func:`lookup`.

    Attributes:
        values: (F, E) float32 embeddings found, or None.
        ms_per_frame: the encoder's cost when they were computed (NaN if unknown).
        audio: (T,) float32 waveform of the utterance (None when ``values`` came from a
            prepared file).
        window: (F, 2) int64 per-frame windows in samples (likewise).
        entry: the cache file for :func:`store` (None with the cache off).
    """

    values: np.ndarray | None
    ms_per_frame: float
    audio: np.ndarray | None = None
    window: np.ndarray | None = None
    entry: Path | None = None


def _from_prepared(ref: Any, encoder: Any) -> Lookup | None:
    """Embeddings an older sirem stored in the prepared file (read-only)."""
    from sirem_cli.io.prepared import h5_open_waiting

    key = f"embeddings/{encoder.name}"
    with h5_open_waiting(ref.path, "r") as f:
        group = f["utterances"][ref.prefix]
        if key not in group:
            return None
        dataset = group[key]
        try:
            info = json.loads(dataset.attrs.get("info", "{}"))
        except (TypeError, ValueError):
            return None
        source = str(getattr(encoder, "source", None) or encoder.name)
        if info.get("source") != source or dataset.shape[0] != ref.n_frames:
            return None
        values = np.asarray(dataset[()], dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != encoder.embedding_dim:
        return None
    if not np.all(np.isfinite(values)):
        return None
    return Lookup(values, float(info.get("ms_per_frame", float("nan"))))


def _read_entry(entry: Path, n_frames: int, dim: int) -> tuple[np.ndarray, float] | None:
    try:
        with np.load(entry, allow_pickle=False) as npz:
            values = np.asarray(npz["embeddings"])
            ms = float(npz["ms_per_frame"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        log.info("%s: damaged embedding cache entry; computing it again", entry)
        return None
    if values.dtype != np.float32 or values.shape != (n_frames, dim):
        return None
    if not np.all(np.isfinite(values)):
        return None
    return values, ms


def lookup(ref: Any, encoder: Any, *, cache: bool = True) -> Lookup:
    """Find the embeddings of one utterance; else return what :func:`store` needs.

    Args:
        ref: a :class:`~sirem_cli.io.prepared.UtteranceRef`.
        encoder: the audio encoder (``name``, ``embedding_dim``, optional ``source``).
        cache: look in (and later store to) the user cache.
    """
    from sirem_cli.io.checks import check_finite_arrays
    from sirem_cli.io.prepared import PreparedSet

    found = _from_prepared(ref, encoder)
    if found is not None:
        return found
    data = PreparedSet.read(ref, ["audio", "audio_window"])
    check_finite_arrays(ref.path, ref.prefix, data, ["audio"])
    audio, window = data["audio"], data["audio_window"]
    if not cache:
        return Lookup(None, float("nan"), audio, window)
    identity = encoder_identity(encoder)
    rate = float(data["attrs"].get("sample_rate_hz", 16000))
    entry = (
        cache_root()
        / "embeddings"
        / encoder_key(identity)
        / f"{content_key(identity, audio, window, rate)}.npz"
    )
    hit = _read_entry(entry, ref.n_frames, int(encoder.embedding_dim))
    if hit is not None:
        return Lookup(hit[0], hit[1], audio, window, entry)
    return Lookup(None, float("nan"), audio, window, entry)


def _remove_stale_temporaries(folder: Path) -> None:
    from sirem_cli.io.output import _HOST

    pattern = re.compile(r"^\..+\.npz\.sirem-([A-Za-z0-9_]+)-(\d+)-[0-9a-f]+\.tmp$")
    now = time.time()
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            match = pattern.match(item.name)
            if not match:
                continue
            host, pid = match.group(1), int(match.group(2))
            with contextlib.suppress(OSError):
                dead = host == _HOST and pid != os.getpid() and not pid_alive(pid)
                if dead or now - item.stat().st_mtime > STALE_TEMP_S:
                    os.unlink(item.path)


def store(entry: Path | None, values: np.ndarray, ms_per_frame: float) -> None:
    """Write one cache entry atomically (best effort: a cache that cannot be written is noted
    once and the embeddings stay in memory)."""
    if entry is None:
        return
    folder = entry.parent
    tmp = folder / temporary_name(entry.name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(folder)
        with open_binary(tmp) as handle:
            np.savez(
                handle,
                embeddings=np.ascontiguousarray(values, dtype=np.float32),
                ms_per_frame=np.float64(ms_per_frame),
            )
        fault_point("cache:rename")
        os.replace(tmp, entry)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        root = str(cache_root())
        if root not in _warned:
            _warned.add(root)
            log.warning(
                "embedding cache %s cannot be written (%s); embeddings are kept in memory only",
                root,
                exc.strerror or exc,
            )
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
