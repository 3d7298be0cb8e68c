"""The airway as the acoustics see it: area function, tract length and velopharyngeal port.

Read off the gridlines of :mod:`.vocaltract`, so the distances are exactly what the images
show. Areas follow Heinz and Stevens: ``A = alpha * d ** beta`` (d the midsagittal distance in
cm, alpha 1.6-2.2, beta 1.4-1.5 depending on the region).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sirem_cli.errors import InputError
from sirem_cli.synth.anatomy import Anatomy
from sirem_cli.synth.shapes import as_column, ray_hull
from sirem_cli.synth.vocaltract import X_INCISOR, check_params, geometry

_LIP_XS = np.arange(X_INCISOR - 1.0, 9.5, -1.0)  # lip gridlines (area function)


@dataclass(frozen=True)
class TractGeometry:
    """Acoustic description of the vocal tract for T frames.

    Attributes:
        areas: (T, S) cross-sectional areas, cm^2, glottis to lips (0 at closure).
        length_cm: (T,) airway length along the midline, glottis to lip opening, cm.
        port_cm2: (T,) velopharyngeal port area, cm^2 (0 when the velum seals).
        lip_x_mm: (T,) position of the lip opening (reference mm, smaller = more protruded).
    """

    areas: np.ndarray
    length_cm: np.ndarray
    port_cm2: np.ndarray
    lip_x_mm: np.ndarray


def _interp_rows(xq: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation: xq (T, Q), xp (T, K) non-decreasing, fp (T, K)."""
    t, k = xp.shape
    span = np.maximum(xp[:, -1] - xp[:, 0], 1e-9)[:, None] * 4 + 1.0
    off = np.cumsum(np.concatenate([[0.0], span[:-1, 0]]))[:, None]
    flat_xp = (xp - xp[:, :1] + off).ravel()
    xq2 = np.clip(xq, xp[:, :1], xp[:, -1:]) - xp[:, :1] + off
    j = np.searchsorted(flat_xp, xq2.ravel(), side="right").reshape(xq.shape) - 1
    row0 = (np.arange(t) * k)[:, None]
    j = np.clip(j, row0, row0 + k - 2)
    x0, x1 = flat_xp[j], flat_xp[j + 1]
    f0, f1 = fp.ravel()[j], fp.ravel()[j + 1]
    frac = np.where(x1 > x0, (xq2 - x0) / np.where(x1 > x0, x1 - x0, 1.0), 0.0)
    return f0 + frac * (f1 - f0)


def tract_geometry(anat: Anatomy, params: np.ndarray, n_sections: int = 32) -> TractGeometry:
    """Area function, tract length and velopharyngeal port from the image geometry.

    The midsagittal distance along each gridline is the air run between the upper boundary
    (palate, pharyngeal wall, the velum's oral surface, the upper lip) and the lower one (the
    tongue, the floor of the mouth, the lower lip), minus static structures in the airway
    (epiglottis, arytenoids) and the uvula where it hangs into the oropharynx; it becomes an
    area by ``alpha * d**beta``. Gridline areas are placed at their midline arc length and
    each section is the harmonic mean of 4 samples (constrictions dominate, as acoustically).

    Args:
        anat: the subject's anatomy.
        params: (P,) or (T, P) articulatory parameters.
        n_sections: number of equal-length sections, glottis to lips.

    Returns:
        A :class:`TractGeometry` (leading T axis dropped for (P,) input).
    """
    p, single = check_params(params)
    if int(n_sections) < 2:
        raise InputError(f"n_sections must be >= 2, got {n_sections}")
    g = geometry(anat)
    st = g.state(p)
    w_t, w_f = g.lower(st)
    lower = np.minimum(np.minimum(w_t, w_f), g.w_lar)
    # Upper boundary: static anchors, the velum's oral surface where the velum separates the
    # oral airway from the nasopharynx, otherwise subtract the part of the velum in the way.
    v_in, v_out = ray_hull(g.ax, g.ay, g.dx, g.dy, as_column(st["velum"]))
    v_in2, v_out2 = ray_hull(g.ax, g.ay, g.dx, g.dy, as_column(st["velum2"]))
    v_in, v_out = np.minimum(v_in, v_in2), np.maximum(v_out, v_out2)
    sep = np.isfinite(g.w_velum_raised)
    upper = np.where(sep, np.maximum(g.w_anchor, np.maximum(g.w_velum_raised, v_out)), g.w_anchor)
    uvula = np.where(sep, 0.0, np.clip(np.minimum(v_out, lower) - np.maximum(v_in, upper), 0, None))
    gap = np.clip(lower - upper - g.chord - uvula, 0.0, None)
    mid = 0.5 * (upper + lower)
    mx, my = g.ax + g.dx * mid, g.ay + g.dy * mid
    area = g.alpha * (gap / 10.0) ** g.beta

    # Lips: vertical gridlines from the incisors to the lip opening.
    ul, ll = st["ul"], st["ll"]
    x_end = np.maximum(
        np.minimum(ul[0] - ul[2], ul[3] - ul[5]), np.minimum(ll[0] - ll[2], ll[3] - ll[5])
    )
    xs = np.concatenate(
        [np.broadcast_to(_LIP_XS, (p.shape[0], _LIP_XS.size)), x_end[:, None]], axis=1
    )
    valid = xs >= x_end[:, None]
    xs = np.where(valid, xs, x_end[:, None])
    _, ub = ray_hull(xs, -50.0, 0.0, 1.0, as_column(ul))
    lt, _ = ray_hull(xs, -50.0, 0.0, 1.0, as_column(ll))
    ub, lt = -50.0 + ub, -50.0 + lt
    ub = np.where(np.isfinite(ub), ub, 104.0)
    lt = np.where(np.isfinite(lt), lt, ub + 20.0)
    lgap = np.clip(lt - ub, 0.0, None)
    larea = 2.2 * (lgap / 10.0) ** 1.5
    lx, ly = xs, 0.5 * (ub + lt)

    X = np.concatenate([mx, lx], axis=1)
    Y = np.concatenate([my, ly], axis=1)
    A = np.concatenate([area, larea], axis=1)
    seg = np.hypot(np.diff(X, axis=1), np.diff(Y, axis=1))
    s = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(seg, axis=1)], axis=1)
    length = s[:, -1]
    ns = int(n_sections)
    q = (np.arange(ns * 4) + 0.5) / (ns * 4)
    sq = q[None, :] * length[:, None]
    a_q = np.maximum(_interp_rows(sq, s, A), 1e-6)
    areas = 1.0 / np.mean(1.0 / a_q.reshape(-1, ns, 4), axis=2)
    areas = np.where(areas < 2e-6, 0.0, areas)
    # Velopharyngeal port: distance between the velum and the pharyngeal wall/roof.
    d_port = np.clip(g.port_distance(st["velum"], st["velum2"]), 0.0, None)
    port = 0.6 * (d_port / 10.0) ** 1.2
    res = TractGeometry(areas, length / 10.0, port, x_end)
    if single:
        res = TractGeometry(areas[0], length[0] / 10.0, port[0], x_end[0])
    return res


def area_function(anat: Anatomy, params: np.ndarray, n_sections: int = 32) -> np.ndarray:
    """Cross-sectional areas along the airway, glottis to lips, from the image geometry.

    See :func:`tract_geometry` (which also returns the tract length and the velopharyngeal
    port area that the acoustics need).

    Args:
        anat: the subject's anatomy.
        params: (P,) or (T, P) articulatory parameters.
        n_sections: number of equal-length sections.

    Returns:
        float64 (n_sections,) or (T, n_sections) areas in cm^2 (0 at a closure).
    """
    return tract_geometry(anat, params, n_sections).areas
