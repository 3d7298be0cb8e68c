"""The MR image of the phantom: tissue intensities and texture on a pixel grid, per frame.

A :class:`Grid` holds everything of one anatomy on an ``N x N`` grid that does not move: the
tissue intensity everywhere (muscle, fat along the skin, brain and skull, the cervical spine,
the marrow of the hard palate, each with a mild smooth texture of the speaker's own seed), the
static occupancy (the head minus the airway, the nasal cavity and the trachea, plus the
epiglottis and arytenoids), the static regions that :mod:`.labels` names, and the pixel domains
where the moving parts can be. :func:`moving_parts` gives the occupancy of the tongue and jaw
floor, the velum, the lips and chin and the skin under the jaw on those domains for each frame;
:func:`render` paints them over the static image.
"""

from __future__ import annotations

import functools

import numpy as np

from sirem_cli.synth.anatomy import FOV_MM, Anatomy, to_pixels
from sirem_cli.synth.shapes import (
    as_column,
    ellipse,
    hull_sdf,
    polygon_sdf,
    ramp,
    rays_from_left,
    rays_from_top,
    seg_dist,
)
from sirem_cli.synth.vocaltract import (
    X_INCISOR,
    Geometry,
    check_n,
    check_params,
    face_zone,
    geometry,
    jaw_zone,
)

_FINE = 400  # grid of :func:`static_occupancy` (0.5 mm), which classifies contour points


def _head_polygon() -> np.ndarray:
    """Outline (K, 2) of the head and neck, reference mm (open behind the lips and the jaw)."""
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
            (X_INCISOR, 108.5),
            (X_INCISOR, 136),
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


class Grid:
    """Everything precomputed for rendering one anatomy on an N x N grid (see the module)."""

    def __init__(self, g: Geometry, n_pix: int) -> None:
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
        head = polygon_sdf(Xr, Yc, poly)
        # muscle of the tongue, lips and chin (also where they move outside the static head)
        tex = blend(tex, np.hypot(X - 80, Y - 122) - 34, 0.8 + 0.04 * coarse + 0.02 * fine, 8.0)
        tex = blend(tex, head, 0.8 + 0.04 * coarse + 0.02 * fine, 6.0)
        # subcutaneous fat along the skin (the outline minus its cut behind the lips and jaw)
        skin = np.minimum(seg_dist(Xr, Yc, poly[:11]), seg_dist(Xr, Yc, poly[19:]))
        tex = blend(tex, np.where(head < 0, skin - 4.0, np.inf), 0.93 + 0.03 * fine, 1.5)
        # brain and skull
        brain = polygon_sdf(Xr, Yc, ellipse(128, 2, 78, 46))
        tex = blend(tex, brain, 0.55 + 0.04 * coarse, w)
        tex = blend(tex, np.abs(brain - 2.5) - 2.5, 0.12, w)
        # spine: vertebral bodies, discs, canal, cord, a fat stripe behind
        spine = np.full(X.shape, np.inf)
        for k in range(7):
            yc = 96.0 + 16.5 * k
            body = np.array([(134, yc - 6), (156, yc - 6.5), (157, yc + 6), (135, yc + 6.5)])
            spine = np.minimum(spine, polygon_sdf(Xr, Yc, body) - 1.0)
        column = np.maximum(np.maximum(133 - X, X - 158), 88 - Y)
        tex = blend(tex, column, 0.45 + 0.03 * fine, w)
        tex = blend(tex, spine, 0.66 + 0.06 * coarse, w)
        tex = blend(tex, np.abs(spine) - 0.8, 0.3, w)
        tex = blend(tex, np.maximum(np.maximum(160 - X, X - 173), 80 - Y), 0.78, w)
        tex = blend(tex, np.maximum(np.maximum(163 - X, X - 170), 78 - Y), 0.5 + 0.02 * fine, w)
        tex = blend(tex, np.maximum(np.abs(X - 182) - 2.0, 110 - Y), 0.95, w)
        # hard palate band (bright marrow over a dark cortical line)
        pal = seg_dist(Xr, Yc, g.palate)
        above = Y < g.y_roof(np.clip(X, X_INCISOR, g.pns[0]))
        band = (pal < 7.0) & above & (X >= X_INCISOR - 2) & (X <= g.pns[0] + 2)
        tex = np.where(band, blend(0.9, pal - 1.5, 0.55, w), tex)
        self.tex = np.clip(tex, 0.0, 1.0).astype(np.float32)

        # --- static occupancy ---
        occ = ramp(head, w)
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
        nasal = polygon_sdf(
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
                polygon_sdf(Xr, Yc, ellipse(62, 68, 22, 3.2, rot=0.12)),
                polygon_sdf(Xr, Yc, ellipse(66, 77, 26, 3.5, rot=0.05)),
                polygon_sdf(Xr, Yc, ellipse(70, 85 - 0.6 * a.palate_height, 20, 2.2)),
                np.abs(Y - 75) + np.maximum(0, np.abs(X - 55) - 25) - 0.8,  # septum edge
            ]
        )
        nasal_air = ramp(nasal, w) * (1 - ramp(conchae, w))
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
        occ = occ * (1 - ramp(polygon_sdf(Xr, Yc, tr), w))
        # static structures inside the airway
        epi = ramp(hull_sdf(X, Y, g.epiglottis), w)
        ary = ramp(hull_sdf(X, Y, g.arytenoid), w)
        occ = np.maximum(occ, np.maximum(epi, ary))
        tex = np.where(epi > 0, 0.82, self.tex)
        self.tex = tex.astype(np.float32)
        self.static = (occ * self.tex).astype(np.float32)
        self.static_occ = occ.astype(np.float32)

        # --- static regions (bool (N, N)): tissue, and where it is a named structure ---
        self.tissue = occ >= 0.5
        wall_zone = (X > g.xw(Y) - 0.5) & (X < g.xw(Y) + 9) & (Y > 84) & (Y < g.yg + 2)
        roof_zone = (seg_dist(Xr, Yc, g.nasophar[1:5]) < 8) & (X > g.pns[0])
        self.wall_zone = wall_zone | roof_zone
        self.palate_band = band
        self.epiglottis = epi >= 0.5

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
        for c1x, c1y, r1, c2x, c2y, r2 in g.velum_hulls(np.linspace(-1.5, 1.5, 31)):
            x0 = min(x0, (c1x - r1).min() - 2, (c2x - r2).min() - 2)
            x1 = max(x1, (c1x + r1).max() + 2, (c2x + r2).max() + 2)
            y0 = min(y0, (c1y - r1).min() - 2, (c2y - r2).min() - 2)
            y1 = max(y1, (c1y + r1).max() + 2, (c2y + r2).max() + 2)
        box = (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1)
        self.v_idx, self.v_x, self.v_y = flat[box], X[box], Y[box]
        self.v_tex = np.minimum(self.tex[box], 0.78)
        # face: front of the incisors, rows from the nose base down below the chin
        front = face_zone(X, Y) & (X > -5)
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
        under = jaw_zone(X, Y)
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
def pixel_grid(anat: Anatomy, n_pix: int) -> Grid:
    """The :class:`Grid` of ``anat`` on ``n_pix`` pixels (cached)."""
    return Grid(geometry(anat), n_pix)


def moving_parts(grid: Grid, g: Geometry, params: np.ndarray) -> dict:
    """Occupancies of the moving parts on their pixel domains for params (T, P).

    Returns:
        ``state`` (the capsules of :meth:`~.vocaltract.Geometry.state`), ``w_t`` and ``w_f``
        (T, U) (tongue and floor crossings of the gridlines) and float32 occupancies in [0, 1]:
        ``tract`` (T, len(t_idx)) of the tongue and jaw floor, ``velum`` (T, len(v_idx)),
        ``face`` (T, len(f_idx)) of the lips and chin, ``under`` (T, len(j_idx)).
    """
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
        hull_sdf(grid.v_x[None], grid.v_y[None], as_column(st["velum"])),
        hull_sdf(grid.v_x[None], grid.v_y[None], as_column(st["velum2"])),
    )
    out["velum"] = np.clip(0.5 - sd * inv, 0.0, 1.0).astype(np.float32)
    # face: rows enter the lips/chin from the left, columns cross the lip channel
    xf = np.minimum.reduce([rays_from_left(grid.f_rows_y, st[k]) for k in ("ul", "ll", "chin")])
    _, ub = rays_from_top(grid.f_cols_x, st["ul"])
    lt, _ = rays_from_top(grid.f_cols_x, st["ll"])
    ub = np.where(np.isfinite(ub), ub, np.inf)
    occ = np.clip((grid.f_x - xf[:, grid.f_r]) * inv + 0.5, 0.0, 1.0)
    chan = np.clip((grid.f_y - ub[:, grid.f_c]) * inv + 0.5, 0.0, 1.0) * np.clip(
        (lt[:, grid.f_c] - grid.f_y) * inv + 0.5, 0.0, 1.0
    )
    out["face"] = (occ * (1.0 - chan)).astype(np.float32)
    # under the jaw: tissue above the skin of the chin capsule
    _, skin = rays_from_top(grid.j_cols_x, st["chin"])
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
    p, single = check_params(params)
    n_pix = check_n(n, oversample)
    g = geometry(anat)
    grid = pixel_grid(anat, n_pix)
    out = np.empty((p.shape[0], n_pix, n_pix), np.float32)
    chunk = 64
    for s in range(0, p.shape[0], chunk):
        comp = moving_parts(grid, g, p[s : s + chunk])
        o = out[s : s + chunk]
        o[:] = grid.static
        flat = o.reshape(o.shape[0], -1)
        _paint(flat, grid.t_idx, comp["tract"] * grid.t_tex)
        _paint(flat, grid.v_idx, comp["velum"] * grid.v_tex)
        _paint(flat, grid.f_idx, comp["face"] * grid.f_tex)
        _paint(flat, grid.j_idx, comp["under"] * grid.j_tex)
    return out[0] if single else out


def static_occupancy(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Static tissue occupancy at reference points ``(x, y)`` (arrays of one shape), bilinear
    from a 0.5 mm map of the static image."""
    occ = pixel_grid(anat, _FINE).static_occ
    hi = _FINE - 1.000001
    px, py = to_pixels(anat, x, y, _FINE)
    px, py = np.clip(px, 0.0, hi), np.clip(py, 0.0, hi)
    x0, y0 = px.astype(np.intp), py.astype(np.intp)
    fx, fy = px - x0, py - y0
    top = occ[y0, x0] * (1 - fx) + occ[y0, x0 + 1] * fx
    bottom = occ[y0 + 1, x0] * (1 - fx) + occ[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy
