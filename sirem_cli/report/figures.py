"""The paper's figures 2 and 3 as PNG files (matplotlib, Agg canvas, imported lazily).

* Figure 2: a qualitative panel for one utterance. Columns are frames; rows are the target
  (named: "Ground truth", "Reference (USC)" or another method) and each method, then one
  error-map row |method - target| per method, labelled with the target's name.
* Figure 3: reconstruction time per frame (ms) per method on a logarithmic axis (always), the
  bar being the mean over the utterances after the first and the error bar their sample
  standard deviation. Each command's first utterance carries its warm-up (plans, kernels,
  imports) and is drawn apart as a marker, outside the statistics. Solid lines mark real time
  at the data's own frame rate (12.8 frames/s for 13-arm frames, 83 for 2-arm frames, read
  from the files), a dashed line the 30 frames/s of video as a second reference.

Every figure is built on a ``matplotlib.figure.Figure`` with no pyplot state (safe from
library code, never opens a window). Labels are wrapped and the canvas is sized from their
measured extents, so they are neither clipped nor overlapping at any number of methods.
Next to each PNG a small JSON sidecar (``<name>.labels.json``) records the labels, scale and
reference lines the figure was drawn with; the tests compare the README's figures with the
code through it. Files are written atomically.
"""

from __future__ import annotations

import functools
import json
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import FormatError, ShapeError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.report.tables import method_label

__all__ = [
    "REALTIME_MS_PER_FRAME",
    "REFERENCE_FPS",
    "FileRuntime",
    "build_figure2",
    "build_figure3",
    "figure2_colorbar_label",
    "figure2_labels",
    "figure2_panel",
    "figure3_labels",
    "figure3_legend",
    "figure3_runtime",
    "pick_frames",
    "read_runtimes",
    "realtime_lines",
    "sidecar_path",
    "wrap_label",
]

#: The video reference rate of figure 3's dashed line (frames per second).
REFERENCE_FPS = 30.0
#: 30 frames per second, in ms per frame.
REALTIME_MS_PER_FRAME = 1000.0 / REFERENCE_FPS
#: Characters per line of wrapped tick labels (figure 3) and row labels (figure 2).
LABEL_WIDTH = 18
ROW_LABEL_WIDTH = 22
#: Figure 3's logarithmic axis spans at least these ms/frame (the same decades run to run).
MIN_Y_RANGE_MS = (0.1, 1000.0)
#: Legend text of figure 3's warm-up marker.
WARMUP_LABEL = "first utterance of each file (warm-up), not in mean or error bar"
#: Legend text of figure 3's bars.
BAR_LABEL = "mean ± std over the other utterances"


def pick_frames(n_total: int, n: int = 5) -> list[int]:
    """``n`` evenly spaced frame indices in [0, n_total), ends excluded when there is room."""
    if n_total <= 0:
        raise ShapeError("no frames to pick from")
    n = min(n, n_total)
    idx = np.linspace(0, n_total - 1, n + 2)[1:-1] if n_total > n + 1 else np.arange(n)
    return sorted({round(float(i)) for i in idx})


def wrap_label(text: str, width: int = LABEL_WIDTH) -> str:
    """``text`` broken at spaces into lines of at most ``width`` characters; a word longer
    than 1.5 ``width`` (a file name) is cut into pieces of that length."""
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    longest = int(1.5 * width)
    out = []
    for line in lines:
        out += [line[i : i + longest] for i in range(0, len(line), longest)]
    return "\n".join(out) or text


def sidecar_path(png: Path | str) -> Path:
    """The labels sidecar of a figure: ``figure2.png`` -> ``figure2.labels.json``."""
    png = Path(png)
    return png.with_name(png.stem + ".labels.json")


def _figure(figsize: tuple[float, float], dpi: int, layout: str | None = "constrained") -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)  # a renderer, to measure labels before saving
    return fig


@functools.cache
def _sizer() -> Any:
    """A small figure kept to measure text on (extents in inches do not depend on its dpi)."""
    return _figure((1.0, 1.0), 100, layout=None)


def _text_size(text: str | None, fontsize: float) -> tuple[float, float]:
    """(width, height) in inches of ``text`` (may hold newlines) at ``fontsize`` points."""
    if not text:
        return 0.0, 0.0
    fig = _sizer()
    t = fig.text(0, 0, text, fontsize=fontsize)
    box = t.get_window_extent(fig.canvas.get_renderer())
    t.remove()
    return box.width / fig.dpi, box.height / fig.dpi


def _fit_inside(fig: Any, artists: Sequence[Any], pad_px: float = 3.0) -> None:
    """Shrink the constrained-layout rectangle until every artist lies inside the canvas
    (constrained layout alone can leave a long label or an outside legend a few pixels over)."""
    engine = fig.get_layout_engine()
    x0, y0, x1, y1 = 0.0, 0.0, 1.0, 1.0
    for _ in range(4):
        fig.draw_without_rendering()  # layout and text extents, no pixels
        renderer = fig.canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        boxes = [a.get_window_extent(renderer) for a in artists if a.get_visible() and a.get_text()]
        if not boxes:
            return
        left = max(0.0, pad_px - min(b.x0 for b in boxes)) / width
        right = max(0.0, max(b.x1 for b in boxes) - width + pad_px) / width
        bottom = max(0.0, pad_px - min(b.y0 for b in boxes)) / height
        top = max(0.0, max(b.y1 for b in boxes) - height + pad_px) / height
        if left == right == bottom == top == 0.0:
            return
        x0, y0, x1, y1 = x0 + left, y0 + bottom, x1 - right, y1 - top
        engine.set(rect=(x0, y0, x1 - x0, y1 - y0))


def _save(fig: Any, out: Path, overwrite: bool, meta: dict[str, Any] | None) -> Path:
    out = Path(out)
    with atomic_path(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", facecolor="white")
    if meta is not None:
        with atomic_path(sidecar_path(out), overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------
# Figure 2
# --------------------------------------------------------------------------------------------


def figure2_labels(methods: Sequence[str], target: str, *, error_maps: bool = True) -> list[str]:
    """Figure 2's row labels, top to bottom: the target, each method, each method's error.

    Args:
        methods: method names (display labels come from :func:`~sirem_cli.report.tables.method_label`).
        target: the target's name (``"truth"``, ``"reference"`` or another method's).
        error_maps: include the error rows.

    Returns:
        The labels, unwrapped (``"|SIREM − Ground truth|"`` for an error row).
    """
    tgt = method_label(target)
    rows = [tgt] + [method_label(m) for m in methods]
    if error_maps:
        rows += [f"|{method_label(m)} − {tgt}|" for m in methods]
    return rows


def figure2_colorbar_label(target: str) -> str:
    """Figure 2's colour bar label, naming the target of the error maps."""
    return f"absolute error against {method_label(target)}"


@dataclass
class Figure2:
    """A built figure 2: the matplotlib figure, its (rows, columns) grid of image axes and its
    sidecar metadata."""

    figure: Any
    axes: Any
    meta: dict[str, Any]


def build_figure2(
    recons: Mapping[str, np.ndarray],
    target: np.ndarray,
    *,
    target_name: str = "reference",
    frames: Sequence[int] | None = None,
    n_frames: int = 5,
    error_maps: bool = True,
    error_vmax: float | None = None,
    frame_rate_hz: float | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> Figure2:
    """Build the qualitative panel of one utterance (paper figure 2); see :func:`figure2_panel`."""
    ref = np.asarray(target, dtype=np.float32)
    if ref.ndim != 3:
        raise ShapeError(f"target must be (F, H, W), got {ref.shape}")
    if not recons:
        raise ShapeError("figure 2 needs at least one method")
    recs = {}
    for name, r in recons.items():
        a = np.asarray(r, dtype=np.float32)
        if a.shape != ref.shape:
            raise ShapeError(f"{name}: frames {a.shape} differ from the target {ref.shape}")
        recs[name] = a
    cols = list(frames) if frames is not None else pick_frames(ref.shape[0], n_frames)
    if not cols or min(cols) < 0 or max(cols) >= ref.shape[0]:
        raise ShapeError(f"frame indices {cols} out of range for {ref.shape[0]} frames")

    errors = {n: np.abs(a[cols] - ref[cols]) for n, a in recs.items()}
    if error_vmax is None:
        all_err = np.concatenate([e.ravel() for e in errors.values()])
        error_vmax = max(float(np.percentile(all_err, 99)), 1e-6)

    labels = figure2_labels(list(recs), target_name, error_maps=error_maps)
    image_rows = [ref, *recs.values()]
    err_rows = list(errors.values()) if error_maps else []
    n_rows = len(image_rows) + len(err_rows)
    h, w = ref.shape[1:]
    n_cols = len(cols)
    heads = [f"t = {k / frame_rate_hz:.2f} s" if frame_rate_hz else f"frame {k}" for k in cols]
    wrapped = [wrap_label(label, ROW_LABEL_WIDTH) for label in labels]
    colorbar_label = figure2_colorbar_label(target_name) if err_rows else None

    # Layout in inches, computed from the measured labels (no layout engine: constrained layout
    # costs seconds per draw at 20+ axes, and aspect-locked images move after it measured).
    label_w = max(_text_size(t, 8)[0] for t in wrapped)  # widest row label
    label_h = max(_text_size(t, 8)[1] for t in wrapped)  # tallest row label
    head_w = max(_text_size(t, 8)[0] for t in heads)
    cell_h = max(1.35 if n_rows <= 9 else 0.9, label_h + 0.1)  # a row fits its label
    cell_w = max(cell_h * w / h, head_w + 0.1)  # a column fits its title
    cell_h = cell_w * h / w  # square pixels
    gap, margin, pad = 0.06, 0.1, 0.08
    head_h = _text_size(heads[0], 8)[1] + 0.12
    title_h = _text_size(title, 10)[1] + 0.15 if title else 0.0
    bar_w = 0.0
    if colorbar_label is not None:  # bar, its tick labels, its (wrapped) label
        bar_w = 0.15 + 0.45 + _text_size(wrap_label(colorbar_label, 24), 8)[1] + 0.1
    left = margin + label_w + pad
    grid_w = n_cols * cell_w + (n_cols - 1) * gap
    grid_h = n_rows * cell_h + (n_rows - 1) * gap
    fig_w = left + grid_w + (0.15 + bar_w if bar_w else 0.0) + margin
    fig_h = margin + grid_h + head_h + title_h + margin
    fig = _figure((fig_w, fig_h), dpi, layout=None)
    axes = np.empty((n_rows, n_cols), dtype=object)
    for i in range(n_rows):
        bottom = margin + (n_rows - 1 - i) * (cell_h + gap)
        for j in range(n_cols):
            rect = (left + j * (cell_w + gap), bottom, cell_w, cell_h)
            axes[i, j] = fig.add_axes(
                (rect[0] / fig_w, rect[1] / fig_h, rect[2] / fig_w, rect[3] / fig_h)
            )
    err_im = None
    for i, data in enumerate(image_rows):
        for j, k in enumerate(cols):
            axes[i, j].imshow(data[k], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    for i, err in enumerate(err_rows, start=len(image_rows)):
        for j in range(n_cols):
            err_im = axes[i, j].imshow(
                err[j], cmap="inferno", vmin=0.0, vmax=error_vmax, interpolation="nearest"
            )
    for i, text in enumerate(wrapped):
        axes[i, 0].set_ylabel(text, fontsize=8, rotation=0, ha="right", va="center")
        axes[i, 0].yaxis.set_label_coords(-pad / cell_w, 0.5)
    for j, head in enumerate(heads):
        axes[0, j].set_title(head, fontsize=8, pad=4)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if err_im is not None:
        # One bar beside the error rows.
        n_err = len(err_rows)
        height = n_err * cell_h + (n_err - 1) * gap
        cax = fig.add_axes(
            ((left + grid_w + 0.15) / fig_w, margin / fig_h, 0.15 / fig_w, height / fig_h)
        )
        cb = fig.colorbar(err_im, cax=cax)
        cb.ax.tick_params(labelsize=7)
        cb.set_label(wrap_label(colorbar_label, 24), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, x=(left + grid_w / 2) / fig_w, y=1 - margin / fig_h)
    meta = {
        "figure": "figure2",
        "methods": list(recs),
        "target": target_name,
        "row_labels": labels,
        "column_titles": heads,
        "colorbar_label": colorbar_label,
        "title": title,
    }
    return Figure2(fig, axes, meta)


def figure2_panel(
    recons: Mapping[str, np.ndarray],
    target: np.ndarray,
    out: Path | str,
    *,
    target_name: str = "reference",
    frames: Sequence[int] | None = None,
    n_frames: int = 5,
    error_maps: bool = True,
    error_vmax: float | None = None,
    frame_rate_hz: float | None = None,
    title: str | None = None,
    dpi: int = 150,
    overwrite: bool = True,
    sidecar: bool = True,
) -> Path:
    """Write the qualitative panel of one utterance (paper figure 2).

    Args:
        recons: method name -> (F, H, W) frames in [0, 1], all of the target's shape.
        target: (F, H, W) target frames in [0, 1].
        out: output PNG path.
        target_name: the target (``"truth"``, ``"reference"`` or a method): labels the target
            row, every error row (``|SIREM − Ground truth|``) and the colour bar.
        frames: frame indices shown as columns; None picks ``n_frames`` evenly spaced ones.
        n_frames: number of columns when ``frames`` is None.
        error_maps: add one row of |recon - target| per method.
        error_vmax: upper end of the error colour scale; None uses the 99th percentile of all
            shown errors.
        frame_rate_hz: when given, columns are labelled with the frame time in seconds.
        title: figure title.
        dpi: resolution.
        overwrite: replace an existing file.
        sidecar: also write ``<stem>.labels.json`` (:func:`sidecar_path`).

    Returns:
        ``out``.

    Raises:
        ShapeError: shapes disagree, no methods, or a frame index is out of range.
    """
    built = build_figure2(
        recons,
        target,
        target_name=target_name,
        frames=frames,
        n_frames=n_frames,
        error_maps=error_maps,
        error_vmax=error_vmax,
        frame_rate_hz=frame_rate_hz,
        title=title,
        dpi=dpi,
    )
    return _save(built.figure, Path(out), overwrite, built.meta if sidecar else None)


# --------------------------------------------------------------------------------------------
# Figure 3
# --------------------------------------------------------------------------------------------


def figure3_labels(methods: Sequence[str]) -> list[str]:
    """Figure 3's tick labels (unwrapped), one per method, left to right."""
    return [method_label(m) for m in methods]


def _fps(rate: float) -> str:
    return f"{rate:.1f}".rstrip("0").rstrip(".")


def realtime_lines(
    frame_rates_hz: Iterable[float], reference_fps: float | None = REFERENCE_FPS
) -> list[tuple[str, float, str]]:
    """Figure 3's horizontal lines: ``(legend label, ms/frame, kind)``.

    One ``"data"`` line per distinct frame rate of the data (ascending ms), then the
    ``"reference"`` video rate unless it equals a data rate.
    """
    rates = sorted({round(float(r), 6) for r in frame_rates_hz if r and r > 0}, reverse=True)
    lines = [
        (f"real time at the data's {_fps(r)} fps ({1000 / r:.1f} ms/frame)", 1000 / r, "data")
        for r in rates
    ]
    if reference_fps and not any(abs(r - reference_fps) < 1e-6 for r in rates):
        ms = 1000 / reference_fps
        lines.append((f"{_fps(reference_fps)} fps video ({ms:.1f} ms/frame)", ms, "reference"))
    return lines


def figure3_legend(lines: Sequence[tuple[str, float, str]], *, warmup: bool = True) -> list[str]:
    """Figure 3's legend, top to bottom: the lines of :func:`realtime_lines`, the two bar
    colours, and the warm-up marker."""
    out = [label for label, _, _ in lines]
    out += [f"{BAR_LABEL}: faster than {_limit_text(lines)}", f"{BAR_LABEL}: slower"]
    return out + ([WARMUP_LABEL] if warmup else [])


@dataclass
class Figure3:
    """A built figure 3: the matplotlib figure, its axes and its sidecar metadata."""

    figure: Any
    axes: Any
    meta: dict[str, Any]


def _stats(name: str, vals: Sequence[float] | float, warmup: bool) -> tuple[float, float, float]:
    """(mean, std, first) of one method; mean/std over the values after the first."""
    v = np.atleast_1d(np.asarray(vals, dtype=np.float64))
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ShapeError(f"{name}: ms/frame values must be finite and >= 0, got {v.tolist()}")
    first = float(v[0]) if warmup else math.nan
    steady = v[1:] if warmup else v
    mean = float(steady.mean()) if steady.size else math.nan
    std = float(steady.std(ddof=1)) if steady.size > 1 else 0.0
    return mean, std, first


def build_figure3(
    ms_per_frame: Mapping[str, Sequence[float] | float],
    *,
    frame_rates_hz: Iterable[float] = (),
    reference_fps: float | None = REFERENCE_FPS,
    warmup: bool = True,
    title: str | None = "Reconstruction time per frame",
    dpi: int = 150,
) -> Figure3:
    """Build the runtime chart (paper figure 3); see :func:`figure3_runtime`."""
    if not ms_per_frame:
        raise ShapeError("figure 3 needs at least one method")
    from matplotlib.patches import Patch

    names = list(ms_per_frame)
    stats = [_stats(n, ms_per_frame[n], warmup) for n in names]
    means = np.array([s[0] for s in stats])
    stds = np.array([s[1] for s in stats])
    firsts = np.array([s[2] for s in stats])
    lines = realtime_lines(frame_rates_hz, reference_fps)
    data_ms = [ms for _, ms, kind in lines if kind == "data"]
    limit_ms = min(data_ms) if data_ms else min((ms for _, ms, _ in lines), default=math.inf)

    labels = figure3_labels(names)
    wrapped = [wrap_label(t) for t in labels]
    legend_rows = len(lines) + 2 + int(warmup)
    label_lines = max(t.count("\n") + 1 for t in wrapped)
    height = 3.2 + 0.16 * label_lines + 0.2 * legend_rows + (0.35 if title else 0.0)
    fig = _figure((6.0, height), dpi)
    ax = fig.subplots()
    x = np.arange(len(names), dtype=float)
    ax.set_yscale("log")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xticks(x, wrapped, fontsize=8)
    # Columns as wide as the widest label (measured), so tick labels never overlap.
    widest = max(_text_size(t, 8)[0] for t in wrapped)
    fig.set_size_inches(max(6.0, len(names) * (widest + 0.3) + 1.2), height)

    positive = np.concatenate([means[np.isfinite(means)], firsts[np.isfinite(firsts)]])
    positive = positive[positive > 0]
    floor = float(positive.min()) / 2 if positive.size else MIN_Y_RANGE_MS[0]
    lo = min(10 ** math.floor(math.log10(floor)), MIN_Y_RANGE_MS[0])
    tops = [m + s for m, s in zip(means, stds, strict=True) if math.isfinite(m)]
    top = max([*tops, *firsts[np.isfinite(firsts)], *(ms for _, ms, _ in lines), lo]) * 4
    hi = max(10 ** math.ceil(math.log10(top)), MIN_Y_RANGE_MS[1])

    fast, slow = "tab:green", "tab:gray"
    has_bar = np.isfinite(means)
    colors = [fast if m <= limit_ms else slow for m in means[has_bar]]
    ax.bar(
        x[has_bar],
        means[has_bar],
        yerr=stds[has_bar],
        capsize=4,
        color=colors,
        edgecolor="black",
        linewidth=0.6,
        error_kw={"elinewidth": 1.0},
    )
    for xi, m, sd in zip(x[has_bar], means[has_bar], stds[has_bar], strict=True):
        ax.annotate(
            f"{m:.3g}",
            (xi, max(m + sd, lo)),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=7,
        )
    handles: list[Any] = []
    data_styles = [("tab:red", "-"), ("darkred", "-."), ("tab:orange", ":")]
    for i, (label, ms, kind) in enumerate(lines):
        color, linestyle = data_styles[i % 3] if kind == "data" else ("tab:blue", "--")
        handles.append(ax.axhline(ms, linewidth=1.2, color=color, linestyle=linestyle, label=label))
    legend_labels = figure3_legend(lines, warmup=warmup)
    handles.append(Patch(facecolor=fast, edgecolor="black", label=legend_labels[len(lines)]))
    handles.append(Patch(facecolor=slow, edgecolor="black", label=legend_labels[len(lines) + 1]))
    if warmup:
        has_first = np.isfinite(firsts)
        handles.append(
            ax.plot(
                x[has_first] + 0.3,
                np.maximum(firsts[has_first], lo),
                linestyle="none",
                marker="v",
                markersize=6,
                markerfacecolor="white",
                markeredgecolor="black",
                label=WARMUP_LABEL,
            )[0]
        )
        for xi, f, m in zip(x, firsts, means, strict=True):
            if math.isfinite(f) and not math.isfinite(m):  # one utterance only: show its value
                ax.annotate(
                    f"{f:.3g}",
                    (xi + 0.3, f),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                )
    ax.set_ylim(lo, hi)
    ax.set_ylabel("ms / frame (log scale)")
    ax.grid(axis="y", which="major", alpha=0.3)
    legend = fig.legend(
        handles=handles, loc="outside lower center", fontsize=7, ncols=1, frameon=False
    )
    if title:
        ax.set_title(title, fontsize=10)
    _fit_inside(fig, [*ax.get_xticklabels(), *legend.get_texts(), ax.yaxis.label, ax.title])
    meta = {
        "figure": "figure3",
        "methods": names,
        "tick_labels": labels,
        "yscale": ax.get_yscale(),
        "ylabel": ax.get_ylabel(),
        "lines": [{"label": lb, "ms_per_frame": ms, "kind": k} for lb, ms, k in lines],
        "legend": [h.get_label() for h in handles],
        "warmup_excluded": warmup,
        "title": title,
    }
    return Figure3(fig, ax, meta)


def _limit_text(lines: Sequence[tuple[str, float, str]]) -> str:
    data = [ms for _, ms, kind in lines if kind == "data"]
    if data:
        return f"real time at the data's rate ({min(data):.1f} ms/frame)"
    if lines:
        return f"{lines[-1][1]:.1f} ms/frame"
    return "no reference"


def figure3_runtime(
    ms_per_frame: Mapping[str, Sequence[float] | float],
    out: Path | str,
    *,
    frame_rates_hz: Iterable[float] = (),
    reference_fps: float | None = REFERENCE_FPS,
    warmup: bool = True,
    title: str | None = "Reconstruction time per frame",
    dpi: int = 150,
    overwrite: bool = True,
    sidecar: bool = True,
) -> Path:
    """Write the runtime chart (paper figure 3).

    Args:
        ms_per_frame: method -> ms/frame of each utterance in the order the command
            reconstructed them (or one value).
        out: output PNG path.
        frame_rates_hz: the data's frame rates; each draws a solid real-time line at
            1000 / rate ms/frame (none known: only the reference line).
        reference_fps: a second, dashed reference line (30 fps video); None for none.
        warmup: the first value of each method is its command's warm-up: drawn as a separate
            marker and left out of the bar (mean) and error bar (sample std). False: every
            value enters the statistics.
        title: figure title.
        dpi: resolution.
        overwrite: replace an existing file.
        sidecar: also write ``<stem>.labels.json`` (:func:`sidecar_path`).

    Returns:
        ``out``.

    Raises:
        ShapeError: no methods, or a value that is not finite and >= 0.
    """
    built = build_figure3(
        ms_per_frame,
        frame_rates_hz=frame_rates_hz,
        reference_fps=reference_fps,
        warmup=warmup,
        title=title,
        dpi=dpi,
    )
    return _save(built.figure, Path(out), overwrite, built.meta if sidecar else None)


@dataclass(frozen=True)
class FileRuntime:
    """The timing of one reconstruction file.

    Attributes:
        path: the file.
        method: its ``method`` attribute.
        prefixes: utterances in the file's order.
        ms_per_frame: ms/frame of each utterance (same order).
        frame_rate_hz: each utterance's ``frame_rate_hz`` attribute, None where absent.
        source: the prepared files it was made from (its ``source`` attribute).
    """

    path: Path
    method: str
    prefixes: tuple[str, ...]
    ms_per_frame: tuple[float, ...]
    frame_rate_hz: tuple[float | None, ...]
    source: tuple[str, ...]


def read_runtimes(paths: Iterable[Path | str]) -> list[FileRuntime]:
    """The per-utterance ms/frame (and frame rate, when recorded) of reconstruction files.

    Reads them through :class:`sirem_cli.io.prepared.ReconSet`: the root attributes ``method``
    and ``source`` and each ``/utterances/<prefix>`` attribute ``ms_per_frame`` (and
    ``frame_rate_hz`` when present) (hdf5-format.md).

    Args:
        paths: reconstruction HDF5 files.

    Returns:
        One :class:`FileRuntime` per file, in the given order.

    Raises:
        InputError: a file is missing.
        FormatError: a file is not a readable reconstruction file, or an utterance lacks the
            attribute ``ms_per_frame``.
    """
    from sirem_cli.io.prepared import ReconSet

    out = []
    for p in map(Path, paths):
        recon = ReconSet(p)
        for u in recon.utterances:
            if "ms_per_frame" not in u.attrs:
                raise FormatError(f"{p}: /utterances/{u.prefix} lacks the attribute ms_per_frame")
        out.append(
            FileRuntime(
                p,
                recon.method,
                tuple(u.prefix for u in recon.utterances),
                tuple(u.ms_per_frame for u in recon.utterances),
                tuple(u.frame_rate_hz for u in recon.utterances),
                recon.source,
            )
        )
    return out
