"""Praat TextGrid reader and writer."""

from __future__ import annotations

import codecs

import pytest

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.textgrid import Interval, read_textgrid, write_textgrid

WORDS = [(0.0, 0.31, ""), (0.31, 0.7, "HELLO"), (0.7, 1.1, 'say "ʃ"'), (1.1, 2.0, "")]
PHONES = [(0.0, 0.31, ""), (0.31, 0.1 + 0.2 + 0.1, "HH"), (0.1 + 0.2 + 0.1, 0.7, "AH0"),
          (0.7, 1.1, "EY1"), (1.1, 2.0, "")]  # fmt: skip

SHORT_UTF8 = """File type = "ooTextFile"
Object class = "TextGrid"

0
2.5
<exists>
2
"IntervalTier"
"words"
0
2.5
3
0
0.8
""
0.8
1.6
"RAINBOW"
1.6
2.5
""
"TextTier"
"events"
0
2.5
1
1.25
"click"
"""


def test_round_trip_utf16_bom(tmp_path):
    path = tmp_path / "sub061_2drt_17_topic1_text.TextGrid"
    write_textgrid(path, {"words": WORDS, "phones": PHONES}, 0.0, 2.0)
    raw = path.read_bytes()
    assert raw[:2] in (codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)
    text = raw.decode("utf-16")
    assert text.startswith('File type = "ooTextFile"\nObject class = "TextGrid"')
    assert text.index('name = "words"') < text.index('name = "phones"')
    assert 'text = ""' in text  # silence is an empty label
    got = read_textgrid(path)
    assert list(got) == ["words", "phones"]
    assert got["words"] == [Interval(*w) for w in WORDS]
    assert got["phones"] == [Interval(*p) for p in PHONES]  # floats exact, not rounded


def test_writer_fills_gaps_with_silence(tmp_path):
    path = tmp_path / "gap_text.TextGrid"
    write_textgrid(path, {"words": [(0.5, 1.0, "A"), (1.5, 2.0, "B")]}, 0.0, 3.0)
    words = read_textgrid(path)["words"]
    assert [(w.xmin, w.xmax, w.text) for w in words] == [
        (0.0, 0.5, ""),
        (0.5, 1.0, "A"),
        (1.0, 1.5, ""),
        (1.5, 2.0, "B"),
        (2.0, 3.0, ""),
    ]


def test_writer_rejects_bad_intervals(tmp_path):
    path = tmp_path / "bad_text.TextGrid"
    with pytest.raises(ShapeError, match="overlaps"):
        write_textgrid(path, {"w": [(0.0, 1.0, "A"), (0.5, 1.5, "B")]}, 0.0, 2.0)
    with pytest.raises(ShapeError, match="outside"):
        write_textgrid(path, {"w": [(0.0, 2.5, "A")]}, 0.0, 2.0)
    with pytest.raises(ShapeError):
        write_textgrid(path, {"w": []}, 1.0, 1.0)


def test_reads_handwritten_short_utf8(tmp_path):
    path = tmp_path / "short.TextGrid"
    path.write_text(SHORT_UTF8, encoding="utf-8")
    got = read_textgrid(path)
    assert got == {
        "words": [Interval(0, 0.8, ""), Interval(0.8, 1.6, "RAINBOW"), Interval(1.6, 2.5, "")],
        "events": [Interval(1.25, 1.25, "click")],
    }


def test_reads_long_utf8_with_bom_and_strips_bom_in_labels(tmp_path):
    path = tmp_path / "long_text.TextGrid"
    text = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 1
        intervals: size = 2
        intervals [1]:
            xmin = 0
            xmax = 0.25
            text = "\ufeffAA1"
        intervals [2]:
            xmin = 0.25
            xmax = 1
            text = ""
"""
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8-sig"))
    assert read_textgrid(path) == {"phones": [Interval(0.0, 0.25, "AA1"), Interval(0.25, 1.0, "")]}
    path.write_bytes(text.encode("utf-16-le"))  # UTF-16 without a BOM
    assert read_textgrid(path)["phones"][0].text == "AA1"


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (SHORT_UTF8[: SHORT_UTF8.index('"RAINBOW"')], "ends early"),
        (SHORT_UTF8.replace('"TextGrid"', '"Sound"'), "not a Praat text TextGrid"),
        (SHORT_UTF8.replace('"TextTier"', '"OtherTier"'), "unknown class 'OtherTier'"),
        (SHORT_UTF8.replace("1.25", '"x"'), "expected point time"),
        (SHORT_UTF8.replace('"events"', '"words"'), "two tiers are named 'words'"),
    ],
)
def test_read_errors_name_the_file(tmp_path, content, phrase):
    path = tmp_path / "bad.TextGrid"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FormatError) as exc:
        read_textgrid(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{path}:") and phrase in msg, msg


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_textgrid(tmp_path / "missing.TextGrid")
    path = tmp_path / "bin.TextGrid"
    path.write_bytes(b"\xff\xd8\xff\xe0 not text \x80\x81")
    with pytest.raises(FormatError, match="not a UTF-16 or UTF-8 text file"):
        read_textgrid(path)
