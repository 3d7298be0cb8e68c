"""Praat TextGrid files (the Annot-16 ``<prefix>_text.TextGrid`` phonetic alignments).

The Annot-16 files are Praat "ooTextFile" long format in UTF-16 with a BOM, with an
interval tier ``words`` (item 1) and ``phones`` (item 2); times are seconds on the audio
time axis (t = 0 at the scan start) and an empty label is silence (data-formats.md 2.5).
The reader also accepts the short text format, UTF-8 files and point tiers.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sirem_cli.errors import FormatError, InputError, OutputError, ShapeError
from sirem_cli.io.usc import one_line, require_file

_EPS = 1e-9  # seconds: gaps/overlaps below this are rounding, not holes
_TOKEN = re.compile(
    r"""
      "(?P<str>(?:[^"]|"")*)"                          # string; "" is an escaped quote
    | (?P<flag><exists>|<absent>)
    | \[[^\]\n]*\]                                     # [1] indices of the long format
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | [A-Za-z_][\w?]*                                  # long-format labels: xmin, tiers? ...
    | ![^\n]*                                          # comment
    | \S                                               # = : and other punctuation
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Interval:
    """One labelled interval (a point of a point tier has ``xmin == xmax``).

    Attributes:
        xmin: start in seconds.
        xmax: end in seconds.
        text: label (ARPAbet phone or word); ``""`` is silence.
    """

    xmin: float
    xmax: float
    text: str


def _num(x: float) -> str:
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _fill(
    name: str, intervals: Sequence[tuple[float, float, str]], xmin: float, xmax: float
) -> list[tuple[float, float, str]]:
    """Check one tier and fill gaps (and the ends) with empty intervals."""
    out: list[tuple[float, float, str]] = []
    t = xmin
    for a, b, text in intervals:
        a, b = float(a), float(b)
        if not (a < b) or a < xmin - _EPS or b > xmax + _EPS:
            raise ShapeError(
                f"tier {name!r}: interval ({a}, {b}) is empty or outside [{xmin}, {xmax}]"
            )
        if a < t - _EPS:
            raise ShapeError(f"tier {name!r}: interval ({a}, {b}) overlaps the previous one")
        if a > t + _EPS:
            out.append((t, a, ""))
        out.append((a, b, str(text)))
        t = b
    if t < xmax - _EPS:
        out.append((t, xmax, ""))
    return out


def write_textgrid(
    path: str | os.PathLike[str],
    tiers: Mapping[str, Sequence[tuple[float, float, str]]],
    xmin: float,
    xmax: float,
) -> None:
    """Write interval tiers as a Praat long-format TextGrid in UTF-16 with a BOM.

    Intervals must be sorted and must not overlap; gaps (including before the first and
    after the last interval) are filled with empty-label intervals so that every tier
    covers ``[xmin, xmax]``, as Praat requires. Times are written with the shortest
    repr that round-trips a float64.

    Args:
        path: output ``<prefix>_text.TextGrid`` (written directly; use ``atomic_path`` for
            an atomic write).
        tiers: tier name -> ``(start_s, end_s, label)`` intervals; written in the mapping's
            order (``words`` then ``phones`` in Annot-16).
        xmin, xmax: time range in seconds (0 and the audio duration in Annot-16).

    Raises:
        ShapeError: ``xmin >= xmax``, an empty interval, an interval outside the range, or
            overlapping intervals.
        OutputError: the file cannot be written.
    """
    xmin, xmax = float(xmin), float(xmax)
    if not xmin < xmax:
        raise ShapeError(f"TextGrid xmin {xmin} must be below xmax {xmax}")
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        f"xmin = {_num(xmin)} ",
        f"xmax = {_num(xmax)} ",
        "tiers? <exists> " if tiers else "tiers? <absent> ",
    ]
    if tiers:
        lines += [f"size = {len(tiers)} ", "item []: "]
    for k, (name, intervals) in enumerate(tiers.items(), start=1):
        filled = _fill(name, intervals, xmin, xmax)
        lines += [
            f"    item [{k}]:",
            '        class = "IntervalTier" ',
            f"        name = {_quote(name)} ",
            f"        xmin = {_num(xmin)} ",
            f"        xmax = {_num(xmax)} ",
            f"        intervals: size = {len(filled)} ",
        ]
        for j, (a, b, text) in enumerate(filled, start=1):
            lines += [
                f"        intervals [{j}]:",
                f"            xmin = {_num(a)} ",
                f"            xmax = {_num(b)} ",
                f"            text = {_quote(text)} ",
            ]
    payload = codecs.BOM_UTF16_BE + ("\n".join(lines) + "\n").encode("utf-16-be")
    try:
        with open(path, "wb") as f:
            f.write(payload)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({one_line(exc)})") from exc


def _decode(raw: bytes, path: os.PathLike[str] | str) -> str:
    """UTF-16 (BOM, or NUL bytes without one), then UTF-8 with or without a BOM."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    elif b"\x00" in raw[:400]:
        head = raw[:400]
        big = head[0::2].count(0) > head[1::2].count(0)
        encodings = ["utf-16-be" if big else "utf-16-le"]
    else:
        encodings = ["utf-8-sig"]
    for enc in encodings:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            pass
    raise FormatError(f"{path}: not a UTF-16 or UTF-8 text file")


class _Tokens:
    """The values of a Praat text file (strings, numbers, flags), labels dropped."""

    def __init__(self, text: str, path: os.PathLike[str] | str) -> None:
        self.path = path
        self.items: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text):
            if m.group("str") is not None:
                self.items.append(("str", m.group("str").replace('""', '"')))
            elif m.group("flag") is not None:
                self.items.append(("flag", m.group("flag")))
            elif m.group("num") is not None:
                self.items.append(("num", m.group("num")))
        self.pos = 0

    def _next(self, kind: str, what: str) -> str:
        if self.pos >= len(self.items):
            raise FormatError(f"{self.path}: TextGrid ends early (expected {what})")
        got_kind, value = self.items[self.pos]
        if got_kind != kind:
            raise FormatError(
                f"{self.path}: malformed TextGrid: expected {what}, found {value!r} "
                f"(value {self.pos + 1})"
            )
        self.pos += 1
        return value

    def string(self, what: str) -> str:
        return self._next("str", what)

    def number(self, what: str) -> float:
        return float(self._next("num", what))

    def count(self, what: str) -> int:
        x = self.number(what)
        if x < 0 or x != int(x):
            raise FormatError(f"{self.path}: malformed TextGrid: {what} is {x}")
        return int(x)

    def flag(self, what: str) -> str:
        return self._next("flag", what)


def read_textgrid(path: str | os.PathLike[str]) -> dict[str, list[Interval]]:
    """Read a Praat TextGrid (long or short text format; UTF-16 or UTF-8).

    Args:
        path: ``.TextGrid`` file, opened read-only.

    Returns:
        Tier name -> intervals in file order (tiers in file order). Point tiers
        (``TextTier``) give intervals with ``xmin == xmax``. BOM characters (``\\ufeff``)
        are removed from labels.

    Raises:
        InputError: the file is missing or unreadable.
        FormatError: not a text TextGrid, truncated or malformed, or two tiers share a
            name.
    """
    p = require_file(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({one_line(exc)})") from exc
    tok = _Tokens(_decode(raw, p).replace("\ufeff", ""), p)
    file_type = tok.string('File type "ooTextFile"')
    object_class = tok.string('Object class "TextGrid"')
    if not file_type.startswith("ooTextFile") or object_class != "TextGrid":
        raise FormatError(
            f"{p}: not a Praat text TextGrid "
            f"(file type {file_type!r}, object class {object_class!r})"
        )
    tok.number("xmin")
    tok.number("xmax")
    tiers: dict[str, list[Interval]] = {}
    if tok.flag("<exists> or <absent>") == "<absent>":
        return tiers
    for _ in range(tok.count("number of tiers")):
        cls = tok.string("tier class")
        name = tok.string("tier name")
        tok.number("tier xmin")
        tok.number("tier xmax")
        n = tok.count(f"size of tier {name!r}")
        items: list[Interval] = []
        if cls == "IntervalTier":
            for _ in range(n):
                a = tok.number("interval xmin")
                b = tok.number("interval xmax")
                items.append(Interval(a, b, tok.string("interval text")))
        elif cls == "TextTier":
            for _ in range(n):
                t = tok.number("point time")
                items.append(Interval(t, t, tok.string("point mark")))
        else:
            raise FormatError(f"{p}: tier {name!r} has unknown class {cls!r}")
        if name in tiers:
            raise FormatError(f"{p}: two tiers are named {name!r}")
        tiers[name] = items
    return tiers
