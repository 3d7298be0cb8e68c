import numpy as np
import pytest

from sirem_cli.data.eba import LABEL_IDS, contour_maps, rasterize_polyline
from sirem_cli.data.splits import assign_splits, parse_splits
from sirem_cli.errors import InputError

SUBJECTS = [f"sub{i:03d}" for i in range(16)]


def test_default_split_is_the_papers_10_2_4_and_stable():
    mapping, _ = assign_splits(SUBJECTS, seed=3)
    counts = {k: sum(v == k for v in mapping.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 10, "val": 2, "test": 4}
    again, _ = assign_splits(list(reversed(SUBJECTS)), seed=3)
    assert again == mapping  # independent of discovery order


@pytest.mark.parametrize(
    ("n", "expected"), [(3, (1, 1, 1)), (4, (2, 1, 1)), (8, (5, 1, 2)), (2, (2, 0, 0))]
)
def test_small_corpora_keep_every_split_non_empty(n, expected):
    mapping, note = assign_splits(SUBJECTS[:n])
    counts = tuple(sum(v == k for v in mapping.values()) for k in ("train", "val", "test"))
    assert counts == expected
    if n < 3:
        assert "all in train" in note


def test_explicit_splits():
    explicit = parse_splits(["train=sub000,sub001 val=sub002", "test=sub003"])
    mapping, _ = assign_splits(SUBJECTS[:4], explicit=explicit)
    assert mapping == {"sub000": "train", "sub001": "train", "sub002": "val", "sub003": "test"}
    with pytest.raises(InputError, match="in no split"):
        assign_splits(SUBJECTS[:5], explicit=explicit)
    with pytest.raises(InputError, match="not of the form"):
        parse_splits(["training=sub000"])
    with pytest.raises(InputError, match="twice"):
        parse_splits(["train=sub000 test=sub000"])


def test_polyline_raster_and_maps():
    line = rasterize_polyline(np.array([[2.0, 5.0], [10.0, 5.0]]), (16, 16))
    assert line[5, 2:11].all() and line.sum() == 9
    # a NaN vertex breaks the line: nothing is drawn across the hole
    broken = rasterize_polyline(
        np.array([[2.0, 5.0], [5.0, 5.0], [np.nan, np.nan], [9.0, 5.0], [12.0, 5.0]]), (16, 16)
    )
    assert broken[5, 2:6].all() and broken[5, 9:13].all() and not broken[5, 6:9].any()
    lone = rasterize_polyline(np.array([[np.nan, np.nan], [7.0, 3.0], [np.nan, np.nan]]), (16, 16))
    assert lone.sum() == 1 and lone[3, 7]
    arts = {
        "tongue": np.array([[2.0, 5.0], [10.0, 5.0]]),
        "hard_palate": np.array([[2.0, 12.0], [12.0, 12.0]]),
    }
    eba, labels = contour_maps(arts, (16, 16))
    assert eba.dtype == np.float32 and 0 <= eba.min() and eba.max() <= 1
    assert eba[5, 6] > 0.9  # on the tongue contour
    assert eba[12, 6] < 0.05  # the static palate is not explained by audio
    assert labels[5, 6] == LABEL_IDS["tongue"] and labels[12, 6] == LABEL_IDS["hard_palate"]
