"""A midsagittal vocal-tract phantom: images, labels, contours and the area function.

Coordinates. Everything is built in *reference millimetres* of an upright midsagittal slice:
``x`` to the right = posterior (the face is on the LEFT), ``y`` downwards = inferior, origin at
the top-left corner of a 200 mm field of view. A per-subject :class:`Anatomy` changes shapes
(palate height, pharynx length and depth, tongue size, lip thickness, velum length) and maps
reference millimetres to image millimetres by ``p_img = 100 + shift + scale * (p_ref - 100)``.
Image pixel ``(row, col)`` of an ``N``-pixel grid has its centre at image millimetres
``((col + 0.5) * 200 / N, (row + 0.5) * 200 / N)``; contours are returned in pixel units of the
``n`` grid with pixel centres at integers (``x = col``, ``y = row``).

Geometry (one model serves the images, the labels, the contours and the area function):

- static anatomy: head and neck outline, hard palate, posterior pharyngeal wall, nasal cavity,
  nasopharynx, larynx with epiglottis and arytenoids, cervical spine and cord, brain;
- the *tongue* is the union of two tapered capsules (convex hulls of two circles): body-to-tip
  and body-to-root. The body circle moves with ``tongue_body_x/y`` and the jaw, the tip circle
  with ``tongue_tip``; a jaw-borne capsule forms the floor of the anterior mouth;
- the airway is measured on a *semi-polar grid* of gridlines (after Maeda): horizontal lines in
  the pharynx, lines radiating from a centre inside the tongue through the velar bend, vertical
  lines under the palate, vertical lines between the lips. The tongue surface is the first
  tongue crossing along each gridline; the image of the tongue is everything beyond it, so the
  midsagittal distance used by the area function is exactly what the image shows;
- *lips* (upper and lower) and *chin* are tapered capsules; the lower lip and chin ride on the
  jaw, which rotates about the condyle; lip aperture sets the vertical distance of the lip
  tips, protrusion moves them forward;
- the *velum* is two tapered capsules hinged at the posterior nasal spine and bent at a knee;
  ``velum`` moves it from raised (knee up and back against the pharyngeal wall, port closed)
  to lowered (hanging nearly straight towards the tongue, port open).

Areas follow Heinz and Stevens: ``A = alpha * d ** beta`` (d the midsagittal distance in cm,
alpha 1.6-2.2, beta 1.4-1.5 depending on the region).
"""

from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass

import numpy as np

from sirem_cli.errors import InputError, ShapeError, SiremError
from sirem_cli.synth.articulation import N_PARAMS

FOV_MM = 200.0

#: Label ids of :func:`label_raster` (0 is air and background).
ARTICULATORS: dict[int, str] = {
    1: "tongue",
    2: "upper_lip",
    3: "lower_lip",
    4: "velum",
    5: "jaw",
    6: "hard_palate",
    7: "pharyngeal_wall",
    8: "epiglottis",
    9: "other",
}
#: Articulators that move with the articulatory parameters (the jaw and chin move too).
MOVING_ARTICULATORS: tuple[str, ...] = ("tongue", "upper_lip", "lower_lip", "velum")
#: The 9 contour names of the Annot-16 hand ground truth, all returned by :func:`contours`.
CONTOUR_NAMES: tuple[str, ...] = (
    "epiglottis",
    "tongue",
    "lower_lip",
    "chin",
    "arytenoid",
    "pharyngeal_wall",
    "hard_palate",
    "velum",
    "upper_lip",
)
_LABEL = {v: k for k, v in ARTICULATORS.items()}


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


# --------------------------------------------------------------------------------------------
# Geometry primitives (vectorized; arrays broadcast)
# --------------------------------------------------------------------------------------------

Hull = tuple  # (c1x, c1y, r1, c2x, c2y, r2): convex hull of two circles (tapered capsule)


def _hull_tangents(hull: Hull) -> list[tuple]:
    """The two outer tangent segments ``(px, py, qx, qy)`` of a tapered capsule."""
    c1x, c1y, r1, c2x, c2y, r2 = hull
    dx, dy = c2x - c1x, c2y - c1y
    d = np.maximum(np.hypot(dx, dy), 1e-9)
    ex, ey = dx / d, dy / d
    s = np.clip((r1 - r2) / d, -0.999, 0.999)
    c = np.sqrt(1 - s * s)
    out = []
    for sign in (1.0, -1.0):
        nx = s * ex - sign * c * ey
        ny = s * ey + sign * c * ex
        out.append((c1x + r1 * nx, c1y + r1 * ny, c2x + r2 * nx, c2y + r2 * ny))
    return out


def _ray_circle(ax, ay, dx, dy, cx, cy, r):
    """Entry and exit parameters of the line ``a + t d`` (unit d) through a circle."""
    ox, oy = ax - cx, ay - cy
    b = ox * dx + oy * dy
    disc = b * b - (ox * ox + oy * oy - r * r)
    hit = disc >= 0
    sq = np.sqrt(np.where(hit, disc, 0.0))
    return np.where(hit, -b - sq, np.inf), np.where(hit, -b + sq, -np.inf)


def _ray_segment(ax, ay, dx, dy, px, py, qx, qy):
    """Parameter where the line ``a + t d`` crosses segment p-q (+inf / -inf when it misses)."""
    ex, ey = qx - px, qy - py
    den = dx * ey - dy * ex
    wx, wy = px - ax, py - ay
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    t = (wx * ey - wy * ex) / den
    s = (wx * dy - wy * dx) / den
    hit = ok & (s >= 0) & (s <= 1)
    return np.where(hit, t, np.inf), np.where(hit, t, -np.inf)


def _ray_hull(ax, ay, dx, dy, hull: Hull):
    """Entry and exit parameters of the line ``a + t d`` through a tapered capsule (convex)."""
    return _ray_at(ax, ay, dx, dy, hull, _hull_tangents(hull))


def _ray_at(ax, ay, dx, dy, hull: Hull, tangents) -> tuple:
    """:func:`_ray_hull` with the capsule's :func:`_hull_tangents` already known."""
    c1x, c1y, r1, c2x, c2y, r2 = hull
    t_in, t_out = _ray_circle(ax, ay, dx, dy, c1x, c1y, r1)
    a0, a1 = _ray_circle(ax, ay, dx, dy, c2x, c2y, r2)
    t_in, t_out = np.minimum(t_in, a0), np.maximum(t_out, a1)
    for px, py, qx, qy in tangents:
        s0, s1 = _ray_segment(ax, ay, dx, dy, px, py, qx, qy)
        t_in, t_out = np.minimum(t_in, s0), np.maximum(t_out, s1)
    return t_in, t_out


def _hull_sdf(x, y, hull: Hull):
    """Signed distance (mm, negative inside) to a tapered capsule (Quilez's uneven capsule)."""
    return _sdf_at(x, y, _sdf_consts(hull))


def _sdf_consts(hull: Hull) -> tuple:
    """The constants of a tapered capsule that :func:`_sdf_at` needs."""
    c1x, c1y, r1, c2x, c2y, r2 = hull
    dx, dy = c2x - c1x, c2y - c1y
    h = np.maximum(np.hypot(dx, dy), 1e-9)
    b = np.clip((r1 - r2) / h, -0.999, 0.999)
    a = np.sqrt(1 - b * b)
    return c1x, c1y, r1, r2, h, dx / h, dy / h, b, a, a * h


def _sdf_at(x, y, consts: tuple) -> np.ndarray:
    """:func:`_hull_sdf` from the capsule constants of :func:`_sdf_consts`."""
    c1x, c1y, r1, r2, h, ex, ey, b, a, ah = consts
    qx, qy = x - c1x, y - c1y
    along = qx * ex + qy * ey
    across = np.abs(qy * ex - qx * ey)
    k = a * along - b * across
    d1 = np.hypot(across, along) - r1
    d2 = np.hypot(across, along - h) - r2
    d3 = a * across + b * along - r1
    return np.where(k < 0, d1, np.where(k > ah, d2, d3))


def _hull_pieces(hull: Hull, step: float = 0.6) -> list[np.ndarray]:
    """Outline pieces of a tapered capsule: tangent "+" (c1 to c2), the c2 cap, tangent "-"
    (c2 to c1), the c1 cap; together a closed loop."""
    c1x, c1y, r1, c2x, c2y, r2 = (float(v) for v in hull)
    (p1x, p1y, q1x, q1y), (p2x, p2y, q2x, q2y) = _hull_tangents((c1x, c1y, r1, c2x, c2y, r2))

    def seg(ax, ay, bx, by):
        k = max(2, int(np.hypot(bx - ax, by - ay) / step))
        t = np.linspace(0, 1, k, endpoint=False)
        return np.stack([ax + t * (bx - ax), ay + t * (by - ay)], 1)

    def arc(cx, cy, r, a0, a1):  # the outer side: from the "+" to the "-" tangent point
        da = (a0 - a1) % (2 * np.pi)
        k = max(2, int(r * da / step))
        a = a0 - da * np.linspace(0, 1, k, endpoint=False)
        return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)

    return [
        seg(p1x, p1y, q1x, q1y),
        arc(c2x, c2y, r2, np.arctan2(q1y - c2y, q1x - c2x), np.arctan2(q2y - c2y, q2x - c2x)),
        seg(q2x, q2y, p2x, p2y),
        arc(c1x, c1y, r1, np.arctan2(p2y - c1y, p2x - c1x), np.arctan2(p1y - c1y, p1x - c1x)),
    ]


def _hull_outline(hull: Hull, step: float = 0.6) -> np.ndarray:
    """Closed outline (K, 2) of a tapered capsule (see :func:`_hull_pieces`)."""
    return np.concatenate(_hull_pieces(hull, step))


def _seg_dist(x, y, pts: np.ndarray) -> np.ndarray:
    """Distance from points to a polyline (K, 2); x and y broadcast (a grid is fastest as a
    row of x and a column of y)."""
    best = np.full(np.broadcast_shapes(np.shape(x), np.shape(y)), np.inf)
    for (ax, ay), (bx, by) in itertools.pairwise(pts):
        ex, ey = bx - ax, by - ay
        ll = ex * ex + ey * ey
        dx, dy = x - ax, y - ay
        t = np.clip((dx * ex + dy * ey) / max(ll, 1e-12), 0, 1)
        px, py = t * ex, t * ey
        np.subtract(dx, px, out=px)
        np.subtract(dy, py, out=py)
        np.minimum(best, np.hypot(px, py, out=px), out=best)
    return best


def _polygon_sdf(x, y, poly: np.ndarray) -> np.ndarray:
    """Signed distance to a closed polygon (K, 2), negative inside (even-odd rule); x and y
    broadcast as in :func:`_seg_dist`."""
    closed = np.concatenate([poly, poly[:1]])
    inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)), bool)
    for (ax, ay), (bx, by) in itertools.pairwise(closed):
        cond = (ay > y) != (by > y)
        xc = ax + (y - ay) * (bx - ax) / np.where(by == ay, 1e-12, by - ay)
        inside ^= cond & (x < xc)
    d = _seg_dist(x, y, closed)
    return np.where(inside, -d, d)


def _ellipse(cx, cy, rx, ry, k: int = 48, rot: float = 0.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ex, ey = rx * np.cos(a), ry * np.sin(a)
    c, s = np.cos(rot), np.sin(rot)
    return np.stack([cx + c * ex - s * ey, cy + s * ex + c * ey], 1)


def _ramp(sdf, width):
    """Anti-aliased occupancy from a signed distance (negative inside), edge ``width`` wide."""
    return np.clip(0.5 - sdf / width, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Static geometry of one anatomy
# --------------------------------------------------------------------------------------------

_C = (88.0, 122.0)  # centre of the polar gridlines (always inside the tongue body)
_X_INC = 44.0  # upper incisor edge: boundary between the oral gridlines and the lips
_K = (112.0, 82.0)  # jaw rotation centre (condyle)
_DY_P, _N_B, _DX_F = 1.5, 24, 1.5  # gridline spacing: pharynx (mm), bend (count), oral (mm)
_LIP_XS = np.arange(_X_INC - 1.0, 9.5, -1.0)  # lip gridlines (area function)


class _Geom:
    """Static geometry of one anatomy in reference millimetres."""

    def __init__(self, anat: Anatomy) -> None:
        self.anat = anat
        cx, cy = _C
        self.xw0 = 120.0 + anat.pharynx_depth
        self.yg = 176.0 + anat.pharynx_length
        ph = anat.palate_height
        self.pns = (96.0, 97.0 - 0.6 * ph)
        self.palate = np.array(
            [
                (_X_INC, 108.0),
                (45.5, 104.0),
                (48.0, 99.5),
                (53.0, 95.0 - 0.5 * ph),
                (62.0, 92.5 - ph),
                (74.0, 92.0 - ph),
                (86.0, 94.5 - ph),
                self.pns,
            ]
        )  # oral surface, front to back
        self.nasophar = np.array(
            [
                self.pns,
                (self.pns[0] - 3.0, 86.0),
                (110.0, 83.0),
                (self.xw0 - 3.0, 85.5),
                (self.xw0 - 0.5, 91.0),
                (self.xw(100.0), 100.0),
                (self.xw(cy), cy),
            ]
        )  # PNS, roof of the nasopharynx, down the posterior wall to the bend
        self.outer = np.concatenate([self.palate[::-1], self.nasophar[1:]])

        # Gridlines.
        self.n_p = int(np.ceil((self.yg - cy) / _DY_P))
        self.dy_p = (self.yg - cy) / self.n_p
        self.dth = (np.pi / 2) / _N_B
        self.n_f = int(np.ceil((cx - _X_INC) / _DX_F))
        self.dx_f = (cx - _X_INC) / self.n_f
        yp = self.yg - self.dy_p * np.arange(self.n_p)
        th = -self.dth * np.arange(_N_B)
        xf = cx - self.dx_f * np.arange(self.n_f + 1)
        self.kind = np.concatenate(
            [np.zeros(self.n_p, int), np.ones(_N_B, int), np.full(self.n_f + 1, 2)]
        )
        self.ax = np.concatenate([np.full(self.n_p, cx), np.full(_N_B, cx), xf])
        self.ay = np.concatenate([yp, np.full(_N_B, cy), np.full(self.n_f + 1, cy)])
        self.dx = np.concatenate([np.full(self.n_p, -1.0), -np.cos(th), np.zeros(self.n_f + 1)])
        self.dy = np.concatenate([np.zeros(self.n_p), -np.sin(th), np.ones(self.n_f + 1)])
        self.U = self.kind.size
        self.w_anchor = np.concatenate([cx - self.xw(yp), -self._r_out(th), self.y_roof(xf) - cy])
        self.alpha = np.array([1.8, 1.7, 1.6])[self.kind]
        self.beta = np.array([1.4, 1.45, 1.5])[self.kind]
        # Larynx: anterior wall of the laryngeal vestibule (static), below the tongue root.
        self.y_lar0 = 148.0 + 0.3 * anat.pharynx_length
        self.lar = np.array(
            [(self.xw(self.y_lar0) - 15.0, self.y_lar0), (self.xw(self.yg) - 7.0, self.yg)]
        )
        self.w_lar = np.where(self.kind == 0, np.minimum(0.0, cx - self.x_lar(self.ay)), np.inf)
        # Static structures inside the airway.
        ex = self.xw(150.0)
        self.epiglottis = (
            ex - 12.0,
            150.0 + 0.3 * anat.pharynx_length,
            2.4,
            ex - 8.5,
            134.0 + 0.3 * anat.pharynx_length,
            1.5,
        )
        self.arytenoid = (
            self.xw(self.yg) - 2.0,
            self.yg - 7.0,
            3.4,
            self.xw(self.yg) - 3.5,
            self.yg - 3.0,
            2.6,
        )
        self.chord = np.zeros(self.U)
        for hull in (self.epiglottis, self.arytenoid):
            t0, t1 = _ray_hull(self.ax, self.ay, self.dx, self.dy, hull)
            self.chord += np.where(self.kind == 0, np.clip(t1 - t0, 0, None), 0.0)
        # Tongue and velum rest geometry.
        self.body0 = np.array([84.0, 124.5])
        self.tip0 = np.array([52.0, 114.5])
        self.root0 = np.array([self.xw(147.0) - 21.0, 147.0])
        self.velum_c1 = (self.pns[0] + 1.0, self.pns[1] - 1.5)
        self.port_pts = self._port_points()
        shape = np.linspace(0.0, 1.2, 481)
        dist = self._port_distance(*self._velum_at(shape))
        if dist[0] > 0 or dist[-1] <= 0:
            raise SiremError(f"anatomy {anat.subject}: the velum cannot seal the port")
        self.velum_contact = float(shape[np.nonzero(dist >= 0.0)[0][0]])
        over = np.nonzero((dist >= -2.0) & (shape <= self.velum_contact))[0][0]
        self.velum_slack = self.velum_contact - float(shape[over])
        raised = self._velum_hulls(np.array([-1.0]))
        t_out = np.maximum(*(_ray_hull(self.ax, self.ay, self.dx, self.dy, h)[1] for h in raised))
        self.w_velum_raised = np.where(np.isfinite(t_out[0]), t_out[0], -np.inf)
        self._extremes()

    def _port_points(self) -> np.ndarray:
        """Points of the posterior pharyngeal wall facing the velum (the port's back wall)."""
        y = np.linspace(self.nasophar[4][1], 118.0, 40)
        x = np.interp(y, self.nasophar[4:, 1], self.nasophar[4:, 0])
        return np.stack([x, y], 1)

    def _port_distance(self, *hulls: Hull) -> np.ndarray:
        """Smallest signed distance (mm) between the velum capsules and the port walls."""
        px, py = self.port_pts[None, :, 0], self.port_pts[None, :, 1]
        d = [
            _hull_sdf(px, py, tuple(np.asarray(v, float).reshape(-1, 1) for v in h)) for h in hulls
        ]
        return np.minimum.reduce(d).min(axis=1)

    # -- static curves ---------------------------------------------------------------------
    def xw(self, y):
        """Posterior pharyngeal wall x at height y."""
        return self.xw0 - 0.03 * (np.asarray(y, float) - _C[1])

    def y_roof(self, x):
        """Oral surface of the palate / incisors at x (valid for x in [x_inc, PNS])."""
        return np.interp(x, self.palate[:, 0], self.palate[:, 1])

    def x_lar(self, y):
        """x of the anterior wall of the larynx at height y (-inf above ``y_lar0``)."""
        (x0, y0), (x1, y1) = self.lar
        x = x0 + (np.asarray(y, float) - y0) * (x1 - x0) / (y1 - y0)
        return np.where(np.asarray(y) >= y0, x, -np.inf)

    def _r_out(self, th):
        """Distance from the polar centre to the outer wall along angle ``th`` (image angle)."""
        th = np.asarray(th, float)
        dx, dy = np.cos(th), np.sin(th)
        best = np.full(th.shape, np.inf)
        for (px, py), (qx, qy) in zip(self.outer[:-1], self.outer[1:], strict=True):
            t, _ = _ray_segment(_C[0], _C[1], dx, dy, px, py, qx, qy)
            best = np.minimum(best, np.where(t > 0, t, np.inf))
        return best

    # -- articulated shapes ----------------------------------------------------------------
    def _velum_at(self, shape):
        """The two velum capsules (attachment-knee, knee-tip) for shape 0 raised .. 1 lowered."""
        shape = np.asarray(shape, float)
        c1x, c1y = self.velum_c1
        # the knee reaches 2.5 mm into the pharyngeal wall when the velum is fully raised
        la = float(self.xw(c1y)) - c1x - 4.4 + 2.5
        lb = float(np.clip(self.anat.velum_length - la, 10.0, 16.0))
        phi_a = np.deg2rad(-2.0 + 74.0 * shape)
        phi_b = phi_a + np.deg2rad(80.0 - 76.0 * shape)
        kx = c1x + la * np.cos(phi_a)
        ky = c1y + la * np.sin(phi_a)
        tx = kx + lb * np.cos(phi_b)
        ty = ky + lb * np.sin(phi_b)
        one = np.ones_like(shape)
        return (
            (c1x * one, c1y * one, 4.6 * one, kx, ky, 4.4 * one),
            (kx, ky, 4.4 * one, tx, ty, 3.0 * one),
        )

    def _velum_hulls(self, vel):
        """Velum capsules for the ``velum`` parameter: the port just closes at -0.5 and seals
        (up to 2 mm overlap) below; it opens steadily above."""
        shape = self.velum_contact + 0.45 * (np.asarray(vel, float) + 0.5)
        shape = np.clip(shape, max(0.0, self.velum_contact - self.velum_slack), 1.2)
        return self._velum_at(shape)

    def state(self, params: np.ndarray) -> dict:
        """Shapes of the moving articulators for params (T, P): hulls of (T,) arrays."""
        a = self.anat
        jaw, bx, by, tt, la, lp, vel = (params[:, i] for i in range(N_PARAMS))
        phi = -a.jaw_gain * np.deg2rad(4.5) * jaw
        cph, sph = np.cos(phi), np.sin(phi)

        def jaw_pt(x, y):
            ddx, ddy = x - _K[0], y - _K[1]
            return _K[0] + cph * ddx - sph * ddy, _K[1] + sph * ddx + cph * ddy

        lt = a.lip_thickness
        jbx, jby = jaw_pt(*self.body0)
        body_x = self.body0[0] - 9.0 * bx + 0.6 * (jbx - self.body0[0])
        body_y = self.body0[1] - 6.5 * by + 0.6 * (jby - self.body0[1])
        jtx, jty = jaw_pt(*self.tip0)
        tip_x = (
            self.tip0[0]
            + 0.15 * (body_x - self.body0[0])
            - 1.5 * np.maximum(tt, 0)
            + 0.25 * (jtx - self.tip0[0])
        )
        tip_y = (
            self.tip0[1]
            - 10.0 * (tt + 0.3)
            + 0.1 * (body_y - self.body0[1])
            + 0.25 * (jty - self.tip0[1])
        )
        root_x = self.root0[0] + 0.35 * (body_x - self.body0[0])
        root_y = self.root0[1] + 0.08 * (body_y - self.body0[1])
        R = a.tongue_radius
        f1 = jaw_pt(44.5, 121.0)
        f2 = jaw_pt(63.0, 129.0)
        prot = np.where(lp > 0, -6.0 * lp, -2.0 * lp)
        ul2x = 29.5 + prot
        ul2y = 103.5 - 1.2 * np.maximum(la, 0)
        r_ul, r_ll = 4.8 * lt, 5.6 * lt
        ll1 = jaw_pt(41.0, 123.5)
        jl = jaw_pt(31.0, 116.0)
        ll2x = 31.0 + 0.9 * prot + 0.3 * (jl[0] - 31.0)
        ll2y = ul2y + r_ul + r_ll + 2.5 + 8.0 * la
        ch1 = jaw_pt(37.5, 139.0)
        ch2 = jaw_pt(80.0, 148.5)
        one = np.ones_like(jaw)
        vel_a, vel_b = self._velum_hulls(vel)
        return {
            "tip": (body_x, body_y, R * one, tip_x, tip_y, 3.8 * one),
            "root": (body_x, body_y, R * one, root_x, root_y, 4.0 * one),
            "floor": (f1[0], f1[1], 6.0 * one, f2[0], f2[1], 5.5 * one),
            "ul": (37.0 * one, 94.0 * one, 7.5 * lt * one, ul2x, ul2y, r_ul * one),
            "ll": (ll1[0], ll1[1], 8.5 * lt * one, ll2x, ll2y, r_ll * one),
            "chin": (ch1[0], ch1[1], 10.0 * one, ch2[0], ch2[1], 7.5 * one),
            "velum": vel_a,
            "velum2": vel_b,
        }

    def lower(self, st: dict) -> tuple[np.ndarray, np.ndarray]:
        """Tongue and floor crossings (T, U) along every gridline (depth coordinate w)."""

        def col(h):
            return tuple(np.asarray(v, float).reshape(-1, 1) for v in h)

        t_tip, _ = _ray_hull(self.ax, self.ay, self.dx, self.dy, col(st["tip"]))
        t_root, _ = _ray_hull(self.ax, self.ay, self.dx, self.dy, col(st["root"]))
        t_floor, _ = _ray_hull(self.ax, self.ay, self.dx, self.dy, col(st["floor"]))
        w_t = np.minimum(t_tip, t_root)
        w_f = np.where(self.kind == 2, t_floor, np.inf)
        return w_t, w_f

    def _extremes(self) -> None:
        """Shallowest and deepest tongue/floor surface over the parameter range."""
        v = np.array([-1.5, -0.75, 0.0, 0.75, 1.5])
        g = np.stack(np.meshgrid(v, v, v, v, indexing="ij"), -1).reshape(-1, 4)
        p = np.zeros((g.shape[0], N_PARAMS))
        p[:, :4] = g
        w_t, w_f = self.lower(self.state(p))
        w = np.minimum(w_t, w_f)
        big = 1e4
        hit = np.isfinite(w)
        self.w_shallow = np.where(hit.any(0), np.where(hit, w, big).min(0) - 2.0, big)
        deep = np.where(hit.any(0), np.where(hit, w, -big).max(0) + 2.0, big)
        deep = np.minimum(deep, self.w_lar)
        self.w_deep = np.where(np.isfinite(deep), deep, big)

    # -- mapping of points to tract coordinates --------------------------------------------
    def _tract_uw(self, x, y) -> tuple:
        """(reg_p, reg_b, reg_f, th, u, w) of reference points on the gridline system."""
        cx, cy = _C
        reg_p = (x >= cx) & (y >= cy) & (y <= self.yg)
        reg_b = (x >= cx) & (y < cy)
        reg_f = (x < cx) & (x >= _X_INC)
        th = np.arctan2(np.minimum(y - cy, 0.0), np.maximum(x - cx, 0.0))
        r = np.hypot(x - cx, y - cy)
        u = np.select(
            [reg_p, reg_b, reg_f],
            [
                (self.yg - y) / self.dy_p,
                self.n_p + (-th) / self.dth,
                self.n_p + _N_B + (cx - x) / self.dx_f,
            ],
            np.nan,
        )
        w = np.select([reg_p, reg_b, reg_f], [cx - x, -r, y - cy], np.nan)
        return reg_p, reg_b, reg_f, th, u, w

    def tract_coords(self, x, y):
        """(inside, u, w, w_anchor) of reference points on the gridline system."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        cx, cy = _C
        reg_p, reg_b, reg_f, th, u, w = self._tract_uw(x, y)
        wa = np.full(x.shape, np.nan)
        wa[reg_p] = cx - self.xw(y[reg_p])
        wa[reg_b] = -self._r_out(th[reg_b])
        wa[reg_f] = self.y_roof(x[reg_f]) - cy
        inside = reg_p | reg_b | reg_f
        return inside, u, w, wa

    def interp_u(self, prof: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Linear interpolation of a gridline profile (..., U) at fractional u (K,)."""
        u = np.clip(u, 0, self.U - 1 - 1e-9)
        i0 = np.floor(u).astype(int)
        f = u - i0
        return prof[..., i0] * (1 - f) + prof[..., i0 + 1] * f


@functools.lru_cache(maxsize=32)
def _geom(anat: Anatomy) -> _Geom:
    return _Geom(anat)


# --------------------------------------------------------------------------------------------
# Pixel grids: static image, texture, dynamic domains
# --------------------------------------------------------------------------------------------


def _head_polygon() -> np.ndarray:
    return np.array(
        [
            (36, -12),
            (34, 10),
            (31, 30),
            (36, 42),
            (30, 52),
            (22, 63),
            (15, 72),
            (14.5, 76.5),
            (19, 81),
            (26, 84.5),
            (31, 87),
            (35, 91.5),
            (39.5, 93),
            (39.5, 105),
            (41.5, 108.5),
            (_X_INC, 108.5),
            (_X_INC, 136),
            (60, 141),
            (86, 147),
            (89, 151),
            (89.5, 175),
            (91, 212),
            (212, 212),
            (205, 160),
            (191, 125),
            (197, 90),
            (199, 40),
            (196, -12),
        ],
        float,
    )


class _Grid:
    """Everything precomputed for rendering one anatomy on an N x N grid."""

    def __init__(self, g: _Geom, n_pix: int) -> None:
        a = g.anat
        self.n = n_pix
        pix = FOV_MM / n_pix
        c = (np.arange(n_pix) + 0.5) * pix
        yy, xx = np.meshgrid(c, c, indexing="ij")
        X = (xx - 100.0 - a.shift_x) / a.scale + 100.0
        Y = (yy - 100.0 - a.shift_y) / a.scale + 100.0
        self.row_y = Y[:, 0].copy()
        self.col_x = X[0, :].copy()
        Xr, Yc = X[:1, :], Y[:, :1]  # X varies along rows only, Y down columns only
        self.w = pix / a.scale  # edge width (reference mm per pixel)
        w = self.w
        rng = np.random.default_rng(a.texture_seed)
        from scipy.ndimage import gaussian_filter

        def noise(sigma_mm):
            f = gaussian_filter(rng.standard_normal((n_pix, n_pix)), sigma_mm / pix, mode="wrap")
            return f / (f.std() + 1e-12)

        coarse, fine = noise(5.0), noise(1.2)

        # --- tissue intensity everywhere (what tissue would look like at each pixel) ---
        def blend(base, sdf, val, width):
            m = np.clip(0.5 - sdf / width, 0.0, 1.0)
            return base + m * (val - base)

        tex = 0.72 + 0.05 * coarse + 0.025 * fine
        poly = _head_polygon()
        head = _polygon_sdf(Xr, Yc, poly)
        # muscle of the tongue, lips and chin (also where they move outside the static head)
        tex = blend(tex, np.hypot(X - 80, Y - 122) - 34, 0.8 + 0.04 * coarse + 0.02 * fine, 8.0)
        tex = blend(tex, head, 0.8 + 0.04 * coarse + 0.02 * fine, 6.0)
        # subcutaneous fat along the skin (the outline minus its cut behind the lips and jaw)
        skin = np.minimum(_seg_dist(Xr, Yc, poly[:11]), _seg_dist(Xr, Yc, poly[19:]))
        tex = blend(tex, np.where(head < 0, skin - 4.0, np.inf), 0.93 + 0.03 * fine, 1.5)
        # brain and skull
        brain = _polygon_sdf(Xr, Yc, _ellipse(128, 2, 78, 46))
        tex = blend(tex, brain, 0.55 + 0.04 * coarse, w)
        tex = blend(tex, np.abs(brain - 2.5) - 2.5, 0.12, w)
        # spine: vertebral bodies, discs, canal, cord, a fat stripe behind
        spine = np.full(X.shape, np.inf)
        for k in range(7):
            yc = 96.0 + 16.5 * k
            body = np.array([(134, yc - 6), (156, yc - 6.5), (157, yc + 6), (135, yc + 6.5)])
            spine = np.minimum(spine, _polygon_sdf(Xr, Yc, body) - 1.0)
        column = np.maximum(np.maximum(133 - X, X - 158), 88 - Y)
        tex = blend(tex, column, 0.45 + 0.03 * fine, w)
        tex = blend(tex, spine, 0.66 + 0.06 * coarse, w)
        tex = blend(tex, np.abs(spine) - 0.8, 0.3, w)
        tex = blend(tex, np.maximum(np.maximum(160 - X, X - 173), 80 - Y), 0.78, w)
        tex = blend(tex, np.maximum(np.maximum(163 - X, X - 170), 78 - Y), 0.5 + 0.02 * fine, w)
        tex = blend(tex, np.maximum(np.abs(X - 182) - 2.0, 110 - Y), 0.95, w)
        # hard palate band (bright marrow over a dark cortical line)
        pal = _seg_dist(Xr, Yc, g.palate)
        above = Y < g.y_roof(np.clip(X, _X_INC, g.pns[0]))
        band = (pal < 7.0) & above & (X >= _X_INC - 2) & (X <= g.pns[0] + 2)
        tex = np.where(band, blend(0.9, pal - 1.5, 0.55, w), tex)
        self.tex = np.clip(tex, 0.0, 1.0).astype(np.float32)

        # --- static occupancy ---
        occ = _ramp(head, w)
        inside, u, wd, wa = g.tract_coords(X, Y)
        uu = np.where(inside, u, 0.0)
        w_deep = g.interp_u(g.w_deep, uu.ravel()).reshape(X.shape)
        carve = np.where(
            inside,
            np.clip((wd - wa) / w + 0.5, 0, 1) * np.clip((w_deep - wd) / w + 0.5, 0, 1),
            0.0,
        )
        carve = np.nan_to_num(carve)
        occ = occ * (1 - carve)
        # nasal cavity: air with turbinates
        nasal = _polygon_sdf(
            Xr,
            Yc,
            np.array(
                [
                    (26, 66),
                    (40, 57),
                    (70, 60),
                    (92, 70),
                    (g.pns[0] - 2, 84),
                    (g.pns[0] - 4, g.pns[1] - 6),
                    (55, 91 - a.palate_height),
                    (30, 80),
                ]
            ),
        )
        conchae = np.minimum.reduce(
            [
                _polygon_sdf(Xr, Yc, _ellipse(62, 68, 22, 3.2, rot=0.12)),
                _polygon_sdf(Xr, Yc, _ellipse(66, 77, 26, 3.5, rot=0.05)),
                _polygon_sdf(Xr, Yc, _ellipse(70, 85 - 0.6 * a.palate_height, 20, 2.2)),
                np.abs(Y - 75) + np.maximum(0, np.abs(X - 55) - 25) - 0.8,  # septum edge
            ]
        )
        nasal_air = _ramp(nasal, w) * (1 - _ramp(conchae, w))
        occ = occ * (1 - nasal_air)
        # trachea below the glottis
        tr = np.array(
            [
                (g.xw(g.yg) - 14.5, g.yg + 3.5),
                (g.xw(g.yg) - 4.0, g.yg + 3.5),
                (g.xw(212) - 4.0, 212),
                (g.xw(212) - 16.0, 212),
            ]
        )
        occ = occ * (1 - _ramp(_polygon_sdf(Xr, Yc, tr), w))
        # static structures inside the airway
        epi = _ramp(_hull_sdf(X, Y, g.epiglottis), w)
        ary = _ramp(_hull_sdf(X, Y, g.arytenoid), w)
        occ = np.maximum(occ, np.maximum(epi, ary))
        tex = np.where(epi > 0, 0.82, self.tex)
        self.tex = tex.astype(np.float32)
        self.static = (occ * self.tex).astype(np.float32)
        self.static_occ = occ.astype(np.float32)

        # --- static labels ---
        lab = np.where(occ >= 0.5, _LABEL["other"], 0).astype(np.uint8)
        wall_zone = (X > g.xw(Y) - 0.5) & (X < g.xw(Y) + 9) & (Y > 84) & (Y < g.yg + 2)
        roof_zone = (_seg_dist(Xr, Yc, g.nasophar[1:5]) < 8) & (X > g.pns[0])
        lab[(occ >= 0.5) & (wall_zone | roof_zone)] = _LABEL["pharyngeal_wall"]
        lab[(occ >= 0.5) & band] = _LABEL["hard_palate"]
        lab[epi >= 0.5] = _LABEL["epiglottis"]
        self.static_labels = lab

        # --- dynamic domains (flat pixel indices) ---
        flat = np.arange(n_pix * n_pix).reshape(n_pix, n_pix)
        u_f = np.where(inside, u, 0.0)
        w_sh = g.interp_u(g.w_shallow, u_f.ravel()).reshape(X.shape)
        w_dp = g.interp_u(g.w_deep, u_f.ravel()).reshape(X.shape)
        band_t = inside & (wd >= w_sh - 2 * w) & (wd <= w_dp + 2 * w)
        self.t_idx = flat[band_t]
        self.t_u = u[band_t]
        ui = np.clip(self.t_u, 0, g.U - 1 - 1e-9)
        self.t_i0 = np.floor(ui).astype(np.intp)
        self.t_f = (ui - self.t_i0).astype(np.float32)
        self.t_w = wd[band_t].astype(np.float32)
        self.t_tex = self.tex[band_t]
        # velum: bounding box of all positions
        x0 = y0 = np.inf
        x1 = y1 = -np.inf
        for c1x, c1y, r1, c2x, c2y, r2 in g._velum_hulls(np.linspace(-1.5, 1.5, 31)):
            x0 = min(x0, (c1x - r1).min() - 2, (c2x - r2).min() - 2)
            x1 = max(x1, (c1x + r1).max() + 2, (c2x + r2).max() + 2)
            y0 = min(y0, (c1y - r1).min() - 2, (c2y - r2).min() - 2)
            y1 = max(y1, (c1y + r1).max() + 2, (c2y + r2).max() + 2)
        box = (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1)
        self.v_idx, self.v_x, self.v_y = flat[box], X[box], Y[box]
        self.v_tex = np.minimum(self.tex[box], 0.78)
        # face: front of the incisors, rows from the nose base down below the chin
        front = (X < _X_INC + 1.5) & (Y >= 86.0) & (Y <= 172.0) & (X > -5)
        self.f_idx = flat[front]
        rows = np.nonzero(front.any(1))[0]
        cols = np.nonzero(front.any(0))[0]
        self.f_rows_y = self.row_y[rows]
        self.f_cols_x = self.col_x[cols]
        rmap = np.full(n_pix, -1)
        rmap[rows] = np.arange(rows.size)
        cmap = np.full(n_pix, -1)
        cmap[cols] = np.arange(cols.size)
        ri, ci = np.nonzero(front)
        self.f_r, self.f_c = rmap[ri], cmap[ci]
        self.f_x, self.f_y = X[front], Y[front]
        self.f_tex = self.tex[front]
        # under the jaw: columns behind the incisors down to the neck
        under = (X >= _X_INC) & (X <= 92.0) & (Y >= 130.0) & (Y <= 172.0)
        self.j_idx = flat[under]
        jcols = np.nonzero(under.any(0))[0]
        self.j_cols_x = self.col_x[jcols]
        jmap = np.full(n_pix, -1)
        jmap[jcols] = np.arange(jcols.size)
        _, jc = np.nonzero(under)
        self.j_c = jmap[jc]
        self.j_y = Y[under]
        self.j_x = X[under]
        self.j_tex = self.tex[under]


@functools.lru_cache(maxsize=24)
def _grid(anat: Anatomy, n_pix: int) -> _Grid:
    return _Grid(_geom(anat), n_pix)


def _check_params(params: np.ndarray) -> tuple[np.ndarray, bool]:
    p = np.asarray(params, dtype=np.float64)
    single = p.ndim == 1
    if single:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != N_PARAMS:
        raise ShapeError(
            f"params must have shape (P,) or (T, P) with P = {N_PARAMS}, got {np.shape(params)}"
        )
    if not np.all(np.isfinite(p)):
        raise ShapeError("params contain non-finite values")
    return p, single


def _check_n(n: int, oversample: int = 1) -> int:
    if int(n) < 8 or int(oversample) < 1:
        raise InputError(f"image size n must be >= 8 and oversample >= 1, got {n}, {oversample}")
    return int(n) * int(oversample)


def _col(h: Hull) -> Hull:
    return tuple(np.asarray(v, float).reshape(-1, 1) for v in h)


def _rays_from_left(ys: np.ndarray, hull: Hull) -> np.ndarray:
    """x where a row (rays from the left) enters a hull; (T, R), +inf when it misses."""
    t_in, _ = _ray_hull(-50.0, ys[None, :], 1.0, 0.0, _col(hull))
    return -50.0 + t_in


def _rays_from_top(xs: np.ndarray, hull: Hull) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom) y of a hull along columns; (T, C), +inf/-inf when they miss."""
    t_in, t_out = _ray_hull(xs[None, :], -50.0, 0.0, 1.0, _col(hull))
    return -50.0 + t_in, -50.0 + t_out


def _components(grid: _Grid, g: _Geom, params: np.ndarray) -> dict:
    """Occupancies of the moving parts on their pixel domains for params (T, P)."""
    st = g.state(params)
    w = grid.w
    inv = np.float32(1.0 / w)
    w_t, w_f = g.lower(st)
    w_low = np.minimum(np.minimum(w_t, w_f), 1e4).astype(np.float32)
    a0 = w_low[:, grid.t_i0]
    a1 = w_low[:, grid.t_i0 + 1]
    surf = a0 + (a1 - a0) * grid.t_f
    tract = np.clip((grid.t_w - surf) * inv + 0.5, 0.0, 1.0)
    out = {"state": st, "w_t": w_t, "w_f": w_f, "tract": tract}
    # velum
    sd = np.minimum(
        _hull_sdf(grid.v_x[None], grid.v_y[None], _col(st["velum"])),
        _hull_sdf(grid.v_x[None], grid.v_y[None], _col(st["velum2"])),
    )
    out["velum"] = np.clip(0.5 - sd * inv, 0.0, 1.0).astype(np.float32)
    # face: rows enter the lips/chin from the left, columns cross the lip channel
    xf = np.minimum.reduce([_rays_from_left(grid.f_rows_y, st[k]) for k in ("ul", "ll", "chin")])
    _, ub = _rays_from_top(grid.f_cols_x, st["ul"])
    lt, _ = _rays_from_top(grid.f_cols_x, st["ll"])
    ub = np.where(np.isfinite(ub), ub, np.inf)
    occ = np.clip((grid.f_x - xf[:, grid.f_r]) * inv + 0.5, 0.0, 1.0)
    chan = np.clip((grid.f_y - ub[:, grid.f_c]) * inv + 0.5, 0.0, 1.0) * np.clip(
        (lt[:, grid.f_c] - grid.f_y) * inv + 0.5, 0.0, 1.0
    )
    out["face"] = (occ * (1.0 - chan)).astype(np.float32)
    # under the jaw: tissue above the skin of the chin capsule
    _, skin = _rays_from_top(grid.j_cols_x, st["chin"])
    skin = np.where(np.isfinite(skin), skin, -np.inf)
    out["under"] = np.clip((skin[:, grid.j_c] - grid.j_y) * inv + 0.5, 0.0, 1.0).astype(np.float32)
    return out


def _paint(flat: np.ndarray, idx: np.ndarray, val: np.ndarray) -> None:
    flat[:, idx] = np.maximum(flat[:, idx], val)


def render(anat: Anatomy, params: np.ndarray, n: int = 84, oversample: int = 1) -> np.ndarray:
    """Proton-density image of the phantom in the upright midsagittal view.

    Row 0 is the top of the head, column 0 the face side (lips on the left); the field of view
    is 200 mm over ``n`` pixels. Tissue is bright (about 0.45-1.0 with mild texture), air dark
    (0); edges are anti-aliased over about one pixel.

    Args:
        anat: the subject's anatomy.
        params: (P,) or (T, P) articulatory parameters (:data:`~.articulation.PARAM_NAMES`).
        n: output size of the nominal grid.
        oversample: render on an ``n * oversample`` grid (same field of view).

    Returns:
        float32 (N, N) or (T, N, N) with N = n * oversample, values in [0, 1].

    Raises:
        ShapeError: params has the wrong shape or non-finite values.
        InputError: n or oversample out of range.
    """
    p, single = _check_params(params)
    n_pix = _check_n(n, oversample)
    g = _geom(anat)
    grid = _grid(anat, n_pix)
    out = np.empty((p.shape[0], n_pix, n_pix), np.float32)
    chunk = 64
    for s in range(0, p.shape[0], chunk):
        comp = _components(grid, g, p[s : s + chunk])
        o = out[s : s + chunk]
        o[:] = grid.static
        flat = o.reshape(o.shape[0], -1)
        _paint(flat, grid.t_idx, comp["tract"] * grid.t_tex)
        _paint(flat, grid.v_idx, comp["velum"] * grid.v_tex)
        _paint(flat, grid.f_idx, comp["face"] * grid.f_tex)
        _paint(flat, grid.j_idx, comp["under"] * grid.j_tex)
    return out[0] if single else out


def label_raster(anat: Anatomy, params: np.ndarray, n: int = 84) -> np.ndarray:
    """Articulator label of every pixel, from the same geometry as :func:`render`.

    A pixel is labelled where its tissue occupancy is at least one half (0 = air or
    background); ids are :data:`ARTICULATORS`. The tongue label covers the tongue down to the
    depth where it can reach (deeper tissue is "other"); the floor of the mouth and the chin are
    "jaw".

    Args:
        anat: the subject's anatomy.
        params: (P,) or (T, P) articulatory parameters.
        n: grid size (200 mm field of view).

    Returns:
        uint8 (n, n) or (T, n, n).
    """
    p, single = _check_params(params)
    n_pix = _check_n(n)
    g = _geom(anat)
    grid = _grid(anat, n_pix)
    out = np.empty((p.shape[0], n_pix * n_pix), np.uint8)
    for s in range(0, p.shape[0], 64):
        comp = _components(grid, g, p[s : s + 64])
        st = comp["state"]
        o = out[s : s + 64]
        o[:] = grid.static_labels.ravel()
        # tract: tongue where the tongue is the lower boundary of that gridline, else jaw
        ui = np.clip(np.rint(grid.t_u).astype(int), 0, g.U - 1)
        is_tongue = comp["w_t"][:, ui] <= comp["w_f"][:, ui]
        lab = np.where(is_tongue, _LABEL["tongue"], _LABEL["jaw"]).astype(np.uint8)
        sel = comp["tract"] >= 0.5
        _assign(o, grid.t_idx, sel, lab)
        _assign(o, grid.v_idx, comp["velum"] >= 0.5, _LABEL["velum"])
        fx, fy = grid.f_x[None], grid.f_y[None]
        lab = np.where(
            _hull_sdf(fx, fy, _col(st["ul"])) <= 0.0,
            _LABEL["upper_lip"],
            np.where(_hull_sdf(fx, fy, _col(st["ll"])) <= 0.0, _LABEL["lower_lip"], _LABEL["jaw"]),
        ).astype(np.uint8)
        _assign(o, grid.f_idx, comp["face"] >= 0.5, lab)
        _assign(o, grid.j_idx, comp["under"] >= 0.5, _LABEL["jaw"])
    out = out.reshape(p.shape[0], n_pix, n_pix)
    return out[0] if single else out


def _assign(o: np.ndarray, idx: np.ndarray, sel: np.ndarray, lab) -> None:
    cur = o[:, idx]
    lab = np.broadcast_to(np.asarray(lab, np.uint8), sel.shape)
    o[:, idx] = np.where(sel, lab, cur)


# --------------------------------------------------------------------------------------------
# Area function
# --------------------------------------------------------------------------------------------


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
    p, single = _check_params(params)
    if int(n_sections) < 2:
        raise InputError(f"n_sections must be >= 2, got {n_sections}")
    g = _geom(anat)
    st = g.state(p)
    w_t, w_f = g.lower(st)
    lower = np.minimum(np.minimum(w_t, w_f), g.w_lar)
    # Upper boundary: static anchors, the velum's oral surface where the velum separates the
    # oral airway from the nasopharynx, otherwise subtract the part of the velum in the way.
    v_in, v_out = _ray_hull(g.ax, g.ay, g.dx, g.dy, _col(st["velum"]))
    v_in2, v_out2 = _ray_hull(g.ax, g.ay, g.dx, g.dy, _col(st["velum2"]))
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
    _, ub = _ray_hull(xs, -50.0, 0.0, 1.0, _col(ul))
    lt, _ = _ray_hull(xs, -50.0, 0.0, 1.0, _col(ll))
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
    d_port = np.clip(g._port_distance(st["velum"], st["velum2"]), 0.0, None)
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


# --------------------------------------------------------------------------------------------
# Contours
# --------------------------------------------------------------------------------------------


def _to_pixels(anat: Anatomy, pts: np.ndarray, n: int) -> np.ndarray:
    pix = FOV_MM / n
    img = 100.0 + np.array([anat.shift_x, anat.shift_y]) + anat.scale * (pts - 100.0)
    return (img / pix - 0.5).astype(np.float64)


_FINE = 400  # grid of the static occupancy used to classify contour points (0.5 mm)


def _longest_run(pts: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The longest run of consecutive points of a closed loop where ``ok`` holds."""
    if not ok.any():
        return pts[:2]
    if not ok.all():  # start the loop at a dropped point
        start = int(np.argmin(ok))
        pts, ok = np.roll(pts, -start, axis=0), np.roll(ok, -start)
    edges = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    k = int(np.argmax(ends - starts))
    return pts[starts[k] : ends[k]]


def _velum_loop(h1: Hull, h2: Hull) -> np.ndarray:
    """Closed outline of the union of the two velum capsules (attachment-knee, knee-tip)."""
    a_plus, _, a_minus, a_cap1 = _hull_pieces(h1)
    b_plus, b_cap2, b_minus, _ = _hull_pieces(h2)
    pieces = []
    for piece, other in (
        (a_plus, h2),
        (b_plus, h1),
        (b_cap2, h1),
        (b_minus, h1),
        (a_minus, h2),
        (a_cap1, h2),
    ):
        pieces.append(piece[_hull_sdf(piece[:, 0], piece[:, 1], other) > 0.05])
    return np.concatenate(pieces)


def _outward(hull: Hull, pts: np.ndarray, eps: float = 0.05) -> np.ndarray:
    """Unit outward normals (K, 2) of a hull at outline points (gradient of its SDF)."""
    return np.stack(_outward_at(pts[:, 0], pts[:, 1], _sdf_consts(hull), eps), 1)


def _outward_at(x, y, consts: tuple, eps: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_outward` of points ``(x, y)`` from capsule constants (:func:`_sdf_consts`)."""
    gx = _sdf_at(x + eps, y, consts) - _sdf_at(x - eps, y, consts)
    gy = _sdf_at(x, y + eps, consts) - _sdf_at(x, y - eps, consts)
    nrm = np.maximum(np.hypot(gx, gy), 1e-12)
    return gx / nrm, gy / nrm


def _static_at(anat: Anatomy, pts: np.ndarray) -> np.ndarray:
    """Static tissue occupancy at reference points (K, 2), bilinear from a 0.5 mm map."""
    return _static_xy(anat, pts[:, 0], pts[:, 1])


def _static_xy(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`_static_at` of the points ``(x, y)`` (arrays of one shape)."""
    occ = _grid(anat, _FINE).static_occ
    pix = FOV_MM / _FINE
    hi = _FINE - 1.000001
    px = np.clip((100.0 + anat.shift_x + anat.scale * (x - 100.0)) / pix - 0.5, 0.0, hi)
    py = np.clip((100.0 + anat.shift_y + anat.scale * (y - 100.0)) / pix - 0.5, 0.0, hi)
    x0, y0 = px.astype(np.intp), py.astype(np.intp)
    fx, fy = px - x0, py - y0
    top = occ[y0, x0] * (1 - fx) + occ[y0, x0 + 1] * fx
    bottom = occ[y0 + 1, x0] * (1 - fx) + occ[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _tissue_at(
    anat: Anatomy, g: _Geom, st: dict, pts: np.ndarray, w_low: np.ndarray | None = None
) -> np.ndarray:
    """Tissue occupancy (K,) of one frame (state of T = 1) at reference points (K, 2).

    ``w_low`` (U,) is the lower surface along the gridlines when already known.
    """
    x, y = pts[:, 0], pts[:, 1]
    occ = _static_at(anat, pts)
    edge = 0.5
    inside, u, w, _ = g.tract_coords(x, y)
    uu = np.where(inside, u, 0.0)
    if w_low is None:
        w_t, w_f = g.lower(st)
        w_low = np.minimum(np.minimum(w_t, w_f), 1e4)[0]
    band = inside & (w >= g.interp_u(g.w_shallow, uu) - 1) & (w <= g.interp_u(g.w_deep, uu) + 1)
    tract = np.clip((w - g.interp_u(w_low, uu)) / edge + 0.5, 0, 1)
    occ = np.maximum(occ, np.where(band, np.nan_to_num(tract), 0.0))
    vel = np.minimum(_hull_sdf(x, y, _col(st["velum"]))[0], _hull_sdf(x, y, _col(st["velum2"]))[0])
    occ = np.maximum(occ, np.clip(0.5 - vel / edge, 0, 1))
    front = (x < _X_INC + 1.5) & (y >= 86.0) & (y <= 172.0)
    xf = np.minimum.reduce([_rays_from_left(y, st[k])[0] for k in ("ul", "ll", "chin")])
    _, ub = _rays_from_top(x, st["ul"])
    lt, _ = _rays_from_top(x, st["ll"])
    ub = np.where(np.isfinite(ub[0]), ub[0], np.inf)
    chan = np.clip((y - ub) / edge + 0.5, 0, 1) * np.clip((lt[0] - y) / edge + 0.5, 0, 1)
    face = np.clip((x - xf) / edge + 0.5, 0, 1) * (1 - chan)
    occ = np.maximum(occ, np.where(front, face, 0.0))
    under = (x >= _X_INC) & (x <= 92.0) & (y >= 130.0) & (y <= 172.0)
    _, skin = _rays_from_top(x, st["chin"])
    skin = np.where(np.isfinite(skin[0]), skin[0], -np.inf)
    return np.maximum(occ, np.where(under, np.clip((skin - y) / edge + 0.5, 0, 1), 0.0))


def contours(anat: Anatomy, params: np.ndarray, n: int = 84) -> dict[str, np.ndarray]:
    """Air-tissue boundaries of the articulators as open polylines (Annot-16 names).

    Args:
        anat: the subject's anatomy.
        params: (P,) articulatory parameters of one frame.
        n: grid size the coordinates refer to (200 mm field of view).

    Returns:
        :data:`CONTOUR_NAMES` -> (K, 2) float64 ``(x, y)`` in upright pixel coordinates of
        the ``n`` grid (x = column to the right, y = row downwards, pixel centres at
        integers). The tongue runs from the root to the tip, the lips and velum from their
        attachment round their free end.
    """
    p, single = _check_params(params)
    if not single:
        raise ShapeError(f"contours takes the parameters of one frame (P,), got {p.shape}")
    _check_n(n)
    g = _geom(anat)
    st = g.state(p)
    one = {k: tuple(np.asarray(v, float).ravel()[0] for v in h) for k, h in st.items()}
    out: dict[str, np.ndarray] = {}
    # tongue: surface along the gridlines where the tongue is the lower boundary, then the tip
    w_t, w_f = g.lower(st)
    w_t, w_f = w_t[0], w_f[0]
    sel = np.isfinite(w_t) & (w_t <= w_f) & (w_t <= g.w_lar)
    pts = np.stack([g.ax[sel] + g.dx[sel] * w_t[sel], g.ay[sel] + g.dy[sel] * w_t[sel]], 1)
    _, _, _, tx, ty, tr = one["tip"]
    top = np.arctan2(-1.0, 0.0)
    arc = top - np.linspace(0, np.deg2rad(200), 18)
    tip = np.stack([tx + tr * np.cos(arc), ty + tr * np.sin(arc)], 1)
    tip = tip[_hull_sdf(tip[:, 0], tip[:, 1], one["floor"]) > 0.3]
    tip = tip[tip[:, 0] <= tx + 0.1]
    out["tongue"] = np.concatenate([pts, tip]) if tip.size else pts

    # lips, chin and the static structures in the airway: the parts of their outlines that
    # face air (one evaluation of the tissue for all probes)
    parts = {
        "upper_lip": one["ul"],
        "lower_lip": one["ll"],
        "chin": one["chin"],
        "epiglottis": g.epiglottis,
        "arytenoid": g.arytenoid,
    }
    loops = {k: _hull_outline(h) for k, h in parts.items()}
    probes = np.concatenate([q + _outward(parts[k], q) for k, q in loops.items()])
    air = _tissue_at(anat, g, st, probes, np.minimum(np.minimum(w_t, w_f), 1e4)) < 0.5
    start = 0
    for name, q in loops.items():
        out[name] = _longest_run(q, air[start : start + len(q)])
        start += len(q)
    # velum: the outline of its two capsules outside the static tissue it hangs from
    loop = _velum_loop(one["velum"], one["velum2"])
    nrm = np.where(
        _hull_sdf(loop[:, 0], loop[:, 1], one["velum"])[:, None]
        < _hull_sdf(loop[:, 0], loop[:, 1], one["velum2"])[:, None],
        _outward(one["velum"], loop),
        _outward(one["velum2"], loop),
    )
    out["velum"] = _longest_run(loop, _static_at(anat, loop + nrm) < 0.5)
    out["hard_palate"] = g.palate[1:].copy()  # alveolar ridge to the posterior nasal spine
    wall_y = np.arange(_C[1] + 2.0, g.yg - 0.5, 2.0)
    out["pharyngeal_wall"] = np.concatenate([g.nasophar[1:], np.stack([g.xw(wall_y), wall_y], 1)])
    return {k: _to_pixels(anat, out[k], int(n)) for k in CONTOUR_NAMES}


# --------------------------------------------------------------------------------------------
# Contours of many frames at once
# --------------------------------------------------------------------------------------------
#
# contours_batch evaluates exactly the arithmetic of contours (the same numpy operations on the
# same values, so the results are identical), but for all points of all frames of a chunk as
# flat arrays: every point carries the index of its capsule (or frame), and the per-capsule
# constants are gathered per point. Outlines of varying length are laid out one after the
# other ("ragged"), and the longest runs of air-facing points are found for all loops at once.

_BATCH = 128  # frames per chunk of contours_batch (bounds the memory of the flat layouts)
_TIP_ARC = np.arctan2(-1.0, 0.0) - np.linspace(0, np.deg2rad(200), 18)  # tongue tip outline
_TIP_COS, _TIP_SIN = np.cos(_TIP_ARC), np.sin(_TIP_ARC)


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owner (M,) and position within the owner (M,) of the items of consecutive groups of
    ``counts`` items, and the offsets of the groups."""
    counts = np.asarray(counts, np.intp).ravel()
    offs = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(counts.size), counts)
    return owner, np.arange(owner.size) - offs[owner], offs


class _Hulls:
    """N tapered capsules (hull of (N,) arrays) and their derived constants."""

    def __init__(self, hull: Hull) -> None:
        self.hull = tuple(np.asarray(v, float) for v in hull)
        c1x, c1y, r1, c2x, c2y, r2 = self.hull
        self.consts = _sdf_consts(self.hull)
        self.tangents = _hull_tangents(self.hull)
        lo_x, lo_y = np.minimum(c1x - r1, c2x - r2), np.minimum(c1y - r1, c2y - r2)
        hi_x, hi_y = np.maximum(c1x + r1, c2x + r2), np.maximum(c1y + r1, c2y + r2)
        self.box = (lo_x.min(), lo_y.min(), hi_x.max(), hi_y.max()) if c1x.size else None

    def sdf_at(self, idx: np.ndarray) -> tuple:
        """Constants of the capsules ``idx`` for :func:`_sdf_at`."""
        return tuple(v[idx] for v in self.consts)

    def sdf(self, x, y, idx):
        """:func:`_hull_sdf` of points ``(x, y)`` to the capsules ``idx`` (one per point)."""
        return _sdf_at(x, y, self.sdf_at(idx))

    def ray_at(self, idx: np.ndarray) -> tuple:
        """Capsules ``idx`` and their tangents for :func:`_ray_at`."""
        return tuple(v[idx] for v in self.hull), tuple(
            tuple(v[idx] for v in seg) for seg in self.tangents
        )

    def pieces(self, which: tuple[int, ...] = (0, 1, 2, 3), step: float = 0.6):
        """:func:`_hull_pieces` of all capsules, flattened: ``(x, y, item, piece)``, the
        points ordered by capsule, then by piece in the order ``which``, then along the piece
        (the concatenation of ``_hull_pieces(hull_i)[j] for j in which`` for every i)."""
        c1x, c1y, r1, c2x, c2y, r2 = self.hull
        (p1x, p1y, q1x, q1y), (p2x, p2y, q2x, q2y) = self.tangents

        def seg(ax, ay, bx, by):  # origin, direction, count
            return ax, ay, bx - ax, by - ay, np.hypot(bx - ax, by - ay) / step

        def arc(cx, cy, r, a0, a1):  # centre, radius, start angle, angle swept, count
            da = (a0 - a1) % (2 * np.pi)
            return cx, cy, r, a0, da, r * da / step

        def piece(j):
            if j == 0:
                return seg(p1x, p1y, q1x, q1y)
            if j == 1:
                a0, a1 = np.arctan2(q1y - c2y, q1x - c2x), np.arctan2(q2y - c2y, q2x - c2x)
                return arc(c2x, c2y, r2, a0, a1)
            if j == 2:
                return seg(q2x, q2y, p2x, p2y)
            a0, a1 = np.arctan2(p2y - c1y, p2x - c1x), np.arctan2(p1y - c1y, p1x - c1x)
            return arc(c1x, c1y, r1, a0, a1)

        n, nj = c1x.size, len(which)
        cols = [piece(j) for j in which]
        counts = np.stack([np.maximum(2, c[-1].astype(np.intp)) for c in cols], 1)  # (N, J)
        owner, pos, _ = _ragged(counts)
        item, col = owner // nj, owner % nj
        t = pos * (1.0 / counts.ravel()[owner])  # np.linspace(0, 1, k, endpoint=False)
        x = np.empty(t.size)
        y = np.empty(t.size)
        for kind in ("seg", "arc"):
            js = [i for i, j in enumerate(which) if (j in (1, 3)) == (kind == "arc")]
            if not js:
                continue
            m = np.isin(col, js)
            o, tm = owner[m], t[m]
            prm = [
                np.stack([np.broadcast_to(cols[i][q], (n,)) for i in range(nj)], 1).ravel()[o]
                for q in range(5)
            ]
            if kind == "arc":  # a0 - da * t round the centre
                cx, cy, r, a0, da = prm
                a = a0 - da * tm
                x[m], y[m] = cx + r * np.cos(a), cy + r * np.sin(a)
            else:
                ax, ay, ex, ey, _ = prm
                x[m], y[m] = ax + tm * ex, ay + tm * ey
        return x, y, item, np.asarray(which)[col]


def _longest_runs(ok: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_longest_run` of consecutive closed loops of ``counts`` points (flat ``ok``).

    Returns:
        Per loop (first, length): the run is the loop's points ``first, first + 1, ...``
        (modulo the loop length), ``length`` of them.
    """
    counts = np.asarray(counts, np.intp)
    n = counts.size
    owner, pos, offs = _ragged(counts)
    size = counts[owner]
    # start each loop at its first dropped point (a loop without one stays as it is)
    bad = np.flatnonzero(~ok)
    lb = owner[bad]
    first = np.ones(lb.size, bool)
    first[1:] = lb[1:] != lb[:-1]
    shift = np.zeros(n, np.intp)
    shift[lb[first]] = pos[bad[first]]
    rolled = ok[offs[owner] + (pos + shift[owner]) % size]
    prev = np.zeros_like(rolled)
    prev[1:] = rolled[:-1]
    nxt = np.zeros_like(rolled)
    nxt[:-1] = rolled[1:]
    rs = np.flatnonzero(rolled & ((pos == 0) | ~prev))
    re = np.flatnonzero(rolled & ((pos == size - 1) | ~nxt)) + 1
    length = re - rs
    lid = owner[rs]
    order = np.lexsort((rs, -length, lid))  # per loop: the longest, the first of equals
    lid_s = lid[order]
    head = np.ones(lid_s.size, bool)
    head[1:] = lid_s[1:] != lid_s[:-1]
    best = order[head]
    has = lid[best]
    start = np.zeros(n, np.intp)
    out_len = np.minimum(counts, 2)  # no point kept: the first two points
    start[has] = (pos[rs[best]] + shift[has]) % counts[has]
    out_len[has] = length[best]
    return start, out_len


def _run_index(counts: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Flat indices of the runs of :func:`_longest_runs`, loop after loop."""
    counts = np.asarray(counts, np.intp)
    offs = np.cumsum(counts) - counts
    owner, pos, _ = _ragged(length)
    return offs[owner] + (start[owner] + pos) % counts[owner]


def _probes(anat: Anatomy, g: _Geom, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The frame-independent part of :func:`_tissue_at` at points ``(x, y)`` (M,)."""
    reg_p, reg_b, reg_f, _, u, w = g._tract_uw(x, y)
    inside = reg_p | reg_b | reg_f
    uu = np.where(inside, u, 0.0)
    band = inside & (w >= g.interp_u(g.w_shallow, uu) - 1) & (w <= g.interp_u(g.w_deep, uu) + 1)
    uc = np.clip(uu, 0, g.U - 1 - 1e-9)  # g.interp_u, for the profile of each point's frame
    i0 = np.floor(uc).astype(int)
    return {
        "x": x,
        "y": y,
        "occ": _static_xy(anat, x, y),
        "band": band,
        "w": w,
        "i0": i0,
        "f": uc - i0,
        "front": (x < _X_INC + 1.5) & (y >= 86.0) & (y <= 172.0),
        "under": (x >= _X_INC) & (x <= 92.0) & (y >= 130.0) & (y <= 172.0),
    }


def _tissue_flat(
    pr: dict[str, np.ndarray], hulls: dict[str, _Hulls], fr: np.ndarray, w_low: np.ndarray
) -> np.ndarray:
    """:func:`_tissue_at` at the points of :func:`_probes` ``pr`` (M,), each of its frame
    ``fr`` (M,) of a state of T frames (``hulls``) with lower surfaces ``w_low`` (T, U).

    Each term is evaluated only where it can add tissue (elsewhere it adds 0, and the
    occupancy is never negative): the tongue in its band, the velum within 1 mm of the
    bounding box of all velum capsules of the chunk (further points are over half the edge,
    0.25 mm, from the velum), the face and the floor under the jaw in their regions.
    """
    x, y = pr["x"], pr["y"]
    occ = pr["occ"].copy()
    edge = 0.5
    i = np.flatnonzero(pr["band"])
    if i.size:
        f, i0, fi = pr["f"][i], pr["i0"][i], fr[i]
        low = w_low[fi, i0] * (1 - f) + w_low[fi, i0 + 1] * f
        tract = np.clip((pr["w"][i] - low) / edge + 0.5, 0, 1)
        occ[i] = np.maximum(occ[i], np.nan_to_num(tract))
    v1, v2 = hulls["velum"], hulls["velum2"]
    bx0, by0 = min(v1.box[0], v2.box[0]) - 1.0, min(v1.box[1], v2.box[1]) - 1.0
    bx1, by1 = max(v1.box[2], v2.box[2]) + 1.0, max(v1.box[3], v2.box[3]) + 1.0
    i = np.flatnonzero((x >= bx0) & (x <= bx1) & (y >= by0) & (y <= by1))
    if i.size:
        xs, ys, fs = x[i], y[i], fr[i]
        vel = np.minimum(v1.sdf(xs, ys, fs), v2.sdf(xs, ys, fs))
        occ[i] = np.maximum(occ[i], np.clip(0.5 - vel / edge, 0, 1))
    i = np.flatnonzero(pr["front"])
    if i.size:
        xs, ys, fs = x[i], y[i], fr[i]
        ul, ll = hulls["ul"].ray_at(fs), hulls["ll"].ray_at(fs)
        chin = hulls["chin"].ray_at(fs)
        xf = np.minimum.reduce(
            [-50.0 + _ray_at(-50.0, ys, 1.0, 0.0, *h)[0] for h in (ul, ll, chin)]
        )
        ub = -50.0 + _ray_at(xs, -50.0, 0.0, 1.0, *ul)[1]
        lt = -50.0 + _ray_at(xs, -50.0, 0.0, 1.0, *ll)[0]
        ub = np.where(np.isfinite(ub), ub, np.inf)
        chan = np.clip((ys - ub) / edge + 0.5, 0, 1) * np.clip((lt - ys) / edge + 0.5, 0, 1)
        face = np.clip((xs - xf) / edge + 0.5, 0, 1) * (1 - chan)
        occ[i] = np.maximum(occ[i], face)
    i = np.flatnonzero(pr["under"])
    if i.size:
        xs, ys, fs = x[i], y[i], fr[i]
        skin = -50.0 + _ray_at(xs, -50.0, 0.0, 1.0, *hulls["chin"].ray_at(fs))[1]
        skin = np.where(np.isfinite(skin), skin, -np.inf)
        occ[i] = np.maximum(occ[i], np.clip((skin - ys) / edge + 0.5, 0, 1))
    return occ


@functools.lru_cache(maxsize=32)
def _static_contour_parts(anat: Anatomy, n: int) -> dict[str, np.ndarray]:
    """What :func:`contours` draws the same in every frame (read-only arrays): the hard palate
    and the pharyngeal wall in pixels, and the outlines of the epiglottis and the arytenoids
    (reference mm) with their air probes and point counts."""
    g = _geom(anat)
    wall_y = np.arange(_C[1] + 2.0, g.yg - 0.5, 2.0)
    wall = np.concatenate([g.nasophar[1:], np.stack([g.xw(wall_y), wall_y], 1)])
    pair = zip(g.epiglottis, g.arytenoid, strict=True)
    hulls = _Hulls(tuple(np.array([float(a), float(b)]) for a, b in pair))
    x, y, item, _ = hulls.pieces()
    nx, ny = _outward_at(x, y, hulls.sdf_at(item))
    out = {
        "hard_palate": _to_pixels(anat, g.palate[1:].copy(), n),
        "pharyngeal_wall": _to_pixels(anat, wall, n),
        "x": x,
        "y": y,
        "counts": np.bincount(item, minlength=2),
    }
    out.update({"probe_" + k: v for k, v in _probes(anat, g, x + nx, y + ny).items()})
    for a in out.values():
        a.setflags(write=False)
    return out


def _pixels_xy(anat: Anatomy, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """:func:`_to_pixels` of the points ``(x, y)``: (M, 2)."""
    pix = FOV_MM / n
    px = (100.0 + anat.shift_x + anat.scale * (x - 100.0)) / pix - 0.5
    py = (100.0 + anat.shift_y + anat.scale * (y - 100.0)) / pix - 0.5
    return np.stack([px, py], 1)


def _offsets(counts: np.ndarray) -> list[int]:
    return np.concatenate([[0], np.cumsum(counts)]).tolist()


def _contours_chunk(anat: Anatomy, p: np.ndarray, n: int) -> list[dict[str, np.ndarray]]:
    """:func:`contours` of the frames ``p`` (T, P) (see :func:`contours_batch`)."""
    g = _geom(anat)
    nt = p.shape[0]
    st = g.state(p)
    hulls = {k: _Hulls(tuple(np.broadcast_to(v, (nt,)) for v in h)) for k, h in st.items()}
    frames = np.arange(nt)

    # tongue: gridline crossings where the tongue is the lower boundary, then the tip
    w_t, w_f = g.lower(st)
    sel = np.isfinite(w_t) & (w_t <= w_f) & (w_t <= g.w_lar)
    wt = np.where(sel, w_t, 0.0)
    tip = hulls["tip"].hull
    tx, ty, tr = tip[3][:, None], tip[4][:, None], tip[5][:, None]
    tip_x, tip_y = tx + tr * _TIP_COS, ty + tr * _TIP_SIN
    rows = np.repeat(frames, _TIP_COS.size)
    keep = hulls["floor"].sdf(tip_x.ravel(), tip_y.ravel(), rows).reshape(tip_x.shape) > 0.3
    keep &= tip_x <= tx + 0.1
    mask = np.concatenate([sel, keep], 1)
    tongue = _pixels_xy(
        anat,
        np.concatenate([g.ax + g.dx * wt, tip_x], 1)[mask],
        np.concatenate([g.ay + g.dy * wt, tip_y], 1)[mask],
        n,
    )
    t_off = _offsets(mask.sum(1))

    # lips and chin (loop 3 t + j of frame t), then the epiglottis and the arytenoids (loop
    # 3 T + 2 t + j, the same outline every frame): the runs of the outlines that face air
    stat = _static_contour_parts(anat, n)
    lips = _Hulls(
        tuple(np.stack([st[k][i] for k in ("ul", "ll", "chin")], 1).ravel() for i in range(6))
    )
    x, y, item, _ = lips.pieces()
    nx, ny = _outward_at(x, y, lips.sdf_at(item))
    counts = np.concatenate([np.bincount(item, minlength=3 * nt), np.tile(stat["counts"], nt)])
    probes = _probes(anat, g, x + nx, y + ny)
    probes = {k: np.concatenate([v, np.tile(stat["probe_" + k], nt)]) for k, v in probes.items()}
    fr = np.concatenate([item // 3, np.repeat(frames, stat["x"].size)])
    w_low = np.minimum(np.minimum(w_t, w_f), 1e4)
    air = _tissue_flat(probes, hulls, fr, w_low) < 0.5
    idx = _run_index(counts, *(runs := _longest_runs(air, counts)))
    parts = _pixels_xy(
        anat,
        np.concatenate([x, np.tile(stat["x"], nt)])[idx],
        np.concatenate([y, np.tile(stat["y"], nt)])[idx],
        n,
    )
    p_off = _offsets(runs[1])

    # velum: the outline of its two capsules outside the static tissue it hangs from
    v1, v2 = hulls["velum"], hulls["velum2"]
    x1, y1, i1, k1 = v1.pieces((0, 2, 3))  # a_plus, a_minus, a_cap1
    x2, y2, i2, k2 = v2.pieces((0, 1, 2))  # b_plus, b_cap2, b_minus
    other = np.concatenate([v2.sdf(x1, y1, i1), v1.sdf(x2, y2, i2)])
    keep = other > 0.05
    slot = np.array([0, -1, 4, 5, 1, 2, 3, -1])  # place in the loop of (capsule, piece)
    key = np.concatenate([i1 * 6 + slot[k1], i2 * 6 + slot[k2 + 4]])[keep]
    order = np.argsort(key, kind="stable")
    vx = np.concatenate([x1, x2])[keep][order]
    vy = np.concatenate([y1, y2])[keep][order]
    other = other[keep][order]
    second = np.concatenate([np.zeros(x1.size, bool), np.ones(x2.size, bool)])[keep][order]
    vf = key[order] // 6
    # signed distances to both capsules: to the other one known, to its own one computed
    s1, s2 = other.copy(), other.copy()
    a, b = np.flatnonzero(~second), np.flatnonzero(second)
    s1[a] = v1.sdf(vx[a], vy[a], vf[a])
    s2[b] = v2.sdf(vx[b], vy[b], vf[b])
    first = np.flatnonzero(s1 < s2)
    rest = np.flatnonzero(~(s1 < s2))
    nx, ny = np.empty(vx.size), np.empty(vx.size)
    nx[first], ny[first] = _outward_at(vx[first], vy[first], v1.sdf_at(vf[first]))
    nx[rest], ny[rest] = _outward_at(vx[rest], vy[rest], v2.sdf_at(vf[rest]))
    ok = _static_xy(anat, vx + nx, vy + ny) < 0.5
    v_counts = np.bincount(vf, minlength=nt)
    idx = _run_index(v_counts, *(runs := _longest_runs(ok, v_counts)))
    velum = _pixels_xy(anat, vx[idx], vy[idx], n)
    v_off = _offsets(runs[1])

    palate, wall = stat["hard_palate"], stat["pharyngeal_wall"]
    out = []
    for t in range(nt):
        j, k = 3 * t, 3 * nt + 2 * t
        out.append(
            {
                "epiglottis": parts[p_off[k] : p_off[k + 1]],
                "tongue": tongue[t_off[t] : t_off[t + 1]],
                "lower_lip": parts[p_off[j + 1] : p_off[j + 2]],
                "chin": parts[p_off[j + 2] : p_off[j + 3]],
                "arytenoid": parts[p_off[k + 1] : p_off[k + 2]],
                "pharyngeal_wall": wall.copy(),
                "hard_palate": palate.copy(),
                "velum": velum[v_off[t] : v_off[t + 1]],
                "upper_lip": parts[p_off[j] : p_off[j + 1]],
            }
        )
    return out


def contours_batch(anat: Anatomy, params: np.ndarray, n: int = 84) -> list[dict[str, np.ndarray]]:
    """:func:`contours` of many frames at once: the same values, much faster per frame.

    Args:
        anat: the subject's anatomy.
        params: (T, P) articulatory parameters.
        n: grid size the coordinates refer to (200 mm field of view).

    Returns:
        T dicts, entry t equal to ``contours(anat, params[t], n)`` (same names, point order,
        point counts and values). Arrays of one call may be views of shared buffers (never
        overlapping).

    Raises:
        ShapeError: params is not (T, P) or has non-finite values.
        InputError: n out of range.
    """
    p = np.asarray(params, dtype=np.float64)
    if p.ndim != 2:
        raise ShapeError(f"contours_batch takes the parameters of T frames (T, P), got {p.shape}")
    p, _ = _check_params(p)
    n = _check_n(n)
    out: list[dict[str, np.ndarray]] = []
    for s in range(0, p.shape[0], _BATCH):
        out.extend(_contours_chunk(anat, p[s : s + _BATCH], n))
    return out
