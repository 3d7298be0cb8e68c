"""Distortion metrics on magnitude frames in [0, 1] (method.md section 4).

Every function takes ``recon`` and ``target`` as float arrays of the same shape, either one
frame (H, W) or a sequence (F, H, W), values in [0, 1], and returns the per-frame values as
a float64 array of shape ``recon.shape[:-2]``: () for one frame, (F,) for a sequence. Averaging
over frames and sequences is done by :mod:`sirem_cli.metrics.evaluate`.

``psnr_ls`` and ``ssim_ls`` score the reconstruction after the per-frame least-squares scale
(:func:`ls_scale`), so a frame that is an exact multiple of its target scores perfectly: at
2 arms per frame one streak can set a frame's maximum, and the per-frame max normalization then
costs PSNR that is not an image error.

Undefined values (a zero denominator, e.g. NMSE against an all-zero target frame) are NaN,
except that identical frames always give a perfect score (0 error); the evaluation skips NaN
frames and counts them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sirem_cli.errors import ShapeError
from sirem_cli.metrics.registry import PSNR_CAP_DB

__all__ = [
    "hfen",
    "log_kernel",
    "ls_scale",
    "mse",
    "nmse",
    "nrmse",
    "psnr",
    "psnr_ls",
    "ssim",
    "ssim_ls",
]


def as_frame_pair(recon: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check shapes and return float64 (F, H, W) views of both arrays.

    Args:
        recon: (H, W) or (F, H, W) real array.
        target: same shape as ``recon``.

    Returns:
        ``(recon, target, single)``: float64 (F, H, W) arrays and whether the input was one
        frame (F = 1 was added).

    Raises:
        ShapeError: shapes differ, are not 2-D/3-D, or the arrays are complex.
    """
    x = np.asarray(recon)
    y = np.asarray(target)
    if x.shape != y.shape:
        raise ShapeError(f"recon and target shapes differ: {x.shape} vs {y.shape}")
    if x.ndim not in (2, 3):
        raise ShapeError(f"expected (H, W) or (F, H, W) frames, got shape {x.shape}")
    if np.iscomplexobj(x) or np.iscomplexobj(y):
        raise ShapeError("metrics take real magnitude frames, got a complex array")
    single = x.ndim == 2
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if single:
        x, y = x[None], y[None]
    return x, y, single


def _out(values: np.ndarray, single: bool) -> np.ndarray:
    return np.asarray(values[0] if single else values, dtype=np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per frame; 0/0 -> 0 (identical frames), x/0 -> NaN (undefined)."""
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    out[(~ok) & (num == 0)] = 0.0
    return out


def mse(recon: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean squared error per frame, mean over the H x W pixels.

    Args:
        recon: (H, W) or (F, H, W) frames in [0, 1].
        target: same shape.

    Returns:
        () or (F,) float64.
    """
    x, y, single = as_frame_pair(recon, target)
    return _out(np.mean((x - y) ** 2, axis=(1, 2)), single)


def psnr(
    recon: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float = 1.0,
    cap_db: float | None = PSNR_CAP_DB,
) -> np.ndarray:
    """Peak signal-to-noise ratio per frame, 10 log10(data_range^2 / MSE), in dB.

    Identical frames have MSE 0 and an infinite PSNR; it is capped at ``cap_db``
    (default :data:`~sirem_cli.metrics.registry.PSNR_CAP_DB` = 100 dB) so that averages stay
    finite. ``cap_db=None`` returns ``inf`` for them.

    Args:
        recon: (H, W) or (F, H, W) frames in [0, 1].
        target: same shape.
        data_range: peak value (1 for [0, 1] frames).
        cap_db: upper bound on the result, or None for no bound.

    Returns:
        () or (F,) float64, dB.
    """
    x, y, single = as_frame_pair(recon, target)
    err = np.mean((x - y) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        val = 10.0 * np.log10(data_range**2 / err)
    if cap_db is not None:
        val = np.minimum(val, cap_db)
    return _out(val, single)


def nmse(recon: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Normalized MSE per frame, ||recon - target||^2 / ||target||^2.

    Args:
        recon: (H, W) or (F, H, W) frames.
        target: same shape.

    Returns:
        () or (F,) float64; NaN for an all-zero target frame unless recon equals it.
    """
    x, y, single = as_frame_pair(recon, target)
    return _out(_ratio(np.sum((x - y) ** 2, axis=(1, 2)), np.sum(y**2, axis=(1, 2))), single)


def nrmse(recon: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Normalized RMSE per frame, sqrt(MSE) / (max(target) - min(target)).

    On frames normalized to [0, 1] per frame (target range exactly 1) this equals
    10^(-PSNR/20).

    Args:
        recon: (H, W) or (F, H, W) frames.
        target: same shape.

    Returns:
        () or (F,) float64; NaN for a constant target frame unless recon equals it.
    """
    x, y, single = as_frame_pair(recon, target)
    rmse = np.sqrt(np.mean((x - y) ** 2, axis=(1, 2)))
    rng = np.max(y, axis=(1, 2)) - np.min(y, axis=(1, 2))
    return _out(_ratio(rmse, rng), single)


def ssim(
    recon: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """Structural similarity per frame (Wang et al. 2004).

    Gaussian-weighted local statistics (sigma 1.5, 11 x 11 support, reflected borders),
    population covariances, C1 = (k1 L)^2, C2 = (k2 L)^2 with L = ``data_range``; the SSIM map
    is averaged over the frame without the 5-pixel border. Matches scikit-image's
    ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)`` frame by frame.

    Args:
        recon: (H, W) or (F, H, W) frames in [0, 1], H and W at least 11.
        target: same shape.
        data_range: dynamic range L of the frames.
        sigma: standard deviation of the Gaussian window, pixels.
        k1: luminance constant.
        k2: contrast constant.

    Returns:
        () or (F,) float64 in [-1, 1]; 1 for identical frames.
    """
    x, y, single = as_frame_pair(recon, target)
    truncate = 3.5
    radius = int(truncate * sigma + 0.5)
    if min(x.shape[1:]) < 2 * radius + 1:
        raise ShapeError(f"ssim needs frames of at least {2 * radius + 1} pixels, got {x.shape}")

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(
            a, sigma=(0, sigma, sigma), truncate=truncate, mode="reflect"
        )

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    r = radius
    return _out(np.mean(smap[:, r:-r, r:-r], axis=(1, 2)), single)


def ls_scale(recon: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame least-squares scale a = <x, y> / <x, x>, the minimizer of ||a x - y||^2.

    Args:
        recon: (H, W) or (F, H, W) frames x.
        target: same shape, frames y.

    Returns:
        () or (F,) float64 scales; 0 for an all-zero recon frame (then a x = 0 for any a).
    """
    x, y, single = as_frame_pair(recon, target)
    num = np.einsum("fhw,fhw->f", x, y)
    den = np.einsum("fhw,fhw->f", x, x)
    a = np.zeros_like(num)
    ok = den > 0
    a[ok] = num[ok] / den[ok]
    return _out(a, single)


def _scaled(recon: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, H, W) a x and y in float64 (a per frame from :func:`ls_scale`), plus the shape flag."""
    x, y, single = as_frame_pair(recon, target)
    a = ls_scale(x, y)
    return a[:, None, None] * x, y, single  # (F, 1, 1) * (F, H, W)


def psnr_ls(
    recon: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float = 1.0,
    cap_db: float | None = PSNR_CAP_DB,
) -> np.ndarray:
    """PSNR per frame after the least-squares scale: :func:`psnr` of (a x, y), a = :func:`ls_scale`.

    Invariant to a positive scale of each recon frame; never below the PSNR of the unscaled
    frame (a = 1 is one of the candidates the scale minimizes over).

    Args:
        recon: (H, W) or (F, H, W) frames.
        target: same shape, in [0, 1].
        data_range: peak value of the target (1 for [0, 1] frames).
        cap_db: upper bound on the result (an exact multiple of the target reaches it), or None.

    Returns:
        () or (F,) float64, dB.
    """
    ax, y, single = _scaled(recon, target)
    return _out(psnr(ax, y, data_range=data_range, cap_db=cap_db), single)


def ssim_ls(recon: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> np.ndarray:
    """SSIM per frame after the least-squares scale: :func:`ssim` of (a x, y), a = :func:`ls_scale`.

    Args:
        recon: (H, W) or (F, H, W) frames, H and W at least 11.
        target: same shape, in [0, 1].
        data_range: dynamic range L of the target.

    Returns:
        () or (F,) float64; 1 for a frame that is an exact multiple of its target.
    """
    ax, y, single = _scaled(recon, target)
    return _out(ssim(ax, y, data_range=data_range), single)


def log_kernel(size: int = 15, sigma: float = 1.5) -> np.ndarray:
    """Laplacian-of-Gaussian kernel built like MATLAB's ``fspecial('log', size, sigma)``.

    g = exp(-(u^2 + v^2) / (2 sigma^2)) on the integer grid centred on the kernel, values
    below eps * max(g) set to 0, normalized to sum 1; h = g (u^2 + v^2 - 2 sigma^2) / sigma^4,
    then its mean is subtracted so the kernel sums to exactly zero.

    Args:
        size: odd side length, pixels.
        sigma: Gaussian standard deviation, pixels.

    Returns:
        (size, size) float64 kernel, symmetric, zero sum.
    """
    if size < 1 or size % 2 == 0:
        raise ShapeError(f"LoG kernel size must be odd and positive, got {size}")
    half = (size - 1) / 2
    u = np.arange(size) - half
    uu, vv = np.meshgrid(u, u, indexing="ij")
    r2 = uu**2 + vv**2
    var = sigma**2
    g = np.exp(-r2 / (2 * var))
    g[g < np.finfo(np.float64).eps * g.max()] = 0.0
    g /= g.sum()
    h = g * (r2 - 2 * var) / var**2
    return h - h.sum() / h.size


def hfen(
    recon: np.ndarray, target: np.ndarray, *, size: int = 15, sigma: float = 1.5
) -> np.ndarray:
    """High-frequency error norm per frame, ||LoG(recon) - LoG(target)||_2 / ||LoG(target)||_2.

    LoG is the 15 x 15, sigma 1.5 kernel of :func:`log_kernel`, applied with symmetric
    (mirrored) borders, as MATLAB ``imfilter(..., 'symmetric')`` in Ravishankar and Bresler's
    DLMRI code.

    Args:
        recon: (H, W) or (F, H, W) frames.
        target: same shape.
        size: LoG kernel side, pixels (odd).
        sigma: LoG standard deviation, pixels.

    Returns:
        () or (F,) float64, >= 0; NaN when LoG(target) is zero and recon differs from it.
    """
    x, y, single = as_frame_pair(recon, target)
    k = log_kernel(size, sigma)[None]
    lx = ndimage.correlate(x, k, mode="reflect")
    ly = ndimage.correlate(y, k, mode="reflect")
    num = np.sqrt(np.sum((lx - ly) ** 2, axis=(1, 2)))
    den = np.sqrt(np.sum(ly**2, axis=(1, 2)))
    return _out(_ratio(num, den), single)
