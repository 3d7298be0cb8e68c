"""Tiny numeric helpers on image stacks, each written once (numpy only, import-light).

The PSNR that every command reports is :func:`sirem_cli.metrics.image.psnr`; unit
conversions of trajectories are in :mod:`sirem_cli.mri.spiral` (``to_radians``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def normalize_magnitude(images: Any) -> np.ndarray:
    """|images| (F, H, W) divided by each frame's maximum: float32 in [0, 1].

    An all-zero frame stays zero. This is the normalization of every reconstruction,
    reference and truth frame sirem stores.
    """
    mag = np.abs(np.asarray(images)).astype(np.float32)
    peak = mag.reshape(mag.shape[0], -1).max(axis=1)
    return mag / np.where(peak > 0, peak, 1)[:, None, None]
