"""Plane shapes the phantom is built from, and how points and rays meet them.

Pure geometry in millimetres, with no anatomy in it: *tapered capsules* (:data:`Hull`, the
convex hull of two circles; the tongue, lips, chin, velum, epiglottis and arytenoids are made of
them), closed polygons, polylines and ellipses. For each: signed distances (negative inside),
the parameters where a line ``a + t d`` enters and leaves it, and outlines as point lists.
Everything is vectorized: the coordinates and the capsule parameters are arrays that broadcast
(a capsule of (T, 1) arrays against points of (1, K) gives (T, K)); :class:`Hulls` evaluates
many capsules at once, each against its own points, with the same arithmetic.
"""

from __future__ import annotations

import itertools

import numpy as np

Hull = tuple  # (c1x, c1y, r1, c2x, c2y, r2): convex hull of two circles (tapered capsule)


def hull_tangents(hull: Hull) -> list[tuple]:
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


def ray_segment(ax, ay, dx, dy, px, py, qx, qy):
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


def ray_hull(ax, ay, dx, dy, hull: Hull):
    """Entry and exit parameters of the line ``a + t d`` through a tapered capsule (convex)."""
    return ray_at(ax, ay, dx, dy, hull, hull_tangents(hull))


def ray_at(ax, ay, dx, dy, hull: Hull, tangents) -> tuple:
    """:func:`ray_hull` with the capsule's :func:`hull_tangents` already known."""
    c1x, c1y, r1, c2x, c2y, r2 = hull
    t_in, t_out = _ray_circle(ax, ay, dx, dy, c1x, c1y, r1)
    a0, a1 = _ray_circle(ax, ay, dx, dy, c2x, c2y, r2)
    t_in, t_out = np.minimum(t_in, a0), np.maximum(t_out, a1)
    for px, py, qx, qy in tangents:
        s0, s1 = ray_segment(ax, ay, dx, dy, px, py, qx, qy)
        t_in, t_out = np.minimum(t_in, s0), np.maximum(t_out, s1)
    return t_in, t_out


def hull_sdf(x, y, hull: Hull):
    """Signed distance (mm, negative inside) to a tapered capsule (Quilez's uneven capsule)."""
    return sdf_at(x, y, sdf_consts(hull))


def sdf_consts(hull: Hull) -> tuple:
    """The constants of a tapered capsule that :func:`sdf_at` needs."""
    c1x, c1y, r1, c2x, c2y, r2 = hull
    dx, dy = c2x - c1x, c2y - c1y
    h = np.maximum(np.hypot(dx, dy), 1e-9)
    b = np.clip((r1 - r2) / h, -0.999, 0.999)
    a = np.sqrt(1 - b * b)
    return c1x, c1y, r1, r2, h, dx / h, dy / h, b, a, a * h


def sdf_at(x, y, consts: tuple) -> np.ndarray:
    """:func:`hull_sdf` from the capsule constants of :func:`sdf_consts`."""
    c1x, c1y, r1, r2, h, ex, ey, b, a, ah = consts
    qx, qy = x - c1x, y - c1y
    along = qx * ex + qy * ey
    across = np.abs(qy * ex - qx * ey)
    k = a * along - b * across
    d1 = np.hypot(across, along) - r1
    d2 = np.hypot(across, along - h) - r2
    d3 = a * across + b * along - r1
    return np.where(k < 0, d1, np.where(k > ah, d2, d3))


def hull_pieces(hull: Hull, step: float = 0.6) -> list[np.ndarray]:
    """Outline pieces of a tapered capsule: tangent "+" (c1 to c2), the c2 cap, tangent "-"
    (c2 to c1), the c1 cap; together a closed loop."""
    c1x, c1y, r1, c2x, c2y, r2 = (float(v) for v in hull)
    (p1x, p1y, q1x, q1y), (p2x, p2y, q2x, q2y) = hull_tangents((c1x, c1y, r1, c2x, c2y, r2))

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


def hull_outline(hull: Hull, step: float = 0.6) -> np.ndarray:
    """Closed outline (K, 2) of a tapered capsule (see :func:`hull_pieces`)."""
    return np.concatenate(hull_pieces(hull, step))


def seg_dist(x, y, pts: np.ndarray) -> np.ndarray:
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


def polygon_sdf(x, y, poly: np.ndarray) -> np.ndarray:
    """Signed distance to a closed polygon (K, 2), negative inside (even-odd rule); x and y
    broadcast as in :func:`seg_dist`."""
    closed = np.concatenate([poly, poly[:1]])
    inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)), bool)
    for (ax, ay), (bx, by) in itertools.pairwise(closed):
        cond = (ay > y) != (by > y)
        xc = ax + (y - ay) * (bx - ax) / np.where(by == ay, 1e-12, by - ay)
        inside ^= cond & (x < xc)
    d = seg_dist(x, y, closed)
    return np.where(inside, -d, d)


def ellipse(cx, cy, rx, ry, k: int = 48, rot: float = 0.0) -> np.ndarray:
    """Closed polygon (k, 2) of an ellipse with radii ``rx, ry`` rotated by ``rot`` radians."""
    a = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ex, ey = rx * np.cos(a), ry * np.sin(a)
    c, s = np.cos(rot), np.sin(rot)
    return np.stack([cx + c * ex - s * ey, cy + s * ex + c * ey], 1)


def ramp(sdf, width):
    """Anti-aliased occupancy from a signed distance (negative inside), edge ``width`` wide."""
    return np.clip(0.5 - sdf / width, 0.0, 1.0)


def as_column(h: Hull) -> Hull:
    """The capsules of ``h`` (6 arrays of N values) as (N, 1) columns, to broadcast against
    points along a second axis."""
    return tuple(np.asarray(v, float).reshape(-1, 1) for v in h)


def rays_from_left(ys: np.ndarray, hull: Hull) -> np.ndarray:
    """x where rows at heights ``ys`` (R,), cast rightwards from x = -50 mm, enter the T
    capsules of ``hull``: (T, R), +inf where a row misses."""
    t_in, _ = ray_hull(-50.0, ys[None, :], 1.0, 0.0, as_column(hull))
    return -50.0 + t_in


def rays_from_top(xs: np.ndarray, hull: Hull) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom) y of the T capsules of ``hull`` along columns at ``xs`` (C,), cast
    downwards from y = -50 mm: (T, C) each, +inf / -inf where a column misses."""
    t_in, t_out = ray_hull(xs[None, :], -50.0, 0.0, 1.0, as_column(hull))
    return -50.0 + t_in, -50.0 + t_out


# --------------------------------------------------------------------------------------------
# Many capsules at once, as flat arrays of points that each carry the index of their capsule
# --------------------------------------------------------------------------------------------


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owner (M,) and position within the owner (M,) of the items of consecutive groups of
    ``counts`` items, and the offsets of the groups."""
    counts = np.asarray(counts, np.intp).ravel()
    offs = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(counts.size), counts)
    return owner, np.arange(owner.size) - offs[owner], offs


class Hulls:
    """N tapered capsules (a hull of (N,) arrays) and their derived constants, to evaluate
    each point against its own capsule (the points of many outlines laid out flat)."""

    def __init__(self, hull: Hull) -> None:
        self.hull = tuple(np.asarray(v, float) for v in hull)
        c1x, c1y, r1, c2x, c2y, r2 = self.hull
        self.consts = sdf_consts(self.hull)
        self.tangents = hull_tangents(self.hull)
        lo_x, lo_y = np.minimum(c1x - r1, c2x - r2), np.minimum(c1y - r1, c2y - r2)
        hi_x, hi_y = np.maximum(c1x + r1, c2x + r2), np.maximum(c1y + r1, c2y + r2)
        self.box = (lo_x.min(), lo_y.min(), hi_x.max(), hi_y.max()) if c1x.size else None

    def sdf_at(self, idx: np.ndarray) -> tuple:
        """Constants of the capsules ``idx`` for :func:`sdf_at`."""
        return tuple(v[idx] for v in self.consts)

    def sdf(self, x, y, idx):
        """:func:`hull_sdf` of points ``(x, y)`` to the capsules ``idx`` (one per point)."""
        return sdf_at(x, y, self.sdf_at(idx))

    def ray_at(self, idx: np.ndarray) -> tuple:
        """Capsules ``idx`` and their tangents for :func:`ray_at`."""
        return tuple(v[idx] for v in self.hull), tuple(
            tuple(v[idx] for v in seg) for seg in self.tangents
        )

    def pieces(self, which: tuple[int, ...] = (0, 1, 2, 3), step: float = 0.6):
        """:func:`hull_pieces` of all capsules, flattened: ``(x, y, item, piece)``, the
        points ordered by capsule, then by piece in the order ``which``, then along the piece
        (the concatenation of ``hull_pieces(hull_i)[j] for j in which`` for every i)."""
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
        owner, pos, _ = ragged(counts)
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
