"""Phones, words and random utterances for the synthetic speech corpus.

Phones are ARPAbet base symbols (CMUdict / Montreal Forced Aligner style, no stress digit).
Each phone carries articulatory targets for the normalized parameters of
:mod:`sirem_cli.synth.articulation` (``jaw``, ``tongue_body_x``, ``tongue_body_y``,
``tongue_tip``, ``lip_aperture``, ``lip_protrusion``, ``velum``; roughly in [-1, 1], see
there for their meaning) with a weight saying how much the phone cares about each one: critical
articulators (the lips of /b/, the tongue tip of /t/) have large weights and win over their
neighbours; free ones have small weights and take the values of the neighbouring phones
(coarticulation). Diphthongs and affricates have a second target set for the second part of
the phone.

Durations follow read English speech: vowels 80-200 ms, consonants 40-120 ms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from sirem_cli.errors import InputError

#: Phone kinds.
VOWEL = "vowel"
DIPHTHONG = "diphthong"
STOP = "stop"
FRICATIVE = "fricative"
AFFRICATE = "affricate"
NASAL = "nasal"
APPROXIMANT = "approximant"
ASPIRATE = "aspirate"

_STRESS = re.compile(r"[0-2]$")


@dataclass(frozen=True)
class PhoneSpec:
    """Articulatory and source description of one ARPAbet phone.

    Attributes:
        symbol: ARPAbet base symbol, e.g. ``"AA"``.
        kind: one of ``vowel``, ``diphthong``, ``stop``, ``fricative``, ``affricate``,
            ``nasal``, ``approximant``, ``aspirate``.
        voiced: whether the vocal folds vibrate (voiced source) during the phone.
        targets: ``(param, value, weight)`` triples; value in normalized parameter units,
            weight > 0 (about 1 for a vowel's own articulators, 3-6 for a consonant's critical
            articulator, small for free ones). Parameters not listed are free.
        end_targets: for diphthongs and affricates, the targets of the second part (same
            format), reached over the last ``1 - split`` of the phone; empty otherwise.
        split: fraction of the phone spent on the first target set.
    """

    symbol: str
    kind: str
    voiced: bool
    targets: tuple[tuple[str, float, float], ...]
    end_targets: tuple[tuple[str, float, float], ...] = field(default=())
    split: float = 1.0

    @property
    def is_vowel(self) -> bool:
        """True for monophthongs and diphthongs."""
        return self.kind in (VOWEL, DIPHTHONG)

    @property
    def nasal(self) -> bool:
        """True for nasal consonants (velum lowered, oral tract closed)."""
        return self.kind == NASAL


def _t(**kw: float | tuple[float, float]) -> tuple[tuple[str, float, float], ...]:
    """Targets from keyword arguments ``param=value`` (weight 1) or ``param=(value, weight)``."""
    out = []
    for name, spec in kw.items():
        value, weight = (spec, 1.0) if isinstance(spec, int | float) else spec
        out.append((name, float(value), float(weight)))
    return tuple(out)


# Vowel targets: jaw (+ open), tongue body x (+ front), tongue body y (+ high), tongue tip
# (+ raised), lip aperture (+ open), lip protrusion (+ rounded), velum (+ lowered/open).
# Vowels keep the velum fairly raised but with a low weight, so that nasal neighbours lower it.
def _vowel(jaw: float, bx: float, by: float, la: float, lp: float, tt: float = -0.5) -> dict:
    return {
        "jaw": jaw,
        "tongue_body_x": bx,
        "tongue_body_y": by,
        "tongue_tip": (tt, 0.6),
        "lip_aperture": la,
        "lip_protrusion": lp,
        "velum": (-0.8, 0.4),
    }


_V = {
    "IY": _vowel(-0.5, 0.9, 0.4, 0.1, -0.8),
    "IH": _vowel(-0.2, 0.6, 0.1, 0.25, -0.5),
    "EH": _vowel(0.2, 0.45, 0.0, 0.45, -0.4),
    "AE": _vowel(0.6, 0.35, -0.5, 0.65, -0.5),
    "AA": _vowel(0.8, -0.7, -0.8, 0.75, 0.0),
    "AH": _vowel(0.3, -0.15, -0.3, 0.45, 0.0),
    "AO": _vowel(0.55, -0.85, -0.45, 0.3, 0.7),
    "UH": _vowel(-0.05, -0.5, 0.15, 0.05, 0.5),
    "UW": _vowel(-0.35, -0.6, 0.4, -0.2, 1.0),
    "ER": _vowel(0.0, -0.2, 0.2, 0.15, 0.4, tt=0.3),
    "OW": _vowel(0.35, -0.8, -0.1, 0.15, 0.85),
}

_ORAL = {"velum": (-1.0, 2.5)}
_NASAL = {"velum": (1.0, 4.0)}


def _c(**kw: float | tuple[float, float]) -> dict:
    return {**_ORAL, **kw}


_PHONES: dict[str, PhoneSpec] = {}


def _add(
    symbol: str, kind: str, voiced: bool, targets: dict, end: dict | None = None, split: float = 1.0
) -> None:
    _PHONES[symbol] = PhoneSpec(symbol, kind, voiced, _t(**targets), _t(**(end or {})), split)


for _sym in ("IY", "IH", "EH", "AE", "AA", "AH", "AO", "UH", "UW", "ER"):
    _add(_sym, VOWEL, True, _V[_sym])
# Diphthongs: onset and offset vowels.
_add("AY", DIPHTHONG, True, _V["AA"], _V["IH"], 0.5)
_add("AW", DIPHTHONG, True, _V["AA"], _V["UH"], 0.5)
_add("EY", DIPHTHONG, True, _V["EH"], _V["IY"], 0.5)
_add("OW", DIPHTHONG, True, _V["OW"], _V["UW"], 0.55)
_add("OY", DIPHTHONG, True, _V["AO"], _V["IY"], 0.5)

# Stops: a closure (virtual target beyond contact) of the critical articulator.
_LAB = {"lip_aperture": (-1.3, 8.0), "jaw": (-0.3, 0.4)}
_ALV = {"tongue_tip": (1.35, 8.0), "jaw": (-0.45, 0.8), "tongue_body_x": (0.2, 0.3)}
_VEL = {"tongue_body_y": (1.35, 8.0), "tongue_body_x": (-0.2, 1.0), "jaw": (-0.3, 0.5)}
_add("P", STOP, False, _c(**_LAB))
_add("B", STOP, True, _c(**_LAB))
_add("T", STOP, False, _c(**_ALV))
_add("D", STOP, True, _c(**_ALV))
_add("K", STOP, False, _c(**_VEL))
_add("G", STOP, True, _c(**_VEL))
# Nasals: the same oral closures with the velum lowered.
_add("M", NASAL, True, {**_LAB, **_NASAL})
_add("N", NASAL, True, {**_ALV, **_NASAL})
_add("NG", NASAL, True, {**_VEL, **_NASAL})
# Fricatives: a narrow constriction (a target just short of contact).
_add(
    "F",
    FRICATIVE,
    False,
    _c(lip_aperture=(-0.3, 10.0), lip_protrusion=(-0.3, 0.5), jaw=(-0.4, 0.8)),
)
_add(
    "V", FRICATIVE, True, _c(lip_aperture=(-0.3, 10.0), lip_protrusion=(-0.3, 0.5), jaw=(-0.4, 0.8))
)
_DENT = {"tongue_tip": (0.7, 8.0), "tongue_body_x": (0.45, 0.8), "jaw": (-0.4, 0.8)}
_add("TH", FRICATIVE, False, _c(**_DENT))
_add("DH", FRICATIVE, True, _c(**_DENT))
_SIB = {
    "tongue_tip": (0.68, 10.0),
    "jaw": (-0.7, 1.5),
    "lip_protrusion": (-0.2, 0.4),
    "tongue_body_x": (0.3, 0.6),
}
_add("S", FRICATIVE, False, _c(**_SIB))
_add("Z", FRICATIVE, True, _c(**_SIB))
_POST = {
    "tongue_tip": (0.68, 10.0),
    "tongue_body_x": (0.35, 1.0),
    "tongue_body_y": (0.3, 1.0),
    "lip_protrusion": (0.7, 2.0),
    "jaw": (-0.6, 1.2),
}
_add("SH", FRICATIVE, False, _c(**_POST))
_add("ZH", FRICATIVE, True, _c(**_POST))
_add("HH", ASPIRATE, False, {"velum": (-0.8, 0.5)})
# Affricates: an alveolar closure released into a post-alveolar fricative.
_add("CH", AFFRICATE, False, _c(**{**_POST, "tongue_tip": (1.35, 8.0)}), _c(**_POST), 0.45)
_add("JH", AFFRICATE, True, _c(**{**_POST, "tongue_tip": (1.35, 8.0)}), _c(**_POST), 0.45)
# Approximants.
_add(
    "L",
    APPROXIMANT,
    True,
    _c(
        tongue_tip=(0.72, 4.0),
        tongue_body_x=(-0.3, 1.0),
        tongue_body_y=(-0.1, 0.6),
        jaw=(-0.2, 0.5),
    ),
)
_add(
    "R",
    APPROXIMANT,
    True,
    _c(
        tongue_tip=(0.4, 3.0),
        tongue_body_x=(-0.35, 1.0),
        tongue_body_y=(0.15, 1.0),
        lip_protrusion=(0.6, 2.0),
        lip_aperture=(0.0, 1.0),
    ),
)
_add(
    "W",
    APPROXIMANT,
    True,
    _c(
        lip_aperture=(-0.1, 4.0),
        lip_protrusion=(1.1, 3.0),
        tongue_body_x=(-0.6, 1.0),
        tongue_body_y=(0.45, 1.0),
    ),
)
_add(
    "Y",
    APPROXIMANT,
    True,
    _c(
        tongue_body_x=(0.95, 3.0),
        tongue_body_y=(0.6, 3.0),
        jaw=(-0.5, 1.0),
        lip_protrusion=(-0.5, 0.5),
    ),
)

#: ARPAbet base symbol -> articulatory targets and source type (39 phones).
PHONES: dict[str, PhoneSpec] = dict(_PHONES)

_WORDS = """
THE DH AH0|A AH0|AND AH0 N D|TO T UW1|OF AH1 V|IN IH0 N|IS IH1 Z|IT IH1 T|YOU Y UW1
THAT DH AE1 T|HE HH IY1|WAS W AA1 Z|FOR F AO1 R|ON AA1 N|ARE AA1 R|WITH W IH1 DH|AS AE1 Z
I AY1|HIS HH IH1 Z|THEY DH EY1|BE B IY1|AT AE1 T|ONE W AH1 N|HAVE HH AE1 V|THIS DH IH1 S
FROM F R AH1 M|BY B AY1|HOT HH AA1 T|WORD W ER1 D|BUT B AH1 T|WHAT W AH1 T|SOME S AH1 M
WE W IY1|CAN K AE1 N|OUT AW1 T|OTHER AH1 DH ER0|WERE W ER1|ALL AO1 L|THERE DH EH1 R
WHEN W EH1 N|UP AH1 P|USE Y UW1 Z|YOUR Y AO1 R|HOW HH AW1|SAID S EH1 D|EACH IY1 CH
SHE SH IY1|WHICH W IH1 CH|DO D UW1|THEIR DH EH1 R|TIME T AY1 M|IF IH1 F|WILL W IH1 L
WAY W EY1|ABOUT AH0 B AW1 T|MANY M EH1 N IY0|THEN DH EH1 N|THEM DH EH1 M|WOULD W UH1 D
WRITE R AY1 T|LIKE L AY1 K|SO S OW1|THESE DH IY1 Z|HER HH ER1|LONG L AO1 NG|MAKE M EY1 K
THING TH IH1 NG|SEE S IY1|HIM HH IH1 M|TWO T UW1|HAS HH AE1 Z|LOOK L UH1 K|MORE M AO1 R
DAY D EY1|COULD K UH1 D|GO G OW1|COME K AH1 M|DID D IH1 D|MY M AY1|SOUND S AW1 N D
NO N OW1|MOST M OW1 S T|PEOPLE P IY1 P AH0 L|OVER OW1 V ER0|KNOW N OW1|WATER W AO1 T ER0
THAN DH AE1 N|CALL K AO1 L|FIRST F ER1 S T|WHO HH UW1|DOWN D AW1 N|SIDE S AY1 D
BEEN B IH1 N|NOW N AW1|FIND F AY1 N D|HEAD HH EH1 D|STAND S T AE1 N D|OWN OW1 N
PAGE P EY1 JH|SHOULD SH UH1 D|COUNTRY K AH1 N T R IY0|FOUND F AW1 N D|ANSWER AE1 N S ER0
SCHOOL S K UW1 L|GROW G R OW1|STUDY S T AH1 D IY0|STILL S T IH1 L|LEARN L ER1 N
PLANT P L AE1 N T|COVER K AH1 V ER0|FOOD F UW1 D|SUN S AH1 N|FOUR F AO1 R|THOUGHT TH AO1 T
LET L EH1 T|KEEP K IY1 P|EYE AY1|NEVER N EH1 V ER0|LAST L AE1 S T|DOOR D AO1 R
BETWEEN B IH0 T W IY1 N|CITY S IH1 T IY0|TREE T R IY1|CROSS K R AO1 S|SINCE S IH1 N S
HARD HH AA1 R D|START S T AA1 R T|MIGHT M AY1 T|STORY S T AO1 R IY0|SAW S AO1|FAR F AA1 R
SEA S IY1|DRAW D R AO1|LEFT L EH1 F T|LATE L EY1 T|RUN R AH1 N|WHILE W AY1 L|PRESS P R EH1 S
CLOSE K L OW1 Z|NIGHT N AY1 T|REAL R IY1 L|LIFE L AY1 F|FEW F Y UW1|NORTH N AO1 R TH
BOOK B UH1 K|CARRY K AE1 R IY0|TOOK T UH1 K|SCIENCE S AY1 AH0 N S|EAT IY1 T|ROOM R UW1 M
FRIEND F R EH1 N D|BEGAN B IH0 G AE1 N|IDEA AY0 D IY1 AH0|FISH F IH1 SH|STOP S T AA1 P
MOUNTAIN M AW1 N T AH0 N|ONCE W AH1 N S|BASE B EY1 S|HEAR HH IY1 R|HORSE HH AO1 R S
CUT K AH1 T|SURE SH UH1 R|WATCH W AA1 CH|COLOR K AH1 L ER0|FACE F EY1 S|WOOD W UH1 D
MAIN M EY1 N|ENOUGH IH0 N AH1 F|PLAIN P L EY1 N|GIRL G ER1 L|USUAL Y UW1 ZH AH0 W AH0 L
YOUNG Y AH1 NG|READY R EH1 D IY0|ABOVE AH0 B AH1 V|EVER EH1 V ER0|RED R EH1 D
LIST L IH1 S T|THOUGH DH OW1|FEEL F IY1 L|TALK T AO1 K|BIRD B ER1 D|SOON S UW1 N
BODY B AA1 D IY0|DOG D AO1 G|FAMILY F AE1 M AH0 L IY0|DIRECT D ER0 EH1 K T|POSE P OW1 Z
LEAVE L IY1 V|SONG S AO1 NG|MEASURE M EH1 ZH ER0|GRANDFATHER G R AE1 N D F AA2 DH ER0
RAINBOW R EY1 N B OW2|JUDGE JH AH1 JH|CHILD CH AY1 L D|VOICE V OY1 S|BOY B OY1|JOY JH OY1
THINK TH IH1 NG K|SHIP SH IH1 P|ZOO Z UW1|VERY V EH1 R IY0|BAD B AE1 D|PAPA P AA1 P AH0
MAMA M AA1 M AH0|NINE N AY1 N|SEVEN S EH1 V AH0 N|BEAUTIFUL B Y UW1 T AH0 F AH0 L
"""

#: Uppercase English word -> ARPAbet phones with stress digits on vowels (``AH0``, ``EY1``).
LEXICON: dict[str, tuple[str, ...]] = {
    entry.split()[0]: tuple(entry.split()[1:])
    for entry in _WORDS.replace("\n", "|").split("|")
    if entry.strip()
}


def phone_base(label: str) -> str:
    """Strip the stress digit of an ARPAbet label: ``"EY1"`` -> ``"EY"``; ``""`` stays ``""``."""
    return _STRESS.sub("", label)


def phone_spec(label: str) -> PhoneSpec:
    """The :class:`PhoneSpec` of an ARPAbet label with or without stress digit.

    Raises:
        InputError: the label is not a known phone.
    """
    spec = PHONES.get(phone_base(label))
    if spec is None:
        raise InputError(f"unknown ARPAbet phone {label!r}")
    return spec


@dataclass(frozen=True)
class Interval:
    """One TextGrid interval: ``[start, end)`` in seconds; label ``""`` marks silence."""

    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Utterance:
    """A synthetic utterance as a two-tier alignment.

    Attributes:
        words: word intervals (labels from :data:`LEXICON` or ``""``), tiling ``[0, duration]``.
        phones: phone intervals (ARPAbet with stress digits or ``""``), tiling ``[0, duration]``;
            the phones of each word tile that word exactly, silences coincide.
        duration: seconds.
    """

    words: tuple[Interval, ...]
    phones: tuple[Interval, ...]
    duration: float


_DUR_MS = {
    VOWEL: (80.0, 200.0),
    DIPHTHONG: (120.0, 200.0),
    STOP: (50.0, 110.0),
    FRICATIVE: (70.0, 120.0),
    AFFRICATE: (80.0, 120.0),
    NASAL: (50.0, 100.0),
    APPROXIMANT: (40.0, 90.0),
    ASPIRATE: (40.0, 80.0),
}


def _phone_duration(rng: np.random.Generator, label: str) -> float:
    spec = phone_spec(label)
    lo, hi = _DUR_MS[spec.kind]
    if spec.is_vowel:
        stress = label[-1] if label[-1].isdigit() else "1"
        if stress == "0":  # unstressed vowels are short
            hi = lo + 0.4 * (hi - lo)
        else:
            lo = lo + 0.25 * (hi - lo)
    return float(rng.uniform(lo, hi)) / 1000.0


def sample_utterance(rng: np.random.Generator, seconds: float) -> Utterance:
    """Draw a random utterance of exactly ``seconds`` from :data:`LEXICON`.

    Words follow each other with occasional pauses (150-500 ms, after about one word in five);
    the utterance starts and ends with silence of at least 0.25 s (up to 0.65 s, shorter for
    short utterances), and words are added while one of 20 draws in a row still fits. Phone durations are drawn per
    phone kind (vowels 80-200 ms with unstressed vowels short, consonants 40-120 ms). An
    utterance too short for one word plus its silences is a single silence interval.

    Args:
        rng: the generator that all random choices come from (deterministic for its state).
        seconds: total duration in seconds, > 0.

    Returns:
        An :class:`Utterance` whose tiers tile ``[0, seconds]`` exactly (``duration == seconds``).

    Raises:
        InputError: ``seconds`` is not a positive finite number.
    """
    seconds = float(seconds)
    if not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"utterance duration must be a positive number of seconds, got {seconds}")
    words_all = sorted(LEXICON)
    edge_max = float(np.clip(0.12 * seconds, 0.2, 0.6))  # short utterances: short edges
    lead = float(rng.uniform(0.2, edge_max)) + 0.05
    tail_min = float(rng.uniform(0.2, edge_max)) + 0.05
    t = lead
    words: list[Interval] = []
    phones: list[Interval] = []
    misses = 0
    while misses < 20:  # stop after 20 draws in a row that do not fit
        word = words_all[int(rng.integers(len(words_all)))]
        durs = [_phone_duration(rng, p) for p in LEXICON[word]]
        pause = 0.0 if not words or rng.random() > 0.2 else float(rng.uniform(0.15, 0.5))
        if t + pause + sum(durs) > seconds - tail_min:
            misses += 1
            continue
        misses = 0
        if pause > 0:
            words.append(Interval(t, t + pause, ""))
            phones.append(Interval(t, t + pause, ""))
            t += pause
        start = t
        for label, d in zip(LEXICON[word], durs, strict=True):
            phones.append(Interval(t, t + d, label))
            t += d
        words.append(Interval(start, t, word))
    # Leading and trailing silence; shared boundary values keep the tiling exact.
    if not words:
        sil = (Interval(0.0, seconds, ""),)
        return Utterance(sil, sil, seconds)
    head = Interval(0.0, words[0].start, "")
    words = [head, *words]
    phones = [head, *phones]
    words.append(Interval(words[-1].end, seconds, ""))
    phones.append(Interval(phones[-1].end, seconds, ""))
    return Utterance(tuple(words), tuple(phones), seconds)
