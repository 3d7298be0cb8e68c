"""Explained-by-audio maps and articulator label rasters from Annot-16 contours (method.md 1.9)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Label ids of the prepared ``labels`` raster (stored as JSON in its ``names`` attribute).
LABEL_IDS: dict[str, int] = {
    "epiglottis": 1,
    "tongue": 2,
    "lower_lip": 3,
    "chin": 4,
    "arytenoid": 5,
    "pharyngeal_wall": 6,
    "hard_palate": 7,
    "velum": 8,
    "upper_lip": 9,
}
#: The dynamic articulators that make up the default explained-by-audio map.
DEFAULT_EBA_ARTICULATORS = ("tongue", "upper_lip", "lower_lip", "velum")


def rasterize_polyline(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Draw an open polyline given in image pixels (x right, y down) as a 1-px boolean mask.

    Each segment is sampled at least once per pixel of its longer extent (as a DDA line
    drawing does), all segments at once. A non-finite vertex breaks the line: the segments on
    either side of it are not drawn, and the pieces are not joined across it.
    """
    mask = np.zeros(shape, dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.all(np.isfinite(pts), axis=1)
    if not finite.any():
        return mask
    if len(pts) == 1:
        pts, finite = np.vstack([pts, pts]), np.array([True, True])
    start, delta = pts[:-1], np.diff(pts, axis=0)  # (P-1, 2)
    whole = finite[:-1] & finite[1:]
    lone = finite & ~np.concatenate([[False], whole]) & ~np.concatenate([whole, [False]])
    # isolated finite vertices (between holes) are drawn as single points
    start = np.concatenate([start[whole], pts[lone]])
    delta = np.concatenate([delta[whole], np.zeros((int(lone.sum()), 2))])
    steps = np.ceil(np.abs(delta).max(axis=1)).astype(np.int64) + 1  # samples per segment
    seg = np.repeat(np.arange(len(steps)), steps)
    offset = np.arange(seg.size) - np.repeat(np.cumsum(steps) - steps, steps)
    t = offset / np.maximum(steps[seg] - 1, 1)
    xy = np.rint(start[seg] + t[:, None] * delta[seg]).astype(np.int64)
    cols, rows = xy[:, 0], xy[:, 1]
    keep = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    mask[rows[keep], cols[keep]] = True
    return mask


def contour_maps(
    articulators: Mapping[str, np.ndarray],
    shape: tuple[int, int],
    *,
    eba_articulators: Sequence[str] = DEFAULT_EBA_ARTICULATORS,
    dilate_px: int = 3,
    blur_sigma: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft explained-by-audio map and label raster of one frame.

    Args:
        articulators: name -> (P, 2) polyline in upright image pixels.
        shape: (H, W).
        eba_articulators: names that make up the map.
        dilate_px: dilation radius of the rasterized polylines.
        blur_sigma: Gaussian blur of the dilated union (pixels).

    Returns:
        eba (H, W) float32 in [0, 1] and labels (H, W) uint8 (ids of :data:`LABEL_IDS`, each
        articulator's polyline dilated by one pixel; later names win where they overlap).
    """
    from scipy.ndimage import binary_dilation, gaussian_filter

    union = np.zeros(shape, dtype=bool)
    labels = np.zeros(shape, dtype=np.uint8)
    disk = _disk(dilate_px)
    cross = _disk(1)
    for name, pts in articulators.items():
        if name not in LABEL_IDS:
            continue
        line_mask = rasterize_polyline(pts, shape)
        if not line_mask.any():
            continue
        labels[binary_dilation(line_mask, cross)] = LABEL_IDS[name]
        if name in eba_articulators:
            union |= binary_dilation(line_mask, disk) if dilate_px > 0 else line_mask
    eba = union.astype(np.float32)
    if blur_sigma > 0:
        eba = gaussian_filter(eba, blur_sigma, mode="constant")
    return np.clip(eba, 0.0, 1.0).astype(np.float32), labels


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx**2 + yy**2) <= radius**2
