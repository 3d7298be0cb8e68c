"""Smooth complex receive sensitivities of an upper-airway coil array (synthetic)."""

from __future__ import annotations

import numpy as np


def airway_coil_maps(n: int = 84, n_coils: int = 8, *, seed: int = 0) -> np.ndarray:
    """Coil sensitivities of an array wrapped around the face and neck, in the upright view.

    Elements sit on an ellipse just outside the field of view, more of them on the face
    side (columns near 0) and under the jaw, as in the USC 8-channel upper-airway array.
    Each map falls off smoothly with distance from its element and carries a smooth phase
    (a constant plus a gentle linear ramp). The maps are normalized so that their root sum
    of squares is 1 at every pixel: each element sees its own region, but the combined
    array has no intensity shading, so the coil-combined image equals the object (and the
    /recon reference and the ground truth agree up to the reference's blur).

    Args:
        n: image size (n x n), upright orientation (row 0 superior, column 0 the face).
        n_coils: number of receive channels.
        seed: seed of the small element-to-element variations.

    Returns:
        (C, n, n) complex64 sensitivities.
    """
    rng = np.random.default_rng(seed + 7919)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    yy = (yy - n / 2) / (n / 2)  # -1 top .. 1 bottom
    xx = (xx - n / 2) / (n / 2)  # -1 face side .. 1 back of the head
    # Element angles on an ellipse around the head: concentrated on the face side (angle pi).
    angles = np.linspace(0.55 * np.pi, 1.55 * np.pi, n_coils) + rng.normal(0, 0.04, n_coils)
    maps = np.empty((n_coils, n, n), dtype=np.complex128)
    for c, ang in enumerate(angles):
        cx, cy = 1.25 * np.cos(ang), 1.15 * np.sin(ang)
        dist2 = (xx - cx) ** 2 + (yy - cy) ** 2
        width = 0.55 + 0.1 * rng.random()
        mag = 1.0 / (1.0 + dist2 / width**2) ** 1.5
        phase = rng.uniform(-np.pi, np.pi) + 0.6 * (rng.normal() * xx + rng.normal() * yy)
        maps[c] = mag * np.exp(1j * phase)
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    maps /= rss
    return maps.astype(np.complex64)
