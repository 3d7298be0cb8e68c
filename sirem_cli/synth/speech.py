"""Speech audio synthesized from the articulatory trajectory through the vocal-tract geometry.

Every 5 ms control frame, the trajectory gives the area function, tract length and
velopharyngeal port of :func:`sirem_cli.synth.airway.tract_geometry` (the geometry of the
images), and the frame's sound is filtered accordingly:

- *tract*: a lossless Kelly-Lochbaum tube of ``N = round(sample_rate / 1000)`` sections (one
  sample round trip each, about 17.5 cm at 20 kHz) with partly reflecting glottis and lips; its
  transfer function is an all-pole polynomial built from the reflection coefficients of the
  area function, evaluated on a frequency axis stretched by the actual tract length (so
  protruding the lips or a longer pharynx lowers every formant);
- *nasal coupling*: when the velum opens, part of the flow goes through a fixed nasal tract
  (resonances near 250, 1000, 2200, 3300 Hz); mixing the two complex responses creates the
  nasal antiresonances, and with the mouth closed (m, n, ng) the oral cavity behind the
  closure adds a zero at its quarter-wave frequency;
- *sources*: glottal pulses (f0 from the speaker's mean with declination over each breath
  group, pitch accents on stressed vowels, drift and jitter; shimmer; spectral tilt), aspiration
  noise when the glottis is open (h, voiceless stops and fricatives), frication noise where
  the area function has a narrow constriction (amplitude from the constriction area, spectrum
  from the cavity in front of it), pressure build-up behind closures released as bursts, a
  low-frequency voice bar during voiced closures, and silence in pauses (no drive).

Filtering is done frame by frame in the frequency domain (windowed overlap-add, 50 %
overlap, 10 hops of room for the ringing), which is fast and lets every frame have its own
filter. Lip radiation is a first difference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter

from sirem_cli.errors import InputError
from sirem_cli.synth.airway import tract_geometry
from sirem_cli.synth.anatomy import Anatomy
from sirem_cli.synth.articulation import articulate
from sirem_cli.synth.lexicon import PHONES, Utterance, phone_base

SOUND_SPEED_CM_S = 35000.0
CONTROL_HOP_S = 0.005
_R_GLOTTIS = 0.92
_R_LIPS = 0.88
_A_MIN_TUBE = 0.12  # cm^2, floor of the areas seen by the tube (closures handled separately)
_NASAL_FORMANTS = ((260.0, 120.0), (1000.0, 220.0), (2250.0, 320.0), (3300.0, 420.0))

ArticulateFn = Callable[[Utterance, np.ndarray, np.random.Generator], np.ndarray]


def _tube_polynomial(areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All-pole denominator and gain of a Kelly-Lochbaum tube.

    Args:
        areas: (K, N) section areas, glottis to lips (> 0).

    Returns:
        den: (K, N + 1) coefficients of D(z) in powers of z^-1; the volume-velocity transfer
            function lips/glottis is ``gain * z^(-N/2) / D(z)``.
        gain: (K,) real gain.
    """
    k, n = areas.shape
    r = (areas[:, 1:] - areas[:, :-1]) / (areas[:, 1:] + areas[:, :-1])  # (K, N-1)
    p = np.zeros((k, n + 1))
    q = np.zeros((k, n + 1))
    p[:, 0] = 1.0
    q[:, 1] = -_R_LIPS
    for j in range(n - 2, -1, -1):  # junctions from the lips back to the glottis
        rj = r[:, j : j + 1]
        p_new = p - rj * q
        q_new = np.zeros_like(q)
        q_new[:, 1:] = (q - rj * p)[:, :-1]
        p, q = p_new, q_new
    den = p - _R_GLOTTIS * q
    gain = 0.5 * (1 + _R_GLOTTIS) * (1 + _R_LIPS) * np.prod(1 + r, axis=1)
    return den, gain


def _resonators(freqs: np.ndarray, formants, sample_rate: float) -> np.ndarray:
    """Complex response of a cascade of unity-DC-gain resonators at ``freqs`` (Hz)."""
    z1 = np.exp(-2j * np.pi * freqs / sample_rate)
    h = np.ones(freqs.shape, complex)
    for f, bw in formants:
        rr = np.exp(-np.pi * bw / sample_rate)
        c = 2 * rr * np.cos(2 * np.pi * f / sample_rate)
        h *= (1 - c + rr * rr) / (1 - c * z1 + rr * rr * z1 * z1)
    return h


def _phone_controls(utt: Utterance, t: np.ndarray) -> dict[str, np.ndarray]:
    """Drive, voicing and glottal abduction targets (piecewise constant) at times ``t``."""
    drive = np.zeros(t.shape)
    voice = np.zeros(t.shape)
    abd = np.zeros(t.shape)
    for iv in utt.phones:
        base = phone_base(iv.label)
        if base == "":
            continue
        spec = PHONES[base]
        inside = (t >= iv.start) & (t < iv.end)
        drive[inside] = 1.0
        if spec.voiced:
            voice[inside] = 1.0
        else:
            if spec.kind == "stop":  # open the glottis late, keep it open after the release
                sel = (t >= iv.start + 0.3 * (iv.end - iv.start)) & (t < iv.end + 0.045)
            else:
                sel = (t >= iv.start - 0.01) & (t < iv.end)
            abd[sel] = 1.0
            drive[(t >= iv.end) & (t < iv.end + 0.045) & (drive == 0)] = 1.0
    return {"drive": drive, "voice": voice, "abd": abd}


def _f0_contour(
    utt: Utterance, t: np.ndarray, f0_mean: float, rng: np.random.Generator
) -> np.ndarray:
    """f0 (Hz) at times t: declination per breath group, accents, drift, jitter."""
    logf = np.zeros(t.shape)
    # breath groups: stretches between silences of at least 150 ms
    groups, start, end = [], None, None
    for iv in utt.phones:
        if iv.label == "" and iv.end - iv.start >= 0.15:
            if start is not None:
                groups.append((start, end))
                start = None
            continue
        if start is None:
            start = iv.start
        end = iv.end
    if start is not None:
        groups.append((start, end))
    for g0, g1 in groups:
        sel = (t >= g0 - 0.05) & (t < g1 + 0.05)
        frac = np.clip((t[sel] - g0) / max(g1 - g0, 1e-3), 0, 1)
        logf[sel] += 0.10 - 0.22 * frac + float(rng.normal(0, 0.03))
    for iv in utt.phones:
        if iv.label.endswith("1") and PHONES[phone_base(iv.label)].is_vowel:
            c, w = 0.5 * (iv.start + iv.end), 0.6 * (iv.end - iv.start) + 0.02
            logf += float(rng.uniform(0.04, 0.10)) * np.exp(-0.5 * ((t - c) / w) ** 2)
    fr = rng.uniform(0.2, 0.8, 2)
    ph = rng.uniform(0, 2 * np.pi, 2)
    logf += 0.025 * np.sin(2 * np.pi * fr[:, None] * t[None] + ph[:, None]).sum(0)
    logf += rng.normal(0.0, 0.006, t.shape)  # jitter (one value per 5 ms frame)
    return f0_mean * np.exp(logf)


def _turbulence(area: np.ndarray) -> np.ndarray:
    """Relative turbulence noise strength of a constriction of ``area`` cm^2 (0 when closed)."""
    a0 = 0.08
    x = np.clip(area / a0, 0, None)
    return x**3 * np.exp(3 * (1 - x))


def _pulses(
    f0: np.ndarray, amp: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Glottal pulse train (impulses with shimmer) at sample-rate f0 (Hz), amplitude amp."""
    phase = np.cumsum(f0 / sample_rate)
    idx = np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1
    out = np.zeros(f0.shape)
    out[idx] = amp[idx] * np.exp(rng.normal(0.0, 0.06, idx.size))
    return out


def synthesize_audio(
    anat: Anatomy,
    utt: Utterance,
    rng: np.random.Generator,
    *,
    sample_rate: int = 20000,
    articulate_fn: ArticulateFn = articulate,
) -> np.ndarray:
    """Speech audio of ``utt`` spoken by the vocal tract of ``anat``.

    The articulatory trajectory is ``articulate_fn(utt, frame_times, rng)`` (frames every
    5 ms); all noise is then drawn from ``rng``. With the default ``articulate``, passing a
    fresh ``np.random.default_rng(s)`` gives the trajectory of ``articulate(utt, t,
    np.random.default_rng(s))``. To pair the audio with images made with one trajectory seed
    and use an independent noise seed, pass ``articulate_fn=lambda u, t, _rng: articulate(u, t,
    np.random.default_rng(traj_seed))``.

    Args:
        anat: the speaker (tract geometry, mean f0).
        utt: the utterance.
        rng: generator (see above); deterministic for its state.
        sample_rate: output rate in Hz (8 kHz or more).
        articulate_fn: ``(utt, times (T,), rng) -> (T, P)`` parameters.

    Returns:
        float32 (round(utt.duration * sample_rate),) waveform in [-1, 1], peak level about
        0.5 for speech, near-silent pauses.

    Raises:
        InputError: sample_rate below 8000.
    """
    sr = int(sample_rate)
    if sr < 8000:
        raise InputError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    n_out = round(utt.duration * sr)
    hop = round(CONTROL_HOP_S * sr)
    n_frames = n_out // hop + 2
    t_frames = np.arange(n_frames) * hop / sr
    params = np.asarray(articulate_fn(utt, t_frames, rng), dtype=np.float64)

    n_tube = max(8, round(sr / 1000.0))
    len0 = n_tube * SOUND_SPEED_CM_S / (2 * sr)  # cm, the tube's natural length
    geo = tract_geometry(anat, params, n_sections=n_tube)
    areas = geo.areas
    n_sec = areas.shape[1]
    warp = geo.length_cm / len0

    # --- control signals per frame ---
    ctl = _phone_controls(utt, t_frames)
    fr = CONTROL_HOP_S
    drive = np.clip(gaussian_filter1d(ctl["drive"], 0.015 / fr), 0, 1)
    voice = np.clip(gaussian_filter1d(ctl["voice"], 0.010 / fr), 0, 1)
    abd = np.clip(gaussian_filter1d(ctl["abd"], 0.008 / fr), 0, 1)
    oral = areas[:, int(0.45 * n_sec) :]
    k_c = np.argmin(oral, axis=1) + int(0.45 * n_sec)
    a_c = oral.min(axis=1)
    g_oral = a_c**2 / (a_c**2 + 0.03**2)
    closed = (a_c < 0.01) & (drive > 0.3)
    # pressure behind a closure, released as a burst
    press = np.zeros(n_frames)
    up, down = 1 - np.exp(-fr / 0.02), 1 - np.exp(-fr / 0.008)
    for i in range(1, n_frames):
        prev = press[i - 1]
        press[i] = prev + up * (1 - prev) if closed[i] else prev * (1 - down)
    burst = np.where(closed, 0.0, press)
    sec_len = geo.length_cm / n_sec
    # front cavity excited by the noise; sibilant noise arises at the incisors, a little in
    # front of the constriction, so only part of the distance to the lips counts
    l_front = 0.6 * (n_sec - k_c - 0.5) * sec_len + 0.4
    f_front = np.clip(SOUND_SPEED_CM_S / (4 * l_front), 800.0, 0.45 * sr)
    sibilance = 0.12 + 0.88 / (1 + np.exp((f_front - 7000.0) / 700.0))
    fric_amp = drive * (_turbulence(a_c) + 2.5 * burst) * (1 - 0.5 * voice) * sibilance
    asp_amp = 0.025 * drive * abd
    av = drive * voice * (1 - abd) ** 2
    # nasal coupling and the oral side branch of nasal consonants
    k_v = int(0.42 * n_sec)
    a_ref = np.maximum(areas[:, k_v - 2 : k_v + 3].mean(axis=1), 0.3)
    c_nas = geo.port_cm2 / (geo.port_cm2 + a_ref)
    l_branch = np.clip((k_c - k_v + 0.5) * sec_len, 1.5, None)
    f_zero = np.clip(SOUND_SPEED_CM_S / (4 * l_branch), 300.0, 0.45 * sr)

    # --- sources at the sample rate ---
    n_src = n_frames * hop + hop
    ts = np.arange(n_src) / sr
    f0 = np.interp(
        ts,
        t_frames,
        _f0_contour(utt, t_frames, anat.f0_hz * float(np.exp(rng.normal(0, 0.04))), rng),
    )
    glottal = _pulses(f0, np.interp(ts, t_frames, av), sr, rng)
    a = np.exp(-2 * np.pi * 120.0 / sr)
    glottal = lfilter([1 - a], [1, -a], lfilter([1 - a], [1, -a], glottal)) * (sr / 100.0)
    noise_a = rng.standard_normal(n_src)
    noise_f = rng.standard_normal(n_src)
    glottal = glottal + np.interp(ts, t_frames, asp_amp) * noise_a
    fric = np.interp(ts, t_frames, fric_amp) * noise_f

    # --- frame-wise filtering (windowed overlap-add) ---
    nfft = 1 << int(np.ceil(np.log2(10 * hop)))
    nb = int(np.ceil(nfft / hop))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    n_d = 4 * nfft
    win = np.hanning(2 * hop + 1)[:-1]
    h_nas = _resonators(freqs[None] / anat.scale, _NASAL_FORMANTS, sr)
    # wall and radiation losses grow with frequency: about -12 dB/octave above 3 kHz
    tilt = 1.0 / np.sqrt(1.0 + (freqs[None] / 3000.0) ** 4)
    pad_g = np.concatenate([np.zeros(hop), glottal])
    pad_f = np.concatenate([np.zeros(hop), fric])
    acc = np.zeros((n_frames + nb + 2, hop))
    chunk = 1024
    for s0 in range(0, n_frames, chunk):
        sl = slice(s0, min(n_frames, s0 + chunk))
        kk = np.arange(sl.start, sl.stop)
        seg_idx = kk[:, None] * hop + np.arange(2 * hop)[None]
        seg_g = pad_g[seg_idx] * win
        seg_f = pad_f[seg_idx] * win
        den, gain = _tube_polynomial(np.maximum(areas[sl], _A_MIN_TUBE))
        d_hat = np.fft.rfft(den, n=n_d, axis=1)
        pos = freqs[None] * warp[sl, None] * n_d / sr
        pos = np.mod(pos, n_d)
        mirror = pos > n_d / 2
        pos = np.where(mirror, n_d - pos, pos)
        i0 = np.minimum(np.floor(pos).astype(int), n_d // 2 - 1)
        fw = pos - i0
        d_at = (
            np.take_along_axis(d_hat, i0, 1) * (1 - fw) + np.take_along_axis(d_hat, i0 + 1, 1) * fw
        )
        d_at = np.where(mirror, np.conj(d_at), d_at)
        h_oral = gain[:, None] / d_at
        zr = np.exp(-np.pi * 150.0 / sr)
        zc = 2 * zr * np.cos(2 * np.pi * f_zero[sl, None] / sr)
        z1 = np.exp(-2j * np.pi * freqs[None] / sr)
        zero = (1 - zc * z1 + zr * zr * z1 * z1) / (1 - zc + zr * zr)
        go = g_oral[sl, None]
        cn = c_nas[sl, None]
        h = (1 - cn) * go * h_oral + cn * h_nas * (go + (1 - go) * zero)
        bar = 0.04 * (1 - go) * _resonators(freqs[None], ((180.0, 150.0),), sr)
        h = (h + bar) * tilt
        ff = f_front[sl, None]
        hf = 1.0 / np.sqrt((1 - (freqs[None] / ff) ** 2) ** 2 + (freqs[None] / (0.25 * ff)) ** 2)
        hf = hf * (freqs[None] / (freqs[None] + 600.0))
        y = np.fft.rfft(seg_g, n=nfft, axis=1) * h + np.fft.rfft(seg_f, n=nfft, axis=1) * hf
        blk = np.fft.irfft(y, n=nfft, axis=1)
        blk = np.pad(blk, ((0, 0), (0, nb * hop - nfft)))
        for j in range(nb):
            acc[kk + j] += blk[:, j * hop : (j + 1) * hop]
    out = acc.ravel()[hop : hop + n_out]
    out = lfilter([1.0, -1.0], [1.0], out)  # lip radiation
    out = out + 1e-4 * np.std(out) * rng.standard_normal(out.size)
    if out.size and np.max(np.abs(out)) > 0:
        out = out * min(0.5 / np.percentile(np.abs(out), 99.9), 0.95 / np.max(np.abs(out)))
    return np.clip(out, -1.0, 1.0).astype(np.float32)
