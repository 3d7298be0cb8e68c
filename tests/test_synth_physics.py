"""Physics of the synthetic speech-rtMRI corpus: utterances, articulation, phantom, audio."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.synth.airway import area_function, tract_geometry
from sirem_cli.synth.anatomy import Anatomy, anatomy_for_subject
from sirem_cli.synth.articulation import PARAM_NAMES, REST, articulate
from sirem_cli.synth.contours import CONTOUR_NAMES, contours
from sirem_cli.synth.images import render
from sirem_cli.synth.labels import ARTICULATORS, MOVING_ARTICULATORS, label_raster
from sirem_cli.synth.lexicon import (
    LEXICON,
    PHONES,
    Interval,
    Utterance,
    phone_base,
    sample_utterance,
)
from sirem_cli.synth.speech import synthesize_audio

TR = 0.006004
P = {name: i for i, name in enumerate(PARAM_NAMES)}
LABEL = {v: k for k, v in ARTICULATORS.items()}


def make_utterance(words: list[str], pause_after: tuple[int, ...] = ()) -> Utterance:
    """A deterministic utterance: vowels 140 ms, consonants 80 ms, 0.4 s silence at the ends."""
    t = 0.4
    w_iv, p_iv = [Interval(0.0, t, "")], [Interval(0.0, t, "")]
    for i, word in enumerate(words):
        start = t
        for ph in LEXICON[word]:
            d = 0.14 if PHONES[phone_base(ph)].is_vowel else 0.08
            p_iv.append(Interval(t, t + d, ph))
            t += d
        w_iv.append(Interval(start, t, word))
        if i in pause_after:
            w_iv.append(Interval(t, t + 0.6, ""))
            p_iv.append(Interval(t, t + 0.6, ""))
            t += 0.6
    w_iv.append(Interval(t, t + 0.4, ""))
    p_iv.append(Interval(t, t + 0.4, ""))
    return Utterance(tuple(w_iv), tuple(p_iv), t + 0.4)


def phone_config(symbol: str) -> np.ndarray:
    """Parameters at a phone's targets, other parameters at 0 (or the rest posture)."""
    if symbol == "rest":
        return np.array([REST[n] for n in PARAM_NAMES])
    v = np.zeros(len(PARAM_NAMES))
    v[P["velum"]] = -1.0
    for name, value, _ in PHONES[symbol].targets:
        v[P[name]] = value
    return v


@pytest.fixture(scope="module")
def anat():
    return anatomy_for_subject("sub061", 0)


@pytest.fixture(scope="module")
def demo_utt() -> Utterance:
    return make_utterance(
        ["MAMA", "PAPA", "NINE", "SEE", "BAD", "DOG", "GO", "KEEP", "SONG", "TALK"],
        pause_after=(3,),
    )


# --------------------------------------------------------------------------------------------
# Lexicon and utterances
# --------------------------------------------------------------------------------------------


def test_phone_inventory_and_lexicon():
    assert len(PHONES) == 39
    assert len(LEXICON) >= 60
    kinds = {
        "vowel",
        "diphthong",
        "stop",
        "fricative",
        "affricate",
        "nasal",
        "approximant",
        "aspirate",
    }
    for sym, spec in PHONES.items():
        assert spec.symbol == sym and spec.kind in kinds
        for name, _, weight in (*spec.targets, *spec.end_targets):
            assert name in PARAM_NAMES and weight > 0
    used = set()
    for word, phones in LEXICON.items():
        assert word == word.upper() and phones
        for ph in phones:
            base = phone_base(ph)
            assert base in PHONES
            # stress digits exactly on vowels
            assert (ph != base) == PHONES[base].is_vowel
            used.add(base)
    assert used == set(PHONES)


@pytest.mark.parametrize(("seed", "seconds"), [(0, 0.3), (1, 1.2), (2, 6.0), (3, 30.0)])
def test_sample_utterance_tiles_duration(seed, seconds):
    utt = sample_utterance(np.random.default_rng(seed), seconds)
    assert utt.duration == seconds
    for tier in (utt.words, utt.phones):
        assert tier[0].start == 0.0 and tier[-1].end == seconds
        for a, b in itertools.pairwise(tier):
            assert a.end == b.start and a.end > a.start
    for iv in utt.words:
        assert iv.label == "" or iv.label in LEXICON
    for iv in utt.phones:
        assert iv.label == "" or phone_base(iv.label) in PHONES
    assert {(i.start, i.end) for i in utt.words if not i.label} == {
        (i.start, i.end) for i in utt.phones if not i.label
    }
    words = [w for w in utt.words if w.label]
    if seconds >= 1.2:
        assert words
    if not words:
        return
    assert utt.words[0].label == "" and utt.words[0].end >= 0.2
    assert utt.words[-1].label == "" and seconds - utt.words[-1].start >= 0.2
    for w in words:  # the phones of a word tile it and spell it
        inside = [p for p in utt.phones if w.start <= p.start and p.end <= w.end]
        assert tuple(p.label for p in inside) == LEXICON[w.label]
        assert inside[0].start == w.start and inside[-1].end == w.end
    for p in utt.phones:
        if p.label:
            d = p.end - p.start
            lo, hi = (0.08, 0.2) if PHONES[phone_base(p.label)].is_vowel else (0.04, 0.12)
            assert lo - 1e-9 <= d <= hi + 1e-9, (p.label, d)
    if seconds >= 30:  # occasional pauses between words
        inner = [w for w in utt.words[1:-1] if not w.label]
        assert inner and all(0.15 - 1e-9 <= w.end - w.start <= 0.5 + 1e-9 for w in inner)


def test_sample_utterance_deterministic_and_checked():
    a = sample_utterance(np.random.default_rng(5), 5.0)
    assert a == sample_utterance(np.random.default_rng(5), 5.0)
    assert a != sample_utterance(np.random.default_rng(6), 5.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError):
            sample_utterance(np.random.default_rng(0), bad)


# --------------------------------------------------------------------------------------------
# Articulation
# --------------------------------------------------------------------------------------------


def test_trajectory_is_one_continuous_function_of_the_seed(demo_utt):
    arm_times = np.arange(int(demo_utt.duration / TR)) * TR
    centres = (2 * np.arange(arm_times.size // 2) + 1) * TR
    a = articulate(demo_utt, arm_times, np.random.default_rng(42))
    b = articulate(demo_utt, centres, np.random.default_rng(42))
    both = articulate(demo_utt, np.concatenate([arm_times, centres]), np.random.default_rng(42))
    assert a.shape == (arm_times.size, len(PARAM_NAMES)) and a.dtype == np.float64
    np.testing.assert_allclose(both[arm_times.size :], b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(both[: arm_times.size], a, rtol=0, atol=1e-12)
    # audio control frames (5 ms) see the same curve as the arm samples (6.004 ms)
    frames = np.arange(0.1, demo_utt.duration - 0.1, 0.005)
    c = articulate(demo_utt, frames, np.random.default_rng(42))
    interp = np.stack([np.interp(frames, arm_times, a[:, j]) for j in range(a.shape[1])], 1)
    assert np.max(np.abs(interp - c)) < 0.01
    other = articulate(demo_utt, centres, np.random.default_rng(43))
    assert np.max(np.abs(other - b)) > 0.02
    # exactly one value is drawn from the generator
    rng, ref = np.random.default_rng(9), np.random.default_rng(9)
    articulate(demo_utt, centres[:5], rng)
    ref.integers(0, 2**63 - 1)
    assert rng.random() == ref.random()


def test_trajectory_smooth_and_bounded(demo_utt):
    t = np.arange(-0.2, demo_utt.duration + 0.2, 0.001)
    p = articulate(demo_utt, t, np.random.default_rng(1))
    assert np.all(np.isfinite(p)) and np.abs(p).max() < 1.7
    assert np.abs(np.diff(p, axis=0)).max() < 0.05  # < 50 units/s
    assert np.abs(np.diff(p, 2, axis=0)).max() < 0.006  # bounded acceleration


def test_trajectory_reaches_targets_and_coarticulates(demo_utt):
    t = np.arange(0, demo_utt.duration, 0.002)
    p = articulate(demo_utt, t, np.random.default_rng(3))

    def during(iv):
        return p[(t >= iv.start) & (t < iv.end)]

    seen = set()
    for iv in demo_utt.phones:
        base = phone_base(iv.label)
        seg = during(iv)
        if base in ("B", "P", "M"):
            assert seg[:, P["lip_aperture"]].min() < -0.8  # lips pressed together
        if base in ("T", "D", "N"):
            assert seg[:, P["tongue_tip"]].max() > 1.0
        if base in ("K", "G", "NG"):
            assert seg[:, P["tongue_body_y"]].max() > 1.0
        if base in ("M", "N", "NG"):
            assert seg[:, P["velum"]].max() > 0.3
            preceding = [q for q in demo_utt.phones if iv.start - 0.25 < q.end <= iv.start]
            if all(q.label and not PHONES[phone_base(q.label)].nasal for q in preceding):
                # anticipatory lowering: the velum is already lowering 60 ms before the nasal
                before = p[np.searchsorted(t, iv.start - 0.06), P["velum"]]
                earlier = p[np.searchsorted(t, iv.start - 0.20), P["velum"]]
                assert before > earlier + 0.1, iv
                seen.add("nasal")
        if base in ("P", "B", "T", "D", "K", "G"):
            seen.add(base)
        if base == "" and iv.end - iv.start >= 0.5:  # rest posture in a long pause
            rest = np.array([REST[n] for n in PARAM_NAMES])
            mid = p[np.searchsorted(t, 0.5 * (iv.start + iv.end))]
            assert np.abs(mid - rest).max() < 0.25
    assert seen == {"P", "B", "T", "D", "K", "G", "nasal"}


# --------------------------------------------------------------------------------------------
# Vocal-tract phantom
# --------------------------------------------------------------------------------------------


def test_anatomy_deterministic_and_varied():
    a = anatomy_for_subject("sub013", 3)
    assert a == anatomy_for_subject("sub013", 3)
    assert a != anatomy_for_subject("sub014", 3) and a != anatomy_for_subject("sub013", 4)
    voices = [anatomy_for_subject(f"sub{i:03d}", 0).f0_hz for i in range(12)]
    assert 85 <= min(voices) and max(voices) <= 260 and np.ptp(voices) > 20
    img_a = render(a, phone_config("AH"))
    img_b = render(anatomy_for_subject("sub014", 3), phone_config("AH"))
    assert np.abs(img_a - img_b).mean() > 0.01


def test_anatomy_spread_shrinks_geometry_but_keeps_voices():
    import dataclasses

    geometry = [f.name for f in dataclasses.fields(Anatomy)]
    geometry = [g for g in geometry if g not in ("subject", "seed", "f0_hz", "texture_seed")]
    ids = [f"sub{i:03d}" for i in range(8)]
    full = [anatomy_for_subject(s, 0) for s in ids]
    half = [anatomy_for_subject(s, 0, 0.5) for s in ids]
    none = [anatomy_for_subject(s, 0, 0.0) for s in ids]
    for name in geometry:
        spread_full = np.ptp([getattr(a, name) for a in full])
        assert spread_full > 0, name
        np.testing.assert_allclose(np.ptp([getattr(a, name) for a in half]), 0.5 * spread_full)
        assert np.ptp([getattr(a, name) for a in none]) == 0.0, name
    # the voice and the texture are the speaker's own at every spread
    assert [a.f0_hz for a in none] == [a.f0_hz for a in full]
    assert [a.texture_seed for a in none] == [a.texture_seed for a in full]
    assert np.ptp([a.f0_hz for a in none]) > 20
    # with no spread two speakers have the same vocal tract (only the tissue texture differs)
    pose = phone_config("AH")[None]
    assert np.array_equal(label_raster(none[0], pose), label_raster(none[1], pose))
    assert not np.array_equal(label_raster(full[0], pose), label_raster(full[1], pose))
    with pytest.raises(InputError, match="spread"):
        anatomy_for_subject("sub009", 0, 1.5)


def test_render_shapes_range_and_upright(anat):
    one = render(anat, phone_config("AH"))
    assert one.shape == (84, 84) and one.dtype == np.float32
    many = render(anat, np.stack([phone_config("AH"), phone_config("IY")]), n=84, oversample=2)
    assert many.shape == (2, 168, 168)
    assert 0.0 <= float(many.min()) and float(many.max()) <= 1.0
    assert float(many.max()) > 0.8 and float((many < 0.02).mean()) > 0.1  # bright tissue, air
    lab = label_raster(anat, phone_config("AH"))
    rows, cols = np.indices(lab.shape)

    def centroid(name):
        sel = lab == LABEL[name]
        assert sel.any(), name
        return rows[sel].mean(), cols[sel].mean()

    lip_r, lip_c = centroid("upper_lip")
    assert lip_c < 0.3 * 84  # face on the left
    assert centroid("lower_lip")[0] > lip_r  # lower lip below the upper lip
    assert centroid("pharyngeal_wall")[1] > lip_c + 20  # pharynx behind the lips
    assert centroid("hard_palate")[0] < centroid("tongue")[0]  # palate above the tongue
    assert one[:6, 30:70].mean() > 0.25  # the head reaches the top rows
    assert one[int(0.85 * 84) :, :10].mean() < 0.05  # air in front of the neck, below the chin
    r = round(lip_r)
    first_tissue = int(np.argmax(one[r] > 0.3))
    assert first_tissue < 0.3 * 84 and one[r, -3:].mean() > 0.3  # profile faces left


def test_articulators_move_between_phones(anat):
    m, aa = phone_config("M"), phone_config("AA")
    img = render(anat, np.stack([m, aa]), oversample=2)
    lab = label_raster(anat, np.stack([m, aa]))
    diff = np.abs(img[0] - img[1])
    assert diff[:30, 100:].max() == 0.0  # brain and spine are static
    assert diff[60:140, 10:130].mean() > 0.03  # the mouth changes
    for name in MOVING_ARTICULATORS:
        assert (lab[0] == LABEL[name]).sum() > 0 and (lab[1] == LABEL[name]).sum() > 0
    assert (lab[0] == LABEL["tongue"]).sum() != (lab[1] == LABEL["tongue"]).sum()
    # lips closed for /m/ (no air between the lips), open for /a/
    geo = tract_geometry(anat, np.stack([m, aa]))
    assert geo.areas[0, -1] == 0.0 and geo.areas[1, -1] > 0.5
    assert geo.port_cm2[0] > 0.3 and geo.port_cm2[1] == 0.0  # velum lowered only for /m/


def test_label_raster_agrees_with_render(anat, demo_utt):
    t = np.linspace(0.5, demo_utt.duration - 0.5, 12)
    params = articulate(demo_utt, t, np.random.default_rng(4))
    img = render(anat, params, n=84)
    lab = label_raster(anat, params, n=84)
    assert lab.shape == img.shape and lab.dtype == np.uint8
    assert set(np.unique(lab)) <= {0, *ARTICULATORS}
    tissue = lab > 0
    assert (img[tissue] >= 0.25).mean() > 0.97
    assert (img[~tissue] < 0.35).mean() > 0.97
    for name in MOVING_ARTICULATORS:
        assert np.all((lab == LABEL[name]).reshape(len(t), -1).any(axis=1)), name


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    return map_coordinates(img, [y, x], order=1, mode="nearest")


@pytest.mark.parametrize("phone", ["AH", "EH", "AE"])  # no contacts between articulators
def test_contours_lie_on_render_edges(anat, phone):
    params = phone_config(phone)
    cont = contours(anat, params, n=84)
    assert set(cont) == set(CONTOUR_NAMES)
    fine = render(anat, params, n=84, oversample=4)
    hits_all = []
    for name, pts in cont.items():
        assert pts.ndim == 2 and pts.shape[1] == 2 and pts.shape[0] >= 3, name
        assert pts.dtype == np.float64 and np.all(np.isfinite(pts))
        assert pts.min() >= -0.5 and pts.max() <= 83.5
        tangent = np.gradient(pts, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        fx = lambda q: (q + 0.5) * 4 - 0.5  # noqa: E731  (84-grid pixel -> 336-grid pixel)
        a = _bilinear(fine, fx(pts[:, 0] + 1.2 * normal[:, 0]), fx(pts[:, 1] + 1.2 * normal[:, 1]))
        b = _bilinear(fine, fx(pts[:, 0] - 1.2 * normal[:, 0]), fx(pts[:, 1] - 1.2 * normal[:, 1]))
        hits = np.abs(a - b) > 0.2
        assert hits.mean() > 0.6, (name, hits.mean())
        hits_all.append(hits)
    assert np.concatenate(hits_all).mean() > 0.85


def test_area_function_from_geometry(anat, demo_utt):
    def areas(sym):
        return area_function(anat, phone_config(sym))

    assert areas("AA").shape == (32,) and area_function(anat, phone_config("AA"), 16).shape == (16,)
    for vowel in ("AA", "AE", "IY", "UW", "EH"):
        assert areas(vowel).min() > 0.05, vowel
    for stop, region in (
        ("P", slice(28, 32)),
        ("B", slice(28, 32)),
        ("M", slice(28, 32)),
        ("T", slice(20, 29)),
        ("N", slice(20, 29)),
        ("K", slice(13, 24)),
        ("NG", slice(13, 24)),
    ):
        a = areas(stop)
        assert a[region].min() == 0.0, stop
        assert a[:12].min() > 0.1  # the pharynx stays open
    # /i/ narrow at the palate and wide in the pharynx, /a/ the other way round
    iy, aa = areas("IY"), areas("AA")
    assert iy[16:26].min() < aa[16:26].min() and iy[5:14].mean() > aa[5:14].mean()
    for fric in ("S", "SH"):
        assert 0.0 < areas(fric)[14:].min() < 0.25, fric
    # along a real trajectory every stop closes the tract at some point
    t = np.arange(0, demo_utt.duration, 0.004)
    a = area_function(anat, articulate(demo_utt, t, np.random.default_rng(3)))
    assert a.shape == (t.size, 32) and np.all(a >= 0)
    for iv in demo_utt.phones:
        if phone_base(iv.label) in ("P", "B", "T", "D", "K", "G"):
            seg = a[(t >= iv.start) & (t < iv.end)]
            assert seg[:, 12:].min(axis=1).min() == 0.0, iv.label


def test_errors(anat, demo_utt):
    with pytest.raises(ShapeError):
        render(anat, np.zeros(5))
    with pytest.raises(ShapeError):
        render(anat, np.full(len(PARAM_NAMES), np.nan))
    with pytest.raises(ShapeError):
        contours(anat, np.zeros((2, len(PARAM_NAMES))))
    with pytest.raises(ShapeError):
        articulate(demo_utt, np.zeros((2, 2)), np.random.default_rng(0))
    with pytest.raises(InputError):
        synthesize_audio(anat, demo_utt, np.random.default_rng(0), sample_rate=4000)


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


def _centroid(seg: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    f = np.fft.rfftfreq(seg.size, 1 / sr)
    return float((spec * f).sum() / spec.sum())


def test_audio_follows_the_trajectory_and_is_deterministic(anat, demo_utt):
    sr = 20000
    calls = []

    def spy(utt, times, rng):
        out = articulate(utt, times, rng)
        calls.append((times.copy(), out))
        return out

    x = synthesize_audio(anat, demo_utt, np.random.default_rng(11), articulate_fn=spy)
    assert x.dtype == np.float32 and x.shape == (round(demo_utt.duration * sr),)
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0
    times, used = calls[0]
    np.testing.assert_array_equal(used, articulate(demo_utt, times, np.random.default_rng(11)))
    assert np.array_equal(x, synthesize_audio(anat, demo_utt, np.random.default_rng(11)))
    assert not np.array_equal(x, synthesize_audio(anat, demo_utt, np.random.default_rng(12)))
    # the images' trajectory with an independent noise seed
    y = synthesize_audio(
        anat,
        demo_utt,
        np.random.default_rng(99),
        articulate_fn=lambda u, t, _rng: spy(u, t, np.random.default_rng(11)),
    )
    np.testing.assert_array_equal(calls[-1][1], used)
    assert not np.array_equal(x, y)
    # silence in pauses, speech in words; fricative noise is high, vowels low
    rms = lambda s: float(np.sqrt(np.mean(s.astype(float) ** 2)))  # noqa: E731
    lead = x[: int(0.3 * sr)]
    words = [w for w in demo_utt.words if w.label]
    speech = x[int(words[0].start * sr) : int(words[-1].end * sr)]
    assert rms(lead) < 0.01 * rms(speech)
    for iv in demo_utt.phones:
        seg = x[int((iv.start + 0.02) * sr) : int((iv.end - 0.02) * sr)]
        if phone_base(iv.label) == "S":
            assert _centroid(seg, sr) > 2500
        if phone_base(iv.label) in ("AA", "AO"):
            assert _centroid(seg, sr) < 1500
    low = synthesize_audio(anat, demo_utt, np.random.default_rng(11), sample_rate=16000)
    assert low.shape == (round(demo_utt.duration * 16000),)


def test_audio_pitch_follows_the_speaker():
    utt = make_utterance(["MAMA", "FAR", "MAMA"])
    subjects = sorted(
        (anatomy_for_subject(f"sub{i:03d}", 0) for i in range(12)), key=lambda a: a.f0_hz
    )
    sr = 20000
    measured = []
    for anat in (subjects[0], subjects[-1]):
        x = synthesize_audio(anat, utt, np.random.default_rng(0)).astype(float)
        vowels = [iv for iv in utt.phones if phone_base(iv.label) == "AA"]
        f0s = []
        for iv in vowels:
            seg = x[int((iv.start + 0.03) * sr) : int((iv.end - 0.03) * sr)]
            ac = np.correlate(seg, seg, "full")[seg.size - 1 :]
            lo, hi = int(sr / 400), int(sr / 60)
            f0s.append(sr / (lo + np.argmax(ac[lo:hi])))
        measured.append(np.median(f0s))
        assert 0.6 * anat.f0_hz < measured[-1] < 1.6 * anat.f0_hz
    assert measured[1] > measured[0] * 1.2


def test_audio_is_informative_about_the_articulators():
    """Log-mel features predict the articulatory parameters of unseen utterances.

    12 utterances of 5 s from 3 speakers; 4-fold cross-validation by utterance. Features: 40
    log-mel bands (10 ms hop) at 9 offsets spanning +-0.1 s; trained every 20 ms, scored at the
    13-arm frame rate (12.8 Hz). R^2 is 1 - SSE/SST summed over the 7 parameters (the
    variance-weighted mean). Measured when written: kernel ridge 0.68, linear ridge 0.58,
    shuffled controls below 0.
    """
    import librosa

    sr, hop = 20000, 200
    offsets = np.linspace(-0.1, 0.1, 9)
    data = []
    for u in range(12):
        anat = anatomy_for_subject(("sub061", "sub009", "sub022")[u % 3], 0)
        utt = sample_utterance(np.random.default_rng([0, 100 + u]), 5.0)
        x = synthesize_audio(anat, utt, np.random.default_rng([0, 200 + u]), sample_rate=sr)
        mel = librosa.feature.melspectrogram(
            y=x, sr=sr, n_fft=512, hop_length=hop, n_mels=40, fmin=50, fmax=9000
        )
        logmel = np.log(mel + 1e-8 * mel.max())  # (40, frames)
        t_fit = np.arange(0.15, utt.duration - 0.15, 0.02)
        t_score = np.arange(0.15, utt.duration - 0.15, 1 / 12.812)
        item = []
        for times in (t_fit, t_score):
            idx = np.rint((times[:, None] + offsets[None]) * sr / hop).astype(int)
            idx = np.clip(idx, 0, logmel.shape[1] - 1)
            item.append(logmel[:, idx].transpose(1, 2, 0).reshape(times.size, -1))
            item.append(articulate(utt, times, np.random.default_rng([0, 200 + u])))
        data.append(tuple(item))  # (fit features, fit targets, score features, score targets)

    def standardize(a, b):
        mu, sd = a.mean(0), a.std(0) + 1e-6
        return (a - mu) / sd, (b - mu) / sd

    def ridge(xa, ya, xb, lam=10.0):
        a, b = standardize(xa, xb)
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (ya - ya.mean(0)))
        return b @ w + ya.mean(0)

    def kernel_ridge(xa, ya, xb, lam=0.1, gamma=0.5):
        a, b = standardize(xa, xb)

        def k(p, q):
            d2 = np.sum(p**2, 1)[:, None] + np.sum(q**2, 1)[None] - 2 * p @ q.T
            return np.exp(-gamma / p.shape[1] * np.maximum(d2, 0))

        alpha = np.linalg.solve(k(a, a) + lam * np.eye(len(a)), ya - ya.mean(0))
        return k(b, a) @ alpha + ya.mean(0)

    def cv_r2(model, shuffle):
        preds, truth = [], []
        for fold in range(4):
            fit = [d for i, d in enumerate(data) if i % 4 != fold]
            xa, ya = np.concatenate([d[0] for d in fit]), np.concatenate([d[1] for d in fit])
            if shuffle:  # features permuted across time relative to the targets
                xa = xa[np.random.default_rng(fold).permutation(len(xa))]
            test = [d for i, d in enumerate(data) if i % 4 == fold]
            preds.append(model(xa, ya, np.concatenate([d[2] for d in test])))
            truth.append(np.concatenate([d[3] for d in test]))
        y, p = np.concatenate(truth), np.concatenate(preds)
        return 1.0 - ((y - p) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()

    r2_kernel, r2_linear = cv_r2(kernel_ridge, False), cv_r2(ridge, False)
    print(f"R^2 kernel ridge {r2_kernel:.3f}, ridge {r2_linear:.3f}")
    assert r2_kernel > 0.6
    assert r2_linear > 0.5
    assert cv_r2(kernel_ridge, True) < 0.1
    assert cv_r2(ridge, True) < 0.1
