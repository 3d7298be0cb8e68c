"""Who is in the scanner: the per-speaker anatomy and where it lies in the field of view.

Coordinates. Everything is built in *reference millimetres* of an upright midsagittal slice:
``x`` to the right = posterior (the face is on the LEFT), ``y`` downwards = inferior, origin at
the top-left corner of a 200 mm field of view. A per-subject :class:`Anatomy` changes shapes
(palate height, pharynx length and depth, tongue size, lip thickness, velum length) and maps
reference millimetres to image millimetres by ``p_img = 100 + shift + scale * (p_ref - 100)``.
Image pixel ``(row, col)`` of an ``N``-pixel grid has its centre at image millimetres
``((col + 0.5) * 200 / N, (row + 0.5) * 200 / N)``; :func:`to_pixels` gives reference points in
pixel units of the ``n`` grid with pixel centres at integers (``x = col``, ``y = row``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from sirem_cli.errors import InputError

FOV_MM = 200.0


@dataclass(frozen=True)
class Anatomy:
    """Per-subject geometry and voice (all lengths in millimetres of the reference head).

    Attributes:
        subject: subject id the anatomy was drawn for.
        seed: corpus seed it was drawn with.
        scale: overall head size factor (image mm per reference mm).
        shift_x, shift_y: head position in the field of view (image mm).
        pharynx_length: extra pharynx length (glottis lower), mm.
        pharynx_depth: extra distance of the posterior pharyngeal wall, mm.
        palate_height: extra height of the palatal vault, mm.
        tongue_radius: radius of the tongue body circle, mm.
        lip_thickness: lip size factor.
        velum_length: length of the soft palate, mm.
        jaw_gain: jaw rotation range factor.
        f0_hz: mean fundamental frequency of the voice, Hz.
        texture_seed: seed of the tissue texture.
    """

    subject: str
    seed: int
    scale: float
    shift_x: float
    shift_y: float
    pharynx_length: float
    pharynx_depth: float
    palate_height: float
    tongue_radius: float
    lip_thickness: float
    velum_length: float
    jaw_gain: float
    f0_hz: float
    texture_seed: int


#: Per-speaker geometry: name -> (low, high) of its uniform draw in reference mm or as a factor.
#: ``pharynx_length`` also grows with head size (see :func:`anatomy_for_subject`).
_GEOMETRY_RANGES: dict[str, tuple[float, float]] = {
    "shift_x": (-4.0, 4.0),
    "shift_y": (-4.0, 4.0),
    "pharynx_length": (-5.0, 5.0),
    "pharynx_depth": (-2.5, 2.5),
    "palate_height": (-2.5, 2.5),
    "tongue_radius": (20.5, 22.5),
    "lip_thickness": (0.88, 1.12),
    "velum_length": (29.0, 33.0),
    "jaw_gain": (0.85, 1.15),
}
_SCALE_RANGE = (0.93, 1.07)


def anatomy_for_subject(subject: str, seed: int = 0, spread: float = 1.0) -> Anatomy:
    """Draw the anatomy of ``subject``, deterministic from ``(subject, seed)``.

    Args:
        subject: any subject id, e.g. ``"sub061"``.
        seed: corpus seed.
        spread: how far the geometry (head size and position, tract and articulator sizes)
            departs from the middle of its range: 1 = the full per-speaker variation, 0 = every
            speaker has the same vocal tract at the same place. The voice (f0) and the tissue
            texture stay the speaker's own at any spread, and the draws do not depend on it.

    Returns:
        An :class:`Anatomy`; smaller heads get higher voices on average.
    """
    if not 0.0 <= spread <= 1.0:
        raise InputError(f"anatomy spread must be between 0 and 1, got {spread:g}")
    rng = np.random.default_rng([zlib.crc32(str(subject).encode()), int(seed) & 0xFFFFFFFF])

    def shrink(value: float, low: float, high: float) -> float:
        middle = 0.5 * (low + high)
        return float(middle + spread * (value - middle))

    scale = float(rng.uniform(*_SCALE_RANGE))
    size = (scale - _SCALE_RANGE[0]) / (_SCALE_RANGE[1] - _SCALE_RANGE[0])  # 0 small .. 1 large
    f0 = float(
        np.exp(rng.uniform(np.log(100.0), np.log(125.0)) + (1 - size) * 0.55 + rng.normal(0, 0.08))
    )
    # The draws keep their historical order (the corpus of a seed must not change).
    geometry = {name: float(rng.uniform(*_GEOMETRY_RANGES[name])) for name in _GEOMETRY_RANGES}
    geometry["pharynx_length"] += 6 * (size - 0.5)
    geometry = {name: shrink(value, *_GEOMETRY_RANGES[name]) for name, value in geometry.items()}
    return Anatomy(
        subject=str(subject),
        seed=int(seed),
        scale=shrink(scale, *_SCALE_RANGE),
        f0_hz=float(np.clip(f0, 85.0, 260.0)),
        texture_seed=int(rng.integers(2**31)),
        **geometry,
    )


def to_pixels(anat: Anatomy, x, y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference points ``(x, y)`` (mm, arrays that broadcast) in pixel units of the ``n`` grid.

    Returns:
        ``(col, row)`` float64, pixel centres at integers (not clipped to the grid).
    """
    pix = FOV_MM / n
    px = (100.0 + anat.shift_x + anat.scale * (x - 100.0)) / pix - 0.5
    py = (100.0 + anat.shift_y + anat.scale * (y - 100.0)) / pix - 0.5
    return px, py
