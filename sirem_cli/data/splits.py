"""Subject-independent train/validation/test splits (paper 3.2: 10 / 2 / 4 of 16 speakers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sirem_cli.errors import InputError

PAPER_SPLIT = {"train": 10, "val": 2, "test": 4}


def parse_splits(spec: Sequence[str]) -> dict[str, str]:
    """Parse ``["train=sub009,sub013", "val=sub022", "test=sub023"]`` into subject -> split."""
    mapping: dict[str, str] = {}
    for item in spec:
        for part in item.split():
            name, sep, ids = part.partition("=")
            if not sep or name not in PAPER_SPLIT:
                raise InputError(f"--splits: {part!r} is not of the form train|val|test=ID,ID")
            for subject in filter(None, ids.split(",")):
                if subject in mapping:
                    raise InputError(f"--splits: subject {subject} is given twice")
                mapping[subject] = name
    return mapping


def assign_splits(
    subjects: Sequence[str], *, seed: int = 0, explicit: dict[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """Assign each subject to a split.

    Without ``explicit``: the paper's 10/2/4 proportions of 16, scaled to the number of
    subjects with at least one subject per split when there are three or more; all subjects
    in train otherwise. The shuffle is deterministic in ``seed`` and depends only on the sorted
    subject list, so per-subject runs over the same corpus agree.

    Returns:
        subject -> split, and a one-line note for the summary.
    """
    subjects = sorted(set(subjects))
    if explicit:
        missing = [s for s in subjects if s not in explicit]
        if missing:
            raise InputError(f"--splits: subject {missing[0]} is in no split")
        return {s: explicit[s] for s in subjects}, "splits given explicitly"
    n = len(subjects)
    if n < 3:
        return {s: "train" for s in subjects}, f"only {n} subject(s): all in train"
    total = sum(PAPER_SPLIT.values())
    n_val = max(1, round(n * PAPER_SPLIT["val"] / total))
    n_test = max(1, round(n * PAPER_SPLIT["test"] / total))
    while n - n_val - n_test < 1:
        if n_test > 1:
            n_test -= 1
        else:
            n_val -= 1
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [subjects[i] for i in order]
    mapping = {s: "test" for s in shuffled[:n_test]}
    mapping.update({s: "val" for s in shuffled[n_test : n_test + n_val]})
    mapping.update({s: "train" for s in shuffled[n_test + n_val :]})
    counts = {k: sum(v == k for v in mapping.values()) for k in PAPER_SPLIT}
    note = f"split {counts['train']}/{counts['val']}/{counts['test']} train/val/test subjects (seed {seed})"
    return mapping, note
