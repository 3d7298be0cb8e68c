"""Write outputs under a temporary name and rename them when complete.

The implementation and the whole output policy (inputs never written, ``--overwrite``, locks,
stale temporaries, full disks) live in :mod:`sirem_cli.io.output`; this module keeps the names
the writers import.
"""

from __future__ import annotations

from sirem_cli.io.output import atomic_path, check_output_path, claim_outputs, h5_create

__all__ = ["atomic_path", "check_output_path", "claim_outputs", "h5_create"]
