"""Exact non-uniform DFT (O(K H W)): the reference for tests, tiny sizes only.

Implements exactly the convention of :mod:`sirem_cli.nufft.base` in complex128 with an
explicit matrix ``E[k, r W + c] = exp(-i (kr_k (r - H//2) + kc_k (c - W//2)))``:
forward ``y = E x``, adjoint ``x = E^H y``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sirem_cli.errors import ShapeError
from sirem_cli.nufft.base import HostNufftOp, check_im_shape, check_traj

#: Refuse matrices larger than this many entries (about 256 MiB in complex128).
MAX_ENTRIES = 16_000_000


def ndft_matrix(traj: Any, im_shape: Any) -> np.ndarray:
    """The forward NDFT matrix.

    Args:
        traj: (..., 2) float radians/pixel; flattened to K points.
        im_shape: (H, W).

    Returns:
        (K, H*W) complex128 matrix E with ``y = E @ image.ravel()``.
    """
    pts = check_traj(traj)
    h, w = check_im_shape(im_shape)
    if pts.shape[0] * h * w > MAX_ENTRIES:
        raise ShapeError(f"ndft: K*H*W = {pts.shape[0] * h * w} too large for the exact NDFT")
    rows = np.arange(h, dtype=np.float64) - h // 2
    cols = np.arange(w, dtype=np.float64) - w // 2
    phase = (
        pts[:, 0, None, None] * rows[None, :, None] + pts[:, 1, None, None] * cols[None, None, :]
    )
    return np.exp(-1j * phase).reshape(pts.shape[0], h * w)


def ndft_forward(image: np.ndarray, traj: Any) -> np.ndarray:
    """Exact forward transform: (..., H, W) -> (..., K) complex128."""
    image = np.asarray(image)
    mat = ndft_matrix(traj, image.shape[-2:])
    flat = image.reshape(-1, image.shape[-2] * image.shape[-1]).astype(np.complex128)
    return (flat @ mat.T).reshape(*image.shape[:-2], mat.shape[0])


def ndft_adjoint(kspace: np.ndarray, traj: Any, im_shape: Any) -> np.ndarray:
    """Exact adjoint transform: (..., K) -> (..., H, W) complex128."""
    kspace = np.asarray(kspace)
    h, w = check_im_shape(im_shape)
    mat = ndft_matrix(traj, (h, w))
    flat = kspace.reshape(-1, mat.shape[0]).astype(np.complex128)
    return (flat @ mat.conj()).reshape(*kspace.shape[:-1], h, w)


class NdftOp(HostNufftOp):
    """Exact NDFT with the :class:`~sirem_cli.nufft.base.NufftOp` interface.

    Computes in complex128 and returns the input's complex dtype. ``eps`` and
    ``n_threads`` are accepted for interface compatibility and ignored.
    """

    backend = "ndft"

    def __init__(self, traj: Any, im_shape: Any, **kwargs: Any) -> None:
        super().__init__(traj, im_shape, **kwargs)
        self._matrix = ndft_matrix(self.traj, self.im_shape)

    def _execute(self, nufft_type: int, data: np.ndarray, cdtype: str) -> np.ndarray:
        n = data.shape[0]
        h, w = self.im_shape
        if nufft_type == 2:
            out = data.reshape(n, h * w).astype(np.complex128) @ self._matrix.T
        else:
            out = (data.astype(np.complex128) @ self._matrix.conj()).reshape(n, h, w)
        return out.astype(cdtype)
