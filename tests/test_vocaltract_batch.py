"""contours_batch: the contours of many frames at once equal the per-frame contours."""

from __future__ import annotations

import numpy as np
import pytest

from sirem_cli.errors import ShapeError
from sirem_cli.synth.airway import tract_geometry
from sirem_cli.synth.anatomy import anatomy_for_subject
from sirem_cli.synth.articulation import PARAM_NAMES, articulate
from sirem_cli.synth.contours import CONTOUR_NAMES, contours, contours_batch
from sirem_cli.synth.lexicon import (
    LEXICON,
    PHONES,
    Interval,
    Utterance,
    phone_base,
    sample_utterance,
)

WORDS = ["MAMA", "PAPA", "BAD", "GO", "KEEP", "SONG", "NINE", "TALK", "DOG"]
CLOSURES = {"B", "P", "M", "K", "G", "N", "NG"}  # lips, velar stops, nasals


def closure_utterance() -> tuple[Utterance, np.ndarray]:
    """Words with lip and velar closures and nasals, and times inside every closure."""
    t = 0.3
    w_iv, p_iv = [Interval(0.0, t, "")], [Interval(0.0, t, "")]
    times = []
    for word in WORDS:
        start = t
        for ph in LEXICON[word]:
            d = 0.14 if PHONES[phone_base(ph)].is_vowel else 0.09
            p_iv.append(Interval(t, t + d, ph))
            if phone_base(ph) in CLOSURES:
                times += [t + 0.3 * d, t + 0.6 * d, t + 0.9 * d]
            t += d
        w_iv.append(Interval(start, t, word))
    w_iv.append(Interval(t, t + 0.3, ""))
    p_iv.append(Interval(t, t + 0.3, ""))
    return Utterance(tuple(w_iv), tuple(p_iv), t + 0.3), np.array(times)


def frames(seed: int) -> np.ndarray:
    """Frames inside the closures of :func:`closure_utterance`, then frames of a random
    utterance every 8th 2-arm frame (T, P)."""
    utt, times = closure_utterance()
    closed = articulate(utt, times, np.random.default_rng(seed))
    rnd = sample_utterance(np.random.default_rng(seed + 1), 3.0)
    t = (2 * np.arange(0, 250, 8) + 1) * 6.004e-3
    return np.concatenate([closed, articulate(rnd, t, np.random.default_rng(seed + 2))])


def assert_same(batch: list[dict], params: np.ndarray, anat, n: int = 84) -> None:
    assert len(batch) == params.shape[0]
    for t, got in enumerate(batch):
        ref = contours(anat, params[t], n=n)
        assert list(got) == list(ref) == list(CONTOUR_NAMES)
        for name in CONTOUR_NAMES:
            assert got[name].dtype == np.float64 and got[name].ndim == 2, (t, name)
            assert got[name].shape == ref[name].shape, (t, name, got[name].shape)
            np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize(("subject", "seed"), [("sub061", 0), ("sub003", 7)])
def test_batch_equals_per_frame_contours(subject, seed):
    anat = anatomy_for_subject(subject, seed)
    params = frames(11 + seed)
    # the frames include closures of the tract (lips, velar stops) and open velar ports
    geo = tract_geometry(anat, params)
    n_closure = 3 * sum(phone_base(p) in CLOSURES for w in WORDS for p in LEXICON[w])
    assert (geo.areas[:n_closure] == 0).any(axis=1).mean() > 0.5
    assert (geo.port_cm2[:n_closure] > 0).sum() >= 6
    assert_same(contours_batch(anat, params), params, anat)


def test_batch_chunks_grid_sizes_and_edge_cases(monkeypatch):
    anat = anatomy_for_subject("sub061", 0)
    rng = np.random.default_rng(3)
    params = rng.uniform(-1.5, 1.5, (11, len(PARAM_NAMES)))
    monkeypatch.setattr("sirem_cli.synth.contours._BATCH", 4)  # several chunks, the last one short
    assert_same(contours_batch(anat, params, n=68), params, anat, n=68)
    p32 = params[:2].astype(np.float32)
    assert_same(contours_batch(anat, p32), p32, anat)
    assert contours_batch(anat, np.zeros((0, len(PARAM_NAMES)))) == []
    with pytest.raises(ShapeError):
        contours_batch(anat, params[0])
    with pytest.raises(ShapeError):
        contours_batch(anat, np.full((2, len(PARAM_NAMES)), np.nan))
    # every frame owns its static contours
    a, b = contours_batch(anat, params[:2])
    a["hard_palate"][:] = -1.0
    assert not np.shares_memory(a["hard_palate"], b["hard_palate"])
    assert (contours_batch(anat, params[:1])[0]["hard_palate"] >= 0).all()
