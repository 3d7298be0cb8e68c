"""Pixel-domain visual information fidelity, VIFp (Sheikh and Bovik 2006).

The multi-scale pixel-domain version of the authors' reference code (``vifp_mscale``):
4 scales; at scale s the window is an N x N Gaussian with N = 2^(5-s) + 1 and standard
deviation N / 5 (17, 9, 5, 3 pixels); between scales both images are low-passed with that
window ('valid' part only) and decimated by 2. At every scale the local statistics use the
'valid' part of the window correlation, and

    g = sigma_xy / sigma_x^2,   sv^2 = sigma_y^2 - g sigma_xy   (x = target, y = recon)
    VIF = sum log10(1 + g^2 sigma_x^2 / (sv^2 + sigma_n^2)) / sum log10(1 + sigma_x^2 / sigma_n^2)

with the reference's guards for flat regions and negative gains, and the noise variance
sigma_n^2 = 2 on a 0..255 intensity scale: [0, 1] frames are multiplied by 255 first (the
constant is meaningless on [0, 1] data: every distortion would score about 1). Frames are
processed together with separable filters (the Gaussian windows are exactly separable).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sirem_cli.errors import ShapeError
from sirem_cli.metrics.image import _out, as_frame_pair

__all__ = ["gaussian_window_1d", "vifp"]

_EPS = 1e-10


def gaussian_window_1d(size: int) -> np.ndarray:
    """1-D factor of MATLAB's ``fspecial('gaussian', size, size / 5)``.

    The 2-D window is ``np.outer(w, w)``: the eps * max cut-off of fspecial removes nothing for
    these sizes (the smallest corner value is exp(-12.5) of the peak).

    Args:
        size: odd window side, pixels.

    Returns:
        (size,) float64 summing to 1.
    """
    sigma = size / 5.0
    u = np.arange(size) - (size - 1) / 2
    w = np.exp(-(u**2) / (2 * sigma**2))
    return w / w.sum()


def _filter_valid(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable correlation of (F, H, W) stacks with outer(w, w), 'valid' part only."""
    r = (len(w) - 1) // 2
    out = ndimage.correlate1d(a, w, axis=1, mode="constant")
    out = ndimage.correlate1d(out, w, axis=2, mode="constant")
    return out[:, r : a.shape[1] - r, r : a.shape[2] - r]


def vifp(
    recon: np.ndarray,
    target: np.ndarray,
    *,
    sigma_nsq: float = 2.0,
    intensity_scale: float = 255.0,
) -> np.ndarray:
    """VIFp per frame: the information the recon preserves about the target.

    Args:
        recon: (H, W) or (F, H, W) distorted frames in [0, 1]; H, W >= 41 so that the
            4th scale keeps some pixels.
        target: same shape, the reference frames.
        sigma_nsq: visual noise variance on the ``intensity_scale`` scale (2 on 0..255).
        intensity_scale: frames are multiplied by this before the computation.

    Returns:
        () or (F,) float64; 1 for identical frames, near 0 for unrelated ones (can exceed 1
        for contrast enhancement); NaN when the target has no variance at any scale.
    """
    x, y, single = as_frame_pair(target, recon)  # x: reference, y: distorted
    x = x * intensity_scale
    y = y * intensity_scale
    num = np.zeros(x.shape[0])
    den = np.zeros(x.shape[0])
    for scale in range(1, 5):
        w = gaussian_window_1d(2 ** (4 - scale + 1) + 1)
        if scale > 1:
            x = _filter_valid(x, w)[:, ::2, ::2]
            y = _filter_valid(y, w)[:, ::2, ::2]
        if min(x.shape[1:]) < len(w):
            raise ShapeError(f"frames too small for VIF: scale {scale} leaves {x.shape[1:]} pixels")
        mu1 = _filter_valid(x, w)
        mu2 = _filter_valid(y, w)
        s1 = _filter_valid(x * x, w) - mu1 * mu1
        s2 = _filter_valid(y * y, w) - mu2 * mu2
        s12 = _filter_valid(x * y, w) - mu1 * mu2
        s1 = np.maximum(s1, 0.0)
        s2 = np.maximum(s2, 0.0)
        g = s12 / (s1 + _EPS)
        sv = s2 - g * s12
        flat1 = s1 < _EPS
        g[flat1] = 0.0
        sv[flat1] = s2[flat1]
        s1[flat1] = 0.0
        flat2 = s2 < _EPS
        g[flat2] = 0.0
        sv[flat2] = 0.0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0.0
        sv = np.maximum(sv, _EPS)
        num += np.sum(np.log10(1.0 + g**2 * s1 / (sv + sigma_nsq)), axis=(1, 2))
        den += np.sum(np.log10(1.0 + s1 / sigma_nsq), axis=(1, 2))
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return _out(out, single)
