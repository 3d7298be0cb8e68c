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


def is_torch(data: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(data).__module__.startswith("torch")


def all_finite(values: Any) -> bool:
    """True when a numpy array or torch tensor (real or complex) holds no NaN or Inf.

    One summation pass first (NaN and Inf propagate into the sum): several times faster than
    an element-wise ``isfinite`` on large arrays, which allocates a mask. A sum that
    overflows (finite values near the dtype's maximum) falls back to the exact check.
    """
    if is_torch(values):
        import torch

        real = torch.view_as_real(values) if values.is_complex() else values
        if not real.is_floating_point() or bool(torch.isfinite(real.sum())):
            return True
        return bool(torch.isfinite(real).all())
    arr = np.asarray(values)
    if arr.dtype.kind not in "fc":
        return True
    if np.isfinite(arr.sum()):
        return True
    return bool(np.isfinite(arr).all())
