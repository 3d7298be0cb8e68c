"""The paper's tables from evaluation results.

* Table 1: one block per target; rows are methods, columns metrics (mean +- sample std over
  sequences; FID is one value per method). The best value of each column is marked.
* Table 2: for each target, every metric's difference SIREM minus SIREM without audio,
  marked better or worse from the metric's direction (higher-is-better flags of
  :mod:`sirem_cli.metrics.registry`).

Tables are returned as :class:`TableData` (plain strings plus per-cell marks), which renders
to markdown (:meth:`TableData.to_markdown`) or to a ``rich`` table (:meth:`TableData.to_rich`,
rich imported lazily), so the CLI and the markdown report show the same numbers;
:func:`results_to_markdown` assembles them into the evaluation report. Imports run one way:
report -> metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sirem_cli.metrics.evaluate import EvalResult
from sirem_cli.metrics.registry import METRICS, PAPER_METRICS
from sirem_cli.recon.registry import BASELINES

__all__ = [
    "METHOD_LABELS",
    "Delta",
    "TableData",
    "method_label",
    "ordered_methods",
    "per_sequence_tables",
    "results_to_markdown",
    "split_name",
    "table1",
    "table2",
    "table2_deltas",
]

#: Display names of the known methods (the baselines' from their registry) and targets.
METHOD_LABELS: dict[str, str] = {
    **{name: spec.label for name, spec in BASELINES.items()},
    "sirem-no-audio": "SIREM (w/o audio)",
    "sirem": "SIREM",
    "sirem-mri": "SIREM MRI branch",
    "sirem-audio": "SIREM audio branch",
    "sirem-no-audio-mri": "SIREM (w/o audio) MRI branch",
    "speech-prior-no-audio": "Speech prior (w/o audio)",
    "speech-prior": "Speech prior",
    "reference": "Reference (USC)",
    "truth": "Ground truth",
}
#: Row order of known methods; others follow in order of appearance.
METHOD_ORDER: tuple[str, ...] = (
    *BASELINES,
    "sirem-mri",
    "sirem-no-audio",
    "sirem",
    "speech-prior-no-audio",
    "speech-prior",
)
#: Column order: the paper's metrics, then the others.
TABLE_METRIC_ORDER: tuple[str, ...] = (*PAPER_METRICS, "mse", "nmse")

NA = "n/a"


def split_name(name: str) -> tuple[str, str]:
    """``"sirem (model_a.h5)"`` -> ``("sirem", "model_a.h5")``; a plain name -> ``(name, "")``.

    Evaluation names a method that two files share after each file (see
    :func:`sirem_cli.api.evaluate.unique_method_names`).
    """
    base, sep, rest = name.partition(" (")
    if sep and rest.endswith(")") and base in METHOD_LABELS:
        return base, rest[:-1]
    return name, ""


def method_label(name: str) -> str:
    """Display name of a method or target (the name itself when unknown).

    A known method qualified by its file keeps the qualifier: ``"sirem (model_a.h5)"`` ->
    ``"SIREM (model_a.h5)"``.
    """
    if name in METHOD_LABELS:
        return METHOD_LABELS[name]
    base, qualifier = split_name(name)
    return f"{METHOD_LABELS[base]} ({qualifier})" if qualifier else name


def _arrow(metric: str) -> str:
    return "↑" if METRICS[metric].higher_is_better else "↓"


def _fmt(value: float, metric: str, *, signed: bool = False) -> str:
    if not math.isfinite(value):
        return NA
    d = METRICS[metric].decimals
    return f"{value:+.{d}f}" if signed else f"{value:.{d}f}"


@dataclass(frozen=True)
class TableData:
    """A rendered table.

    Attributes:
        title: heading.
        columns: column headers.
        rows: cell strings, one tuple per row (same length as ``columns``).
        marks: per-cell marks, same layout as ``rows``: ``""``, ``"best"``, ``"better"`` or
            ``"worse"`` (empty tuple: no marks).
        caption: one-paragraph note printed under the table.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    marks: tuple[tuple[str, ...], ...] = ()
    caption: str = ""

    def mark(self, row: int, col: int) -> str:
        """The mark of a cell (``""`` when none)."""
        return self.marks[row][col] if self.marks else ""

    def to_markdown(self) -> str:
        """GitHub-flavoured markdown: bold title, pipe table, best cells in bold, caption."""
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.columns) - 1)) + "|")
        for i, row in enumerate(self.rows):
            cells = [
                f"**{c}**" if self.mark(i, j) == "best" and c not in ("", NA) else c
                for j, c in enumerate(row)
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines)

    def to_rich(self) -> Any:
        """A ``rich.table.Table``: best cells bold, better green, worse red."""
        from rich.table import Table

        table = Table(title=self.title or None, caption=self.caption or None)
        for j, col in enumerate(self.columns):
            table.add_column(col, justify="left" if j == 0 else "right")
        style = {"best": "bold", "better": "green", "worse": "red"}
        for i, row in enumerate(self.rows):
            cells = []
            for j, c in enumerate(row):
                s = style.get(self.mark(i, j))
                cells.append(f"[{s}]{_escape(c)}[/{s}]" if s else _escape(c))
            table.add_row(*cells)
        return table


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def ordered_methods(names: Iterable[str]) -> list[str]:
    """Known methods in the paper's row order (a file-qualified name at its method's place),
    then the others in order of appearance."""
    seen = list(dict.fromkeys(names))
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    known = [m for m in seen if split_name(m)[0] in rank]
    known.sort(key=lambda m: rank[split_name(m)[0]])  # stable: files of one method keep order
    return known + [m for m in seen if m not in known]


def _table_metrics(results: Sequence[EvalResult], metrics: Iterable[str] | None) -> list[str]:
    present = {m for r in results for m in r.metrics} if metrics is None else set(metrics)
    order = [m for m in TABLE_METRIC_ORDER if m in present]
    return order + [m for m in METRICS if m in present and m not in order]


def table1(
    results: Sequence[EvalResult],
    metrics: Iterable[str] | None = None,
    *,
    show_std: bool = True,
    skip_self: bool = True,
) -> list[TableData]:
    """Table 1: one block per target, rows = methods, columns = metrics.

    Args:
        results: evaluation results (any mix of methods and targets).
        metrics: columns; None: every metric requested in ``results``.
        show_std: append "± std" over sequences to frame-scope means.
        skip_self: leave out a method evaluated against itself (method name == target name).

    Returns:
        One :class:`TableData` per target, targets in order of first appearance.
    """
    cols = _table_metrics(results, metrics)
    blocks = []
    for target in dict.fromkeys(r.target for r in results):
        by_method = {
            r.method: r
            for r in results
            if r.target == target and not (skip_self and r.method == target)
        }
        methods = ordered_methods(by_method)
        rows: list[list[str]] = []
        marks: list[list[str]] = []
        best: dict[str, float] = {}
        for m in cols:
            vals = [by_method[x].value(m) for x in methods]
            finite = [v for v in vals if math.isfinite(v)]
            if len(finite) >= 2:
                best[m] = max(finite) if METRICS[m].higher_is_better else min(finite)
        for x in methods:
            r = by_method[x]
            row, mk = [method_label(x)], [""]
            for m in cols:
                stats = r.summary.get(m)
                if stats is None:
                    row.append(NA if m in r.unavailable or m in r.metrics else "")
                    mk.append("")
                    continue
                cell = _fmt(stats.mean, m)
                if show_std and METRICS[m].scope == "frame" and math.isfinite(stats.std):
                    cell += f" ± {_fmt(stats.std, m)}"
                row.append(cell)
                mk.append("best" if m in best and stats.mean == best[m] else "")
            rows.append(row)
            marks.append(mk)
        blocks.append(
            TableData(
                title=f"Target: {method_label(target)}",
                columns=("Method", *(f"{METRICS[m].label} {_arrow(m)}" for m in cols)),
                rows=tuple(tuple(r) for r in rows),
                marks=tuple(tuple(m) for m in marks),
                caption=_caption1([by_method[x] for x in methods]),
            )
        )
    return blocks


def _caption1(results: Sequence[EvalResult]) -> str:
    if not results:
        return ""
    n_seq = sorted({len(r.sequences) for r in results})
    parts = [
        "Mean ± sample standard deviation over "
        + "/".join(str(n) for n in n_seq)
        + " sequences (frame metrics averaged within each sequence); best in bold"
    ]
    fid = sorted({r.summary["fid"].n for r in results if "fid" in r.summary})
    if fid:
        parts.append("FID over " + "/".join(str(n) for n in fid) + " frames per method")
    missing = sorted({METRICS[m].label for r in results for m in r.unavailable})
    if missing:
        parts.append("n/a: " + ", ".join(missing) + " unavailable (see notes)")
    return "; ".join(parts) + "."


@dataclass(frozen=True)
class Delta:
    """One cell of table 2.

    Attributes:
        target: target name.
        metric: metric name.
        delta: value(method) - value(ablation); NaN when either is missing.
        verdict: ``"better"``, ``"worse"``, ``"same"`` or ``"n/a"``.
    """

    target: str
    metric: str
    delta: float
    verdict: str


def table2_deltas(
    results: Sequence[EvalResult],
    *,
    method: str = "sirem",
    ablation: str = "sirem-no-audio",
    metrics: Iterable[str] | None = None,
) -> list[Delta]:
    """Every metric's difference ``method - ablation`` for each target that has both.

    A delta is *better* when it moves in the metric's good direction (positive for
    higher-is-better metrics, negative otherwise), *same* when exactly 0.
    """
    cols = _table_metrics(results, metrics)
    out = []
    for target in dict.fromkeys(r.target for r in results):
        pair = {r.method: r for r in results if r.target == target}
        if method not in pair or ablation not in pair:
            continue
        for m in cols:
            d = pair[method].value(m) - pair[ablation].value(m)
            if not math.isfinite(d):
                verdict = "n/a"
            elif d == 0:
                verdict = "same"
            else:
                verdict = "better" if (d > 0) == METRICS[m].higher_is_better else "worse"
            out.append(Delta(target, m, d, verdict))
    return out


def table2(
    results: Sequence[EvalResult],
    *,
    method: str = "sirem",
    ablation: str = "sirem-no-audio",
    metrics: Iterable[str] | None = None,
) -> TableData | None:
    """Table 2: rows = targets, columns = delta per metric, each marked better or worse.

    Returns:
        The table, or None when no target has results for both ``method`` and ``ablation``.
    """
    deltas = table2_deltas(results, method=method, ablation=ablation, metrics=metrics)
    if not deltas:
        return None
    cols = list(dict.fromkeys(d.metric for d in deltas))
    rows, marks = [], []
    for target in dict.fromkeys(d.target for d in deltas):
        cells = {d.metric: d for d in deltas if d.target == target}
        row, mk = [method_label(target)], [""]
        for m in cols:
            d = cells[m]
            row.append(NA if d.verdict == "n/a" else f"{_fmt(d.delta, m, signed=True)} {d.verdict}")
            mk.append(d.verdict if d.verdict in ("better", "worse") else "")
        rows.append(tuple(row))
        marks.append(tuple(mk))
    n_better = sum(d.verdict == "better" for d in deltas)
    n_defined = sum(d.verdict != "n/a" for d in deltas)
    caption = (
        f"Δ = {method_label(method)} − {method_label(ablation)} (summary means). "
        "Positive is better for ↑ metrics, negative for ↓ metrics. "
        f"Better in {n_better} of {n_defined} metric–target comparisons."
    )
    return TableData(
        title=f"Effect of speech conditioning: {method_label(method)} vs {method_label(ablation)}",
        columns=("Target", *(f"Δ{METRICS[m].label} {_arrow(m)}" for m in cols)),
        rows=tuple(rows),
        marks=tuple(marks),
        caption=caption,
    )


def per_sequence_tables(results: Sequence[EvalResult]) -> list[TableData]:
    """One table per (method, target): a row per sequence, then the mean ± std row."""
    blocks = []
    for r in results:
        cols = [m for m in _table_metrics([r], None) if METRICS[m].scope == "frame"]
        cols = [m for m in cols if m in r.summary]
        if not cols:
            continue
        rows = [
            (seq, str(r.n_frames.get(seq, "")), *(_fmt(r.per_sequence[seq][m], m) for m in cols))
            for seq in r.sequences
        ]
        summary = []
        for m in cols:
            s = r.summary[m]
            cell = _fmt(s.mean, m)
            if math.isfinite(s.std):
                cell += f" ± {_fmt(s.std, m)}"
            summary.append(cell)
        rows.append(("mean ± std", str(sum(r.n_frames.values())), *summary))
        excluded = {METRICS[m].label: r.summary[m].excluded_frames for m in cols}
        excluded = {k: v for k, v in excluded.items() if v}
        caption = (
            "Frames with an undefined value skipped: "
            + ", ".join(f"{k} {v}" for k, v in excluded.items())
            if excluded
            else ""
        )
        blocks.append(
            TableData(
                title=f"{method_label(r.method)} vs {method_label(r.target)}: per sequence",
                columns=("Sequence", "Frames", *(f"{METRICS[m].label} {_arrow(m)}" for m in cols)),
                rows=tuple(rows),
                caption=caption,
            )
        )
    return blocks


def results_to_markdown(results: Sequence[EvalResult], *, per_sequence: bool = True) -> str:
    """Markdown report: table 1 (one block per target), table 2 when both "sirem" and
    "sirem-no-audio" were evaluated, notes on unavailable metrics, and optionally the
    per-sequence values of every (method, target) pair."""
    parts = ["# Evaluation", ""]
    for block in table1(results):
        parts += [block.to_markdown(), ""]
    t2 = table2(results)
    if t2 is not None:
        parts += [t2.to_markdown(), ""]
    notes = sorted({msg for r in results for msg in r.unavailable.values()})
    if notes:
        parts += ["Unavailable metrics:", ""] + [f"- {n}" for n in notes] + [""]
    if per_sequence:
        for block in per_sequence_tables(results):
            parts += [block.to_markdown(), ""]
    return "\n".join(parts).rstrip() + "\n"
