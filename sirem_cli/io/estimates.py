"""About how many bytes a command writes, for the free-space check before any work.

Estimates err on the large side by a few percent; the check keeps a margin on top
(:data:`sirem_cli.io.output.SPACE_MARGIN_BYTES`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Prepared bytes per byte of ISMRMRD raw file: the k-space (the raw file less its 340-byte
#: acquisition headers and trajectory rows, ~0.84) plus per frame the reference, eba, labels
#: and truth images and the coil maps (~0.2 for 84 x 84 images of 13-arm frames; the images
#: scale with 13 / N for frames of N arms).
PREPARED_PER_RAW_BYTE = 1.1
KSPACE_PER_RAW_BYTE = 0.9
#: Prepared bytes per byte of a 16-bit wav: float32 samples at 16 kHz (at most 2x).
PREPARED_PER_WAV_BYTE = 2.0
#: HDF5 overhead per utterance group (attributes, B-tree nodes).
GROUP_OVERHEAD_BYTES = 64 * 1024


def _size(path: Path | None) -> int:
    if path is None:
        return 0
    with contextlib.suppress(OSError):
        return Path(path).stat().st_size
    return 0


def prepared_bytes(utterances: Iterable[Any], arms_per_frame: int | None = None) -> float:
    """Bytes of the prepared file of these utterances (entries with a ``files`` dict of
    ``raw``/``audio`` paths), for frames of ``arms_per_frame`` arms (None: 13)."""
    images = (PREPARED_PER_RAW_BYTE - KSPACE_PER_RAW_BYTE) * 13 / (arms_per_frame or 13)
    total = 0.0
    for entry in utterances:
        total += (KSPACE_PER_RAW_BYTE + images) * _size(entry.files.get("raw"))
        total += PREPARED_PER_WAV_BYTE * _size(entry.files.get("audio")) + GROUP_OVERHEAD_BYTES
    return total


def recon_bytes(refs: Sequence[Any]) -> float:
    """Bytes of a reconstruction file of these utterances (float32 (F, H, W) frames each)."""
    import h5py

    total = 0.0
    sizes: dict[Path, tuple[int, int]] = {}
    for ref in refs:
        if ref.path not in sizes:
            try:
                with h5py.File(ref.path, "r") as f:
                    group = f["utterances"][ref.prefix]
                    sizes[ref.path] = tuple(int(v) for v in group["smaps"].shape[-2:])
            except (OSError, KeyError):
                sizes[ref.path] = (84, 84)
        height, width = sizes[ref.path]
        total += 4 * ref.n_frames * height * width + GROUP_OVERHEAD_BYTES
    return total
