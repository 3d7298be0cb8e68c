"""Continuous-time articulatory trajectories from a phone alignment.

Seven normalized parameters (``PARAM_NAMES``), roughly in [-1, 1] (closures use virtual
targets slightly beyond -1 or 1, as real articulators aim past the point of contact):

==================  ======================================================================
``jaw``             jaw opening: -1 closed (teeth together), +1 wide open
``tongue_body_x``   tongue body position: -1 back (pharynx), +1 front (towards the lips)
``tongue_body_y``   tongue body height: -1 low, +1 high (dorsum to the palate/velum)
``tongue_tip``      tongue tip height: -1 low behind the lower teeth, +1 at the alveolar ridge
``lip_aperture``    lip opening: -1 and below lips pressed together, +1 wide open
``lip_protrusion``  -1 spread, +1 rounded and protruded
``velum``           -1 raised (velopharyngeal port closed), +1 lowered (port open)
==================  ======================================================================

The model (a target-blending "dominance" model followed by critically damped tracking):

1. every phone holds a target value and a weight per parameter (:mod:`.lexicon`); silence
   holds the rest posture (jaw nearly closed, lips lightly closed, velum lowered for nasal
   breathing). A phone's influence is 1 inside its interval and falls off as a Gaussian of the
   distance outside it (wider for vowels, and wider before nasals for the velum, so the velum
   lowers ahead of a nasal), times its weight; the target at time t is the influence-weighted
   mean of the targets: neighbouring phones blend (coarticulation) and critical articulators
   win;
2. each parameter tracks that target through two cascaded first-order lags (a critically
   damped second-order system, time constants 10-25 ms), evaluated 2 tau early so that the
   movement is centred on the phone;
3. per-utterance variation comes from the generator: per-token target jitter, per-utterance
   offsets, time-constant scaling and a slow drift.

The trajectory is computed on a fixed 1 ms grid that depends only on the utterance, then
interpolated with a cubic spline (C2), so any sampling of ``times`` sees one continuous
trajectory.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import lfilter, lfilter_zi

from sirem_cli.errors import ShapeError
from sirem_cli.synth.lexicon import PHONES, Utterance, phone_base

#: The articulatory parameters, in column order of :func:`articulate`'s output.
PARAM_NAMES: tuple[str, ...] = (
    "jaw",
    "tongue_body_x",
    "tongue_body_y",
    "tongue_tip",
    "lip_aperture",
    "lip_protrusion",
    "velum",
)
N_PARAMS = len(PARAM_NAMES)
_INDEX = {name: i for i, name in enumerate(PARAM_NAMES)}

#: Rest posture (silence, breathing).
REST: dict[str, float] = {
    "jaw": -0.55,
    "tongue_body_x": 0.0,
    "tongue_body_y": -0.15,
    "tongue_tip": -0.45,
    "lip_aperture": -0.5,
    "lip_protrusion": 0.0,
    "velum": 0.6,
}
_REST_WEIGHT = 0.8

#: Neutral (schwa-like) value a free parameter is weakly pulled towards.
NEUTRAL: dict[str, float] = {
    "jaw": 0.1,
    "tongue_body_x": 0.0,
    "tongue_body_y": -0.1,
    "tongue_tip": -0.4,
    "lip_aperture": 0.3,
    "lip_protrusion": 0.0,
    "velum": -0.6,
}
_FREE_WEIGHT = 0.03

#: Tracking time constants (seconds) of the critically damped second-order response.
TAU_S: dict[str, float] = {
    "jaw": 0.022,
    "tongue_body_x": 0.020,
    "tongue_body_y": 0.018,
    "tongue_tip": 0.011,
    "lip_aperture": 0.010,
    "lip_protrusion": 0.025,
    "velum": 0.025,
}

_DT = 0.001  # internal grid step (s)
_PAD = 0.3  # grid margin before 0 and after the end (s)


def _spread(kind_is_vowel: bool, silence: bool) -> float:
    """Gaussian fall-off (s) of a phone's influence outside its interval."""
    if silence:
        return 0.07
    return 0.055 if kind_is_vowel else 0.03


def _segments(
    utt: Utterance, sub: np.random.Generator
) -> list[tuple[float, float, np.ndarray, np.ndarray, float, float, bool]]:
    """Target segments: (start, end, values (P,), weights (P,), spread_l, spread_r, nasal)."""
    segs = []
    for iv in utt.phones:
        base = phone_base(iv.label)
        if base == "":
            vals = np.array([REST[n] for n in PARAM_NAMES])
            wts = np.full(N_PARAMS, _REST_WEIGHT)
            jitter = sub.normal(0.0, 0.03, N_PARAMS)
            s = _spread(False, True)
            segs.append((iv.start, iv.end, vals + jitter, wts, s, s, False))
            continue
        spec = PHONES[base]
        parts = [(spec.targets, iv.start, iv.start + spec.split * (iv.end - iv.start))]
        if spec.end_targets:
            parts.append((spec.end_targets, parts[0][2], iv.end))
        for targets, start, end in parts:
            vals = np.array([NEUTRAL[n] for n in PARAM_NAMES])
            wts = np.full(N_PARAMS, _FREE_WEIGHT)
            for name, value, weight in targets:
                vals[_INDEX[name]] = value
                wts[_INDEX[name]] = weight
            # Token-to-token variability: smaller for critical articulators (closures stay closed).
            sd = np.where(wts >= 3.0, 0.04, 0.08)
            jitter = sub.normal(0.0, 1.0, N_PARAMS) * sd
            s = _spread(spec.is_vowel, False)
            segs.append((start, end, vals + jitter, wts, s, s, spec.nasal))
    return segs


def _target_grid(utt: Utterance, grid: np.ndarray, sub: np.random.Generator) -> np.ndarray:
    """Blended target (G, P) on ``grid``."""
    num = np.zeros((grid.size, N_PARAMS))
    den = np.zeros((grid.size, N_PARAMS))
    vel = _INDEX["velum"]
    t0 = grid[0]
    for start, end, vals, wts, s_l, s_r, nasal in _segments(utt, sub):
        # Per-parameter left/right spreads; the velum of a nasal reaches far ahead.
        sl = np.full(N_PARAMS, s_l)
        sr = np.full(N_PARAMS, s_r)
        if nasal:
            sl[vel], sr[vel] = 0.13, 0.05
        reach = 3.5 * max(sl.max(), sr.max())
        i0 = max(0, int((start - reach - t0) / _DT))
        i1 = min(grid.size, int((end + reach - t0) / _DT) + 2)
        t = grid[i0:i1, None]
        before = np.maximum(start - t, 0.0) / sl
        after = np.maximum(t - end, 0.0) / sr
        dom = wts * np.exp(-(before**2) - after**2)
        num[i0:i1] += dom * vals
        den[i0:i1] += dom
    # A faint rest-posture prior keeps the blend defined far from any phone.
    rest = np.array([REST[n] for n in PARAM_NAMES])
    return (num + 1e-6 * rest) / (den + 1e-6)


class _Trajectory:
    """The continuous trajectory of one utterance (a cubic spline over a 1 ms grid)."""

    def __init__(self, utt: Utterance, sub: np.random.Generator) -> None:
        n = int(np.ceil((utt.duration + 2 * _PAD) / _DT)) + 1
        grid = -_PAD + _DT * np.arange(n)
        # Per-utterance draws (fixed order, counts depend only on the utterance).
        offsets = sub.normal(0.0, 0.04, N_PARAMS)
        tau_scale = sub.uniform(0.85, 1.15, N_PARAMS)
        drift_f = sub.uniform(0.1, 0.6, (3, N_PARAMS))
        drift_ph = sub.uniform(0.0, 2 * np.pi, (3, N_PARAMS))
        drift_a = sub.uniform(0.0, 0.03, (3, N_PARAMS))
        target = _target_grid(utt, grid, sub)
        target += offsets
        target += np.einsum(
            "kp,gkp->gp", drift_a, np.sin(2 * np.pi * drift_f * grid[:, None, None] + drift_ph)
        )
        out = np.empty_like(target)
        for j, name in enumerate(PARAM_NAMES):
            tau = TAU_S[name] * tau_scale[j]
            lead = round(2 * tau / _DT)
            g = np.concatenate([target[lead:, j], np.repeat(target[-1, j], lead)])
            a = np.exp(-_DT / tau)
            b, den = [1 - a], [1.0, -a]
            zi = lfilter_zi(b, den) * g[0]
            y, _ = lfilter(b, den, g, zi=zi)
            y, _ = lfilter(b, den, y, zi=lfilter_zi(b, den) * g[0])
            out[:, j] = y
        self.t_min, self.t_max = float(grid[0]), float(grid[-1])
        self._spline = CubicSpline(grid, out, axis=0)

    def __call__(self, times: np.ndarray) -> np.ndarray:
        return self._spline(np.clip(times, self.t_min, self.t_max))


def articulate(utt: Utterance, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample the articulatory trajectory of ``utt`` at ``times``.

    The trajectory is a function of the utterance and of ONE draw from ``rng`` (a 63-bit seed
    for a private generator that supplies all the per-utterance variation), never of ``times``.
    Calling this twice with fresh generators of the same seed, e.g.
    ``articulate(utt, arm_times, np.random.default_rng(s))`` and
    ``articulate(utt, frame_centres, np.random.default_rng(s))``, samples one continuous
    trajectory. Times outside ``[-0.3, duration + 0.3]`` s hold the end values.

    Args:
        utt: the utterance (phone tier drives the targets).
        times: (T,) float seconds, any order.
        rng: generator; exactly one value is drawn from it.

    Returns:
        (T, P) float64 parameters in :data:`PARAM_NAMES` order, normalized units (about
        [-1.4, 1.4]); smooth (C2 in time).

    Raises:
        ShapeError: ``times`` is not 1-D.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise ShapeError(f"times must be a 1-D array of seconds, got shape {times.shape}")
    sub = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    return _Trajectory(utt, sub)(times)
