"""One-line descriptions of torch files that cannot be loaded (checkpoints, LPIPS/FID weights).

Torch's own messages for a refused or broken file advise reloading it with
``weights_only=False``, which would run any code the file holds: that advice is never shown.
This module does not import torch.
"""

from __future__ import annotations

import re
from pathlib import Path

_ZIP = b"PK\x03\x04"
_HDF5 = b"\x89HDF\r\n\x1a\n"
_PICKLE = b"\x80"


def sniff(path: Path) -> str:
    """What the first bytes of ``path`` say: ``zip`` (a torch file), ``pickle`` (legacy torch
    or a plain pickle), ``hdf5``, ``empty`` or ``other``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return "other"
    if not head:
        return "empty"
    if head.startswith(_ZIP):
        return "zip"
    if head.startswith(_HDF5):
        return "hdf5"
    if head.startswith(_PICKLE):
        return "pickle"
    return "other"


def describe_load_error(path: Path, exc: BaseException, *, what: str = "torch file") -> str:
    """One line: why ``torch.load(path, weights_only=True)`` failed, without torch's advice.

    Args:
        path: the file.
        exc: what ``torch.load`` raised.
        what: the kind of file expected (``sirem checkpoint``, ``weight file``).
    """
    kind = sniff(path)
    text = str(exc)
    if kind == "empty":
        return f"{path}: is empty, not a {what}"
    if kind == "hdf5":
        return f"{path}: is an HDF5 file, not a {what}"
    if kind == "other":
        return f"{path}: not a {what} (not a torch file)"
    match = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", text)
    if match:
        return (
            f"{path}: refusing to load: the file holds pickled code/objects ({match.group(1)}); "
            f"a {what} holds tensors only"
        )
    if type(exc).__name__ == "UnpicklingError":
        return (
            f"{path}: refusing to load: not a plain tensor file (a pickle that tensor-only "
            f"loading rejects, perhaps holding code); not a {what}"
        )
    return f"{path}: truncated or corrupt (not a complete {what}); copy or download it again"
