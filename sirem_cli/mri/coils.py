"""Coil sensitivity estimation (Walsh et al. 2000) and its low-resolution coil images.

Walsh's adaptive estimate: at each pixel, the coil correlation matrix
``R(r) = sum_{r' in window(r)} x(r') x(r')^H`` (C x C, x the vector of coil images) is
accumulated over a square smoothing window; its dominant eigenvector is the
sensitivity vector up to a phase, which is referenced to one coil. The vectors have unit
norm, so ``sum_c |S_c|^2 = 1`` wherever the estimate is kept.

Reference: D. O. Walsh, A. F. Gmitro, M. W. Marcellin, "Adaptive reconstruction of
phased array MR imagery", Magn. Reson. Med. 43 (2000) 682-690.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from sirem_cli.errors import ShapeError


def walsh_maps(
    coil_images: Any,
    smoothing: int = 5,
    *,
    ref_coil: int | None = None,
    threshold: float = 0.0,
) -> np.ndarray:
    """Estimate coil sensitivities from coil images with Walsh's method.

    Args:
        coil_images: (C, H, W) complex coil images (e.g. low-resolution adjoints).
        smoothing: side of the square smoothing window in pixels (>= 1).
        ref_coil: coil whose sensitivity is made real and non-negative (the phase
            reference); None picks the coil with the most energy.
        threshold: pixels whose dominant eigenvalue is below ``threshold`` times its
            maximum get zero sensitivity (0 keeps every pixel).

    Returns:
        (C, H, W) complex64 sensitivities with ``sum_c |S_c|^2 = 1`` at every kept pixel.

    Raises:
        ShapeError: wrong shape, non-finite values or bad parameters.
    """
    imgs = np.asarray(coil_images)
    if imgs.ndim != 3 or min(imgs.shape) < 1:
        raise ShapeError(f"coil_images: expected shape (C, H, W), got {imgs.shape}")
    if not np.all(np.isfinite(imgs)):
        raise ShapeError("coil_images: contains NaN or infinite values")
    if int(smoothing) < 1:
        raise ShapeError(f"smoothing: expected a window of at least 1 pixel, got {smoothing}")
    if not 0.0 <= float(threshold) < 1.0:
        raise ShapeError(f"threshold: expected a value in [0, 1), got {threshold}")
    n_coils = imgs.shape[0]
    if ref_coil is None:
        ref_coil = int(np.argmax(np.sum(np.abs(imgs) ** 2, axis=(1, 2))))
    if not 0 <= ref_coil < n_coils:
        raise ShapeError(f"ref_coil: expected an index in [0, {n_coils}), got {ref_coil}")
    x = imgs.astype(np.complex128)
    # Correlation matrices R[c, d] = sum_window x_c conj(x_d), (H, W, C, C).
    outer = x[:, None] * x[None, :].conj()  # (C, C, H, W)
    size = (1, 1, int(smoothing), int(smoothing))
    corr = uniform_filter(outer.real, size=size, mode="nearest") + 1j * uniform_filter(
        outer.imag, size=size, mode="nearest"
    )
    corr = np.moveaxis(corr, (0, 1), (2, 3))  # (H, W, C, C)
    corr = 0.5 * (corr + np.swapaxes(corr, -1, -2).conj())
    evals, evecs = np.linalg.eigh(corr)
    vec = evecs[..., -1]  # (H, W, C), unit norm
    ref = vec[..., ref_coil]
    phase = np.where(np.abs(ref) > 0, ref.conj() / np.maximum(np.abs(ref), 1e-300), 1.0)
    vec = vec * phase[..., None]
    if threshold > 0:
        top = evals[..., -1]
        vec = np.where((top >= threshold * top.max())[..., None], vec, 0)
    return np.ascontiguousarray(np.moveaxis(vec, -1, 0)).astype(np.complex64)


def gridded_coil_images(
    kspace: Any,
    traj: Any,
    dcf: Any,
    shape: tuple[int, int],
    *,
    device: Any = "cpu",
    eps: float | None = None,
) -> np.ndarray:
    """Per-coil gridding ``F^H W y_c`` (no coil combination: the maps are not known yet).

    Args:
        kspace: (..., C, A, S) complex k-space of frames holding the A arms of ``traj``.
        traj: (A, S, 2) float radians/pixel in [-pi, pi).
        dcf: (A, S) float density compensation W.
        shape: (H, W) of the images.
        device: NUFFT device (``"cpu"``, ``"cuda"``, ``"auto"``).
        eps: NUFFT accuracy (None: the default).

    Returns:
        (..., C, H, W) complex64 coil images.
    """
    from sirem_cli.nufft import shared_nufft

    ksp = np.asarray(kspace)
    if ksp.ndim < 3 or min(ksp.shape) < 1:
        raise ShapeError(f"kspace: expected shape (..., C, A, S), got {ksp.shape}")
    n_arms, n_samples = ksp.shape[-2:]
    traj_arr = np.asarray(traj)
    if traj_arr.shape != (n_arms, n_samples, 2):
        raise ShapeError(f"traj: expected shape ({n_arms}, {n_samples}, 2), got {traj_arr.shape}")
    dcf_arr = np.asarray(dcf)
    if dcf_arr.shape != (n_arms, n_samples):
        raise ShapeError(f"dcf: expected shape ({n_arms}, {n_samples}), got {dcf_arr.shape}")
    weighted = (ksp * dcf_arr).reshape(*ksp.shape[:-2], n_arms * n_samples)  # (..., C, K)
    op = shared_nufft(traj_arr.reshape(-1, 2), shape, device=device, eps=eps)
    images = op.adjoint(weighted.astype(np.complex64))
    if not isinstance(images, np.ndarray):
        images = images.cpu().numpy()
    return images.astype(np.complex64)
