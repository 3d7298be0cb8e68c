"""The vocal tract of one speaker: its walls, its gridlines and the articulators that move.

One model serves the images, the labels, the contours and the area function (all in reference
millimetres, see :mod:`.anatomy`):

- static anatomy: hard palate, posterior pharyngeal wall, nasopharynx, larynx with epiglottis
  and arytenoids (the head and neck around them are drawn by :mod:`.images`);
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
"""

from __future__ import annotations

import functools

import numpy as np

from sirem_cli.errors import InputError, ShapeError, SiremError
from sirem_cli.synth.anatomy import Anatomy
from sirem_cli.synth.articulation import N_PARAMS
from sirem_cli.synth.shapes import Hull, as_column, hull_sdf, ray_hull, ray_segment

_C = (88.0, 122.0)  # centre of the polar gridlines (always inside the tongue body)
#: Upper incisor edge (reference mm): boundary between the oral gridlines and the lips.
X_INCISOR = 44.0
_K = (112.0, 82.0)  # jaw rotation centre (condyle)
_DY_P, _N_B, _DX_F = 1.5, 24, 1.5  # gridline spacing: pharynx (mm), bend (count), oral (mm)


class Geometry:
    """The vocal tract of one anatomy in reference millimetres (build it with :func:`geometry`).

    The static walls and the gridline system are attributes (gridline ``i`` runs from
    ``(ax[i], ay[i])`` along the unit direction ``(dx[i], dy[i])``, depth ``w`` along it);
    :meth:`state` gives the capsules of the moving articulators for articulatory parameters
    and :meth:`lower` where they cross the gridlines.
    """

    def __init__(self, anat: Anatomy) -> None:
        self.anat = anat
        cx, cy = _C
        self.xw0 = 120.0 + anat.pharynx_depth
        self.yg = 176.0 + anat.pharynx_length
        ph = anat.palate_height
        self.pns = (96.0, 97.0 - 0.6 * ph)
        self.palate = np.array(
            [
                (X_INCISOR, 108.0),
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
        self.n_f = int(np.ceil((cx - X_INCISOR) / _DX_F))
        self.dx_f = (cx - X_INCISOR) / self.n_f
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
            t0, t1 = ray_hull(self.ax, self.ay, self.dx, self.dy, hull)
            self.chord += np.where(self.kind == 0, np.clip(t1 - t0, 0, None), 0.0)
        # Tongue and velum rest geometry.
        self.body0 = np.array([84.0, 124.5])
        self.tip0 = np.array([52.0, 114.5])
        self.root0 = np.array([self.xw(147.0) - 21.0, 147.0])
        self.velum_c1 = (self.pns[0] + 1.0, self.pns[1] - 1.5)
        self.port_pts = self._port_points()
        shape = np.linspace(0.0, 1.2, 481)
        dist = self.port_distance(*self._velum_at(shape))
        if dist[0] > 0 or dist[-1] <= 0:
            raise SiremError(f"anatomy {anat.subject}: the velum cannot seal the port")
        self.velum_contact = float(shape[np.nonzero(dist >= 0.0)[0][0]])
        over = np.nonzero((dist >= -2.0) & (shape <= self.velum_contact))[0][0]
        self.velum_slack = self.velum_contact - float(shape[over])
        raised = self.velum_hulls(np.array([-1.0]))
        t_out = np.maximum(*(ray_hull(self.ax, self.ay, self.dx, self.dy, h)[1] for h in raised))
        self.w_velum_raised = np.where(np.isfinite(t_out[0]), t_out[0], -np.inf)
        self._extremes()

    def _port_points(self) -> np.ndarray:
        """Points of the posterior pharyngeal wall facing the velum (the port's back wall)."""
        y = np.linspace(self.nasophar[4][1], 118.0, 40)
        x = np.interp(y, self.nasophar[4:, 1], self.nasophar[4:, 0])
        return np.stack([x, y], 1)

    def port_distance(self, *hulls: Hull) -> np.ndarray:
        """Smallest signed distance (mm) between the velum capsules and the port walls."""
        px, py = self.port_pts[None, :, 0], self.port_pts[None, :, 1]
        d = [hull_sdf(px, py, as_column(h)) for h in hulls]
        return np.minimum.reduce(d).min(axis=1)

    # -- static curves ---------------------------------------------------------------------
    def pharyngeal_wall(self) -> np.ndarray:
        """Outline (K, 2) of the pharyngeal wall: the roof of the nasopharynx from behind the
        PNS, then down the posterior wall to the glottis."""
        wall_y = np.arange(_C[1] + 2.0, self.yg - 0.5, 2.0)
        return np.concatenate([self.nasophar[1:], np.stack([self.xw(wall_y), wall_y], 1)])

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
            t, _ = ray_segment(_C[0], _C[1], dx, dy, px, py, qx, qy)
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

    def velum_hulls(self, vel):
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
        vel_a, vel_b = self.velum_hulls(vel)
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
        t_tip, _ = ray_hull(self.ax, self.ay, self.dx, self.dy, as_column(st["tip"]))
        t_root, _ = ray_hull(self.ax, self.ay, self.dx, self.dy, as_column(st["root"]))
        t_floor, _ = ray_hull(self.ax, self.ay, self.dx, self.dy, as_column(st["floor"]))
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
    def tract_uw(self, x, y) -> tuple:
        """(reg_p, reg_b, reg_f, th, u, w) of reference points on the gridline system."""
        cx, cy = _C
        reg_p = (x >= cx) & (y >= cy) & (y <= self.yg)
        reg_b = (x >= cx) & (y < cy)
        reg_f = (x < cx) & (x >= X_INCISOR)
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
        reg_p, reg_b, reg_f, th, u, w = self.tract_uw(x, y)
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
def geometry(anat: Anatomy) -> Geometry:
    """The :class:`Geometry` of ``anat`` (cached: building one takes some milliseconds)."""
    return Geometry(anat)


def face_zone(x, y):
    """Where the lips and the chin can put tissue: in front of the incisors (reference mm)."""
    return (x < X_INCISOR + 1.5) & (y >= 86.0) & (y <= 172.0)


def jaw_zone(x, y):
    """Where the chin capsule can put tissue under the jaw, behind the incisors (reference mm)."""
    return (x >= X_INCISOR) & (x <= 92.0) & (y >= 130.0) & (y <= 172.0)


def check_params(params: np.ndarray) -> tuple[np.ndarray, bool]:
    """Articulatory parameters (P,) or (T, P) as float64 (T, P), and whether one frame was given.

    Raises:
        ShapeError: the wrong shape or non-finite values.
    """
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


def check_n(n: int, oversample: int = 1) -> int:
    """The size ``n * oversample`` of the pixel grid.

    Raises:
        InputError: n below 8 or oversample below 1.
    """
    if int(n) < 8 or int(oversample) < 1:
        raise InputError(f"image size n must be >= 8 and oversample >= 1, got {n}, {oversample}")
    return int(n) * int(oversample)
