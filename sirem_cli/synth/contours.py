"""The contours of the phantom: air-tissue boundaries of the articulators as polylines.

What the Annot-16 hand ground truth traces (:data:`CONTOUR_NAMES`), drawn from the geometry of
:mod:`.vocaltract`: the tongue surface along the gridlines and round its tip, the parts of the
outlines of the lips, chin, epiglottis, arytenoids and velum that face air (tested against the
tissue occupancy of the image), and the static hard palate and pharyngeal wall, all in pixel
coordinates of the image grid. :func:`contours` draws one frame; :func:`contours_batch` draws
many frames at once with the same arithmetic and the same results.
"""

from __future__ import annotations

import functools

import numpy as np

from sirem_cli.errors import ShapeError
from sirem_cli.synth.anatomy import Anatomy, to_pixels
from sirem_cli.synth.images import static_occupancy
from sirem_cli.synth.shapes import (
    Hull,
    Hulls,
    as_column,
    hull_outline,
    hull_pieces,
    hull_sdf,
    ragged,
    ray_at,
    rays_from_left,
    rays_from_top,
    sdf_at,
    sdf_consts,
)
from sirem_cli.synth.vocaltract import (
    Geometry,
    check_n,
    check_params,
    face_zone,
    geometry,
    jaw_zone,
)

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

_TIP_ARC = np.arctan2(-1.0, 0.0) - np.linspace(0, np.deg2rad(200), 18)  # tongue tip outline
_TIP_COS, _TIP_SIN = np.cos(_TIP_ARC), np.sin(_TIP_ARC)


def _pixels(anat: Anatomy, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Reference points ``(x, y)`` (M,) as (M, 2) ``(x, y)`` pixel coordinates of the n grid."""
    return np.stack(to_pixels(anat, x, y, n), 1)


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
    a_plus, _, a_minus, a_cap1 = hull_pieces(h1)
    b_plus, b_cap2, b_minus, _ = hull_pieces(h2)
    pieces = []
    for piece, other in (
        (a_plus, h2),
        (b_plus, h1),
        (b_cap2, h1),
        (b_minus, h1),
        (a_minus, h2),
        (a_cap1, h2),
    ):
        pieces.append(piece[hull_sdf(piece[:, 0], piece[:, 1], other) > 0.05])
    return np.concatenate(pieces)


def _outward(hull: Hull, pts: np.ndarray, eps: float = 0.05) -> np.ndarray:
    """Unit outward normals (K, 2) of a hull at outline points (gradient of its SDF)."""
    return np.stack(_outward_at(pts[:, 0], pts[:, 1], sdf_consts(hull), eps), 1)


def _outward_at(x, y, consts: tuple, eps: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_outward` of points ``(x, y)`` from capsule constants (:func:`sdf_consts`)."""
    gx = sdf_at(x + eps, y, consts) - sdf_at(x - eps, y, consts)
    gy = sdf_at(x, y + eps, consts) - sdf_at(x, y - eps, consts)
    nrm = np.maximum(np.hypot(gx, gy), 1e-12)
    return gx / nrm, gy / nrm


def _tissue_at(
    anat: Anatomy, g: Geometry, st: dict, pts: np.ndarray, w_low: np.ndarray | None = None
) -> np.ndarray:
    """Tissue occupancy (K,) of one frame (state of T = 1) at reference points (K, 2).

    ``w_low`` (U,) is the lower surface along the gridlines when already known.
    """
    x, y = pts[:, 0], pts[:, 1]
    occ = static_occupancy(anat, x, y)
    edge = 0.5
    inside, u, w, _ = g.tract_coords(x, y)
    uu = np.where(inside, u, 0.0)
    if w_low is None:
        w_t, w_f = g.lower(st)
        w_low = np.minimum(np.minimum(w_t, w_f), 1e4)[0]
    band = inside & (w >= g.interp_u(g.w_shallow, uu) - 1) & (w <= g.interp_u(g.w_deep, uu) + 1)
    tract = np.clip((w - g.interp_u(w_low, uu)) / edge + 0.5, 0, 1)
    occ = np.maximum(occ, np.where(band, np.nan_to_num(tract), 0.0))
    vel = np.minimum(
        hull_sdf(x, y, as_column(st["velum"]))[0], hull_sdf(x, y, as_column(st["velum2"]))[0]
    )
    occ = np.maximum(occ, np.clip(0.5 - vel / edge, 0, 1))
    front = face_zone(x, y)
    xf = np.minimum.reduce([rays_from_left(y, st[k])[0] for k in ("ul", "ll", "chin")])
    _, ub = rays_from_top(x, st["ul"])
    lt, _ = rays_from_top(x, st["ll"])
    ub = np.where(np.isfinite(ub[0]), ub[0], np.inf)
    chan = np.clip((y - ub) / edge + 0.5, 0, 1) * np.clip((lt[0] - y) / edge + 0.5, 0, 1)
    face = np.clip((x - xf) / edge + 0.5, 0, 1) * (1 - chan)
    occ = np.maximum(occ, np.where(front, face, 0.0))
    under = jaw_zone(x, y)
    _, skin = rays_from_top(x, st["chin"])
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
    p, single = check_params(params)
    if not single:
        raise ShapeError(f"contours takes the parameters of one frame (P,), got {p.shape}")
    check_n(n)
    g = geometry(anat)
    st = g.state(p)
    one = {k: tuple(np.asarray(v, float).ravel()[0] for v in h) for k, h in st.items()}
    out: dict[str, np.ndarray] = {}
    # tongue: surface along the gridlines where the tongue is the lower boundary, then the tip
    w_t, w_f = g.lower(st)
    w_t, w_f = w_t[0], w_f[0]
    sel = np.isfinite(w_t) & (w_t <= w_f) & (w_t <= g.w_lar)
    pts = np.stack([g.ax[sel] + g.dx[sel] * w_t[sel], g.ay[sel] + g.dy[sel] * w_t[sel]], 1)
    _, _, _, tx, ty, tr = one["tip"]
    tip = np.stack([tx + tr * _TIP_COS, ty + tr * _TIP_SIN], 1)
    tip = tip[hull_sdf(tip[:, 0], tip[:, 1], one["floor"]) > 0.3]
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
    loops = {k: hull_outline(h) for k, h in parts.items()}
    probes = np.concatenate([q + _outward(parts[k], q) for k, q in loops.items()])
    air = _tissue_at(anat, g, st, probes, np.minimum(np.minimum(w_t, w_f), 1e4)) < 0.5
    start = 0
    for name, q in loops.items():
        out[name] = _longest_run(q, air[start : start + len(q)])
        start += len(q)
    # velum: the outline of its two capsules outside the static tissue it hangs from
    loop = _velum_loop(one["velum"], one["velum2"])
    nrm = np.where(
        hull_sdf(loop[:, 0], loop[:, 1], one["velum"])[:, None]
        < hull_sdf(loop[:, 0], loop[:, 1], one["velum2"])[:, None],
        _outward(one["velum"], loop),
        _outward(one["velum2"], loop),
    )
    probes = loop + nrm
    out["velum"] = _longest_run(loop, static_occupancy(anat, probes[:, 0], probes[:, 1]) < 0.5)
    out["hard_palate"] = g.palate[1:]  # alveolar ridge to the posterior nasal spine
    out["pharyngeal_wall"] = g.pharyngeal_wall()
    return {k: _pixels(anat, out[k][:, 0], out[k][:, 1], int(n)) for k in CONTOUR_NAMES}


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


def _longest_runs(ok: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_longest_run` of consecutive closed loops of ``counts`` points (flat ``ok``).

    Returns:
        Per loop (first, length): the run is the loop's points ``first, first + 1, ...``
        (modulo the loop length), ``length`` of them.
    """
    counts = np.asarray(counts, np.intp)
    n = counts.size
    owner, pos, offs = ragged(counts)
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
    owner, pos, _ = ragged(length)
    return offs[owner] + (start[owner] + pos) % counts[owner]


def _probes(anat: Anatomy, g: Geometry, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The frame-independent part of :func:`_tissue_at` at points ``(x, y)`` (M,)."""
    reg_p, reg_b, reg_f, _, u, w = g.tract_uw(x, y)
    inside = reg_p | reg_b | reg_f
    uu = np.where(inside, u, 0.0)
    band = inside & (w >= g.interp_u(g.w_shallow, uu) - 1) & (w <= g.interp_u(g.w_deep, uu) + 1)
    uc = np.clip(uu, 0, g.U - 1 - 1e-9)  # g.interp_u, for the profile of each point's frame
    i0 = np.floor(uc).astype(int)
    return {
        "x": x,
        "y": y,
        "occ": static_occupancy(anat, x, y),
        "band": band,
        "w": w,
        "i0": i0,
        "f": uc - i0,
        "front": face_zone(x, y),
        "under": jaw_zone(x, y),
    }


def _tissue_flat(
    pr: dict[str, np.ndarray], hulls: dict[str, Hulls], fr: np.ndarray, w_low: np.ndarray
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
        xf = np.minimum.reduce([-50.0 + ray_at(-50.0, ys, 1.0, 0.0, *h)[0] for h in (ul, ll, chin)])
        ub = -50.0 + ray_at(xs, -50.0, 0.0, 1.0, *ul)[1]
        lt = -50.0 + ray_at(xs, -50.0, 0.0, 1.0, *ll)[0]
        ub = np.where(np.isfinite(ub), ub, np.inf)
        chan = np.clip((ys - ub) / edge + 0.5, 0, 1) * np.clip((lt - ys) / edge + 0.5, 0, 1)
        face = np.clip((xs - xf) / edge + 0.5, 0, 1) * (1 - chan)
        occ[i] = np.maximum(occ[i], face)
    i = np.flatnonzero(pr["under"])
    if i.size:
        xs, ys, fs = x[i], y[i], fr[i]
        skin = -50.0 + ray_at(xs, -50.0, 0.0, 1.0, *hulls["chin"].ray_at(fs))[1]
        skin = np.where(np.isfinite(skin), skin, -np.inf)
        occ[i] = np.maximum(occ[i], np.clip((skin - ys) / edge + 0.5, 0, 1))
    return occ


@functools.lru_cache(maxsize=32)
def _static_contour_parts(anat: Anatomy, n: int) -> dict[str, np.ndarray]:
    """What :func:`contours` draws the same in every frame (read-only arrays): the hard palate
    and the pharyngeal wall in pixels, and the outlines of the epiglottis and the arytenoids
    (reference mm) with their air probes and point counts."""
    g = geometry(anat)
    wall = g.pharyngeal_wall()
    pair = zip(g.epiglottis, g.arytenoid, strict=True)
    hulls = Hulls(tuple(np.array([float(a), float(b)]) for a, b in pair))
    x, y, item, _ = hulls.pieces()
    nx, ny = _outward_at(x, y, hulls.sdf_at(item))
    out = {
        "hard_palate": _pixels(anat, g.palate[1:, 0], g.palate[1:, 1], n),
        "pharyngeal_wall": _pixels(anat, wall[:, 0], wall[:, 1], n),
        "x": x,
        "y": y,
        "counts": np.bincount(item, minlength=2),
    }
    out.update({"probe_" + k: v for k, v in _probes(anat, g, x + nx, y + ny).items()})
    for a in out.values():
        a.setflags(write=False)
    return out


def _offsets(counts: np.ndarray) -> list[int]:
    """Start offsets of consecutive groups of ``counts`` items, and the total at the end."""
    return np.concatenate([[0], np.cumsum(counts)]).tolist()


def _contours_chunk(anat: Anatomy, p: np.ndarray, n: int) -> list[dict[str, np.ndarray]]:
    """:func:`contours` of the frames ``p`` (T, P) (see :func:`contours_batch`)."""
    g = geometry(anat)
    nt = p.shape[0]
    st = g.state(p)
    hulls = {k: Hulls(tuple(np.broadcast_to(v, (nt,)) for v in h)) for k, h in st.items()}
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
    tongue = _pixels(
        anat,
        np.concatenate([g.ax + g.dx * wt, tip_x], 1)[mask],
        np.concatenate([g.ay + g.dy * wt, tip_y], 1)[mask],
        n,
    )
    t_off = _offsets(mask.sum(1))

    # lips and chin (loop 3 t + j of frame t), then the epiglottis and the arytenoids (loop
    # 3 T + 2 t + j, the same outline every frame): the runs of the outlines that face air
    stat = _static_contour_parts(anat, n)
    lips = Hulls(
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
    parts = _pixels(
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
    ok = static_occupancy(anat, vx + nx, vy + ny) < 0.5
    v_counts = np.bincount(vf, minlength=nt)
    idx = _run_index(v_counts, *(runs := _longest_runs(ok, v_counts)))
    velum = _pixels(anat, vx[idx], vy[idx], n)
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
    p, _ = check_params(p)
    n = check_n(n)
    out: list[dict[str, np.ndarray]] = []
    for s in range(0, p.shape[0], _BATCH):
        out.extend(_contours_chunk(anat, p[s : s + _BATCH], n))
    return out
