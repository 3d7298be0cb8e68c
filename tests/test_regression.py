"""Behaviour unchanged: prepare, every baseline, 2 epochs of training and reconstruct give the
outputs pinned in tests/data/regression.json (written by tests/regression_pipeline.py from the
code before the architecture refactor) to within 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CORPUS_ARGS
from regression_pipeline import CORPUS, run

GOLDEN = Path(__file__).parent / "data" / "regression.json"
TOL = 1e-5


def _compare(expected: dict, got: dict, path: str = "") -> list[str]:
    if "sum" in expected:
        bad = []
        if expected["shape"] != got["shape"]:
            return [f"{path}: shape {got['shape']} != {expected['shape']}"]
        for key in ("sum", "sum_sq"):
            scale = max(1.0, abs(expected[key]))
            if abs(expected[key] - got[key]) > TOL * scale:
                bad.append(f"{path}: {key} {got[key]!r} != {expected[key]!r}")
        for i, (a, b) in enumerate(zip(expected["samples"], got["samples"], strict=True)):
            if abs(a - b) > TOL * max(1.0, abs(a)):
                bad.append(f"{path}: sample {i} {b!r} != {a!r}")
        return bad
    assert sorted(expected) == sorted(got), f"{path}: {sorted(got)} != {sorted(expected)}"
    return [line for key in expected for line in _compare(expected[key], got[key], f"{path}/{key}")]


@pytest.mark.slow
def test_pipeline_outputs_are_unchanged(tmp_path, prepared_file):
    # the shared prepared file is the corpus the golden values were computed on
    assert CORPUS == [x for k, v in CORPUS_ARGS.items() for x in (f"--{k}", str(int(v)))]
    got = run(tmp_path, prepared=prepared_file)
    mismatches = _compare(json.loads(GOLDEN.read_text()), got)
    assert not mismatches, "\n".join(mismatches[:20])
