"""Variable-density spiral-out trajectories like the USC 13-interleaf real-time sequence.

Units: k-space in cycles/pixel of the reconstruction grid (|k| <= 0.5), as stored in the
ISMRMRD ``traj`` rows of the USC raw files; ``to_radians`` converts to finufft's [-pi, pi).
"""

from __future__ import annotations

import numpy as np

USC_INTERLEAVES = 13
USC_SAMPLES = 630
USC_MATRIX = 84


def vd_spiral(
    n_interleaves: int = USC_INTERLEAVES,
    n_samples: int = USC_SAMPLES,
    matrix: int = USC_MATRIX,
    *,
    kmax: float = 0.5,
    centre_density: float = 1.6,
    edge_density: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Design a variable-density spiral-out and its density compensation.

    The radial distance between neighbouring turns of all interleaves together is
    ``1 / (matrix * density(r))`` cycles/pixel, with the density falling linearly from
    ``centre_density`` at the centre to ``edge_density`` at ``kmax`` (1.0 = Nyquist for a
    ``matrix``-pixel field of view). Samples are spaced as a gradient-limited readout:
    closely near the centre (slew-limited start), evenly in arc length further out.

    Args:
        n_interleaves: number of interleaves (arms); arm ``a`` is arm 0 rotated by
            ``2 pi a / n_interleaves``.
        n_samples: samples per arm.
        matrix: image matrix size that the Nyquist criterion refers to.
        kmax: largest |k| in cycles/pixel; the last sample of every arm has exactly this.
        centre_density, edge_density: sampling density relative to Nyquist.

    Returns:
        traj: (A, S, 2) float64 kx, ky in cycles/pixel.
        dcf: (S,) float64 density compensation, 0 at the centre, max 1, the same for every arm.
    """
    if n_interleaves < 1 or n_samples < 2 or matrix < 2:
        raise ValueError("n_interleaves >= 1, n_samples >= 2 and matrix >= 2 are required")
    # Integrate dr/dtheta on a fine grid of the polar angle: one arm advances
    # n_interleaves times the all-arm turn spacing per 2 pi.
    # Solve for r(theta) with fixed-step integration until kmax is reached.
    step = 2 * np.pi / 4000
    rs, ths = [0.0], [0.0]
    while rs[-1] < kmax:
        frac = rs[-1] / kmax
        density = centre_density + (edge_density - centre_density) * frac
        drdth = n_interleaves / (matrix * density) / (2 * np.pi)
        rs.append(rs[-1] + drdth * step)
        ths.append(ths[-1] + step)
    rs_arr = np.asarray(rs)
    th_arr = np.asarray(ths)
    rs_arr *= kmax / rs_arr[-1]
    # Arc length along the fine curve, then a readout parameterization: the speed
    # (arc length per sample) ramps up from the centre like a slew-limited gradient.
    xy = rs_arr * np.exp(1j * th_arr)
    seg = np.abs(np.diff(xy))
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, 1.0, n_samples)
    ramp = 0.08
    speed = np.minimum(1.0, np.sqrt(np.maximum(t, 1e-12) / ramp))
    s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(t))])
    s *= arc[-1] / s[-1]
    r_s = np.interp(s, arc, rs_arr)
    th_s = np.interp(s, arc, th_arr)
    arm0 = r_s * np.exp(1j * th_s)
    rot = np.exp(2j * np.pi * np.arange(n_interleaves) / n_interleaves)
    arms = rot[:, None] * arm0[None, :]
    traj = np.stack([arms.real, arms.imag], axis=-1)
    # Density compensation: each sample covers |k| * d|k| * (2 pi / A) of k-space area
    # (see the derivation in the module docs); 0 at the centre, normalized to max 1.
    dr = np.gradient(r_s)
    dcf = np.abs(r_s * dr)
    dcf /= dcf.max()
    return traj, dcf


def to_radians(traj: np.ndarray) -> np.ndarray:
    """Convert cycles/pixel to radians/pixel in [-pi, pi) (finufft's convention)."""
    rad = np.asarray(traj, dtype=np.float64) * (2 * np.pi)
    return np.where(rad >= np.pi, rad - 2 * np.pi, rad)


def interleaf_order(seed: int = 1513, n_interleaves: int = USC_INTERLEAVES) -> np.ndarray:
    """A fixed non-identity acquisition order of the interleaves (period ``n_interleaves``).

    The USC scans acquire the 13 interleaves in a fixed permuted order (one file starts
    12, 3, 10, 0, ...); the default here starts the same way.
    """
    order = [12, 3, 10, 0] if n_interleaves == USC_INTERLEAVES else []
    rest = [i for i in range(n_interleaves) if i not in order]
    rng = np.random.default_rng(seed)
    rng.shuffle(rest)
    out = np.asarray(order + rest, dtype=np.int64)
    if n_interleaves > 1 and np.all(out == np.arange(n_interleaves)):
        out = np.roll(out, 1)
    return out
