"""Which articulator each pixel of the phantom belongs to: the label rasters.

Labels come from the same geometry and the same per-frame occupancies as the image of
:mod:`.images`: a pixel is labelled where its tissue occupancy is at least one half.
"""

from __future__ import annotations

import numpy as np

from sirem_cli.synth.anatomy import Anatomy
from sirem_cli.synth.images import Grid, moving_parts, pixel_grid
from sirem_cli.synth.shapes import as_column, hull_sdf
from sirem_cli.synth.vocaltract import check_n, check_params, geometry

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
_LABEL = {v: k for k, v in ARTICULATORS.items()}


def _static_labels(grid: Grid) -> np.ndarray:
    """Labels (N * N,) of the tissue that does not move: the named static structures of the
    grid, "other" elsewhere in tissue, 0 in air."""
    lab = np.where(grid.tissue, _LABEL["other"], 0).astype(np.uint8)
    lab[grid.tissue & grid.wall_zone] = _LABEL["pharyngeal_wall"]
    lab[grid.tissue & grid.palate_band] = _LABEL["hard_palate"]
    lab[grid.epiglottis] = _LABEL["epiglottis"]
    return lab.ravel()


def label_raster(anat: Anatomy, params: np.ndarray, n: int = 84) -> np.ndarray:
    """Articulator label of every pixel, from the same geometry as :func:`.images.render`.

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
    p, single = check_params(params)
    n_pix = check_n(n)
    g = geometry(anat)
    grid = pixel_grid(anat, n_pix)
    out = np.empty((p.shape[0], n_pix * n_pix), np.uint8)
    static = _static_labels(grid)
    for s in range(0, p.shape[0], 64):
        comp = moving_parts(grid, g, p[s : s + 64])
        st = comp["state"]
        o = out[s : s + 64]
        o[:] = static
        # tract: tongue where the tongue is the lower boundary of that gridline, else jaw
        ui = np.clip(np.rint(grid.t_u).astype(int), 0, g.U - 1)
        is_tongue = comp["w_t"][:, ui] <= comp["w_f"][:, ui]
        lab = np.where(is_tongue, _LABEL["tongue"], _LABEL["jaw"]).astype(np.uint8)
        sel = comp["tract"] >= 0.5
        _assign(o, grid.t_idx, sel, lab)
        _assign(o, grid.v_idx, comp["velum"] >= 0.5, _LABEL["velum"])
        fx, fy = grid.f_x[None], grid.f_y[None]
        lab = np.where(
            hull_sdf(fx, fy, as_column(st["ul"])) <= 0.0,
            _LABEL["upper_lip"],
            np.where(
                hull_sdf(fx, fy, as_column(st["ll"])) <= 0.0, _LABEL["lower_lip"], _LABEL["jaw"]
            ),
        ).astype(np.uint8)
        _assign(o, grid.f_idx, comp["face"] >= 0.5, lab)
        _assign(o, grid.j_idx, comp["under"] >= 0.5, _LABEL["jaw"])
    out = out.reshape(p.shape[0], n_pix, n_pix)
    return out[0] if single else out


def _assign(o: np.ndarray, idx: np.ndarray, sel: np.ndarray, lab) -> None:
    """Set the labels ``o[:, idx]`` (T, N * N) to ``lab`` where ``sel`` (T, len(idx))."""
    cur = o[:, idx]
    lab = np.broadcast_to(np.asarray(lab, np.uint8), sel.shape)
    o[:, idx] = np.where(sel, lab, cur)
