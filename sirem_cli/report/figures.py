"""The paper's figures 2 and 3 as PNG files (matplotlib, Agg canvas, imported lazily).

* Figure 2: a qualitative panel for one utterance. Columns are frames; rows are the target
  (reference) and each method, then one error-map row |recon - target| per method.
* Figure 3: mean reconstruction time per frame (ms) per method, with the sequence-level
  standard deviation as error bars and a dashed line at the real-time threshold of 30 frames
  per second (33.3 ms/frame).

Figures are built on a ``matplotlib.figure.Figure`` with no pyplot state, so they are safe to
make from library code and never open a window. Files are written atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.atomic import atomic_path
from sirem_cli.report.tables import method_label

__all__ = [
    "REALTIME_MS_PER_FRAME",
    "figure2_panel",
    "figure3_runtime",
    "pick_frames",
    "read_runtimes",
]

#: 30 frames per second.
REALTIME_MS_PER_FRAME = 1000.0 / 30.0


def pick_frames(n_total: int, n: int = 5) -> list[int]:
    """``n`` evenly spaced frame indices in [0, n_total), ends excluded when there is room."""
    if n_total <= 0:
        raise ShapeError("no frames to pick from")
    n = min(n, n_total)
    idx = np.linspace(0, n_total - 1, n + 2)[1:-1] if n_total > n + 1 else np.arange(n)
    return sorted({round(float(i)) for i in idx})


def _figure(figsize: tuple[float, float], dpi: int) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _save(fig: Any, out: Path, overwrite: bool) -> Path:
    out = Path(out)
    with atomic_path(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", facecolor="white")
    return out


def figure2_panel(
    recons: Mapping[str, np.ndarray],
    reference: np.ndarray,
    out: Path | str,
    *,
    frames: Sequence[int] | None = None,
    n_frames: int = 5,
    reference_label: str = "Reference",
    error_maps: bool = True,
    error_vmax: float | None = None,
    frame_rate_hz: float | None = None,
    title: str | None = None,
    dpi: int = 150,
    overwrite: bool = True,
) -> Path:
    """Write the qualitative panel of one utterance (paper figure 2).

    Args:
        recons: method name -> (F, H, W) frames in [0, 1], all of the reference's shape.
        reference: (F, H, W) target frames in [0, 1].
        out: output PNG path.
        frames: frame indices shown as columns; None picks ``n_frames`` evenly spaced ones.
        n_frames: number of columns when ``frames`` is None.
        reference_label: row label of the reference.
        error_maps: add one row of |recon - reference| per method.
        error_vmax: upper end of the error colour scale; None uses the 99th percentile of all
            shown errors.
        frame_rate_hz: when given, columns are labelled with the frame time in seconds.
        title: figure title.
        dpi: resolution.
        overwrite: replace an existing file.

    Returns:
        ``out``.

    Raises:
        ShapeError: shapes disagree, no methods, or a frame index is out of range.
    """
    ref = np.asarray(reference, dtype=np.float32)
    if ref.ndim != 3:
        raise ShapeError(f"reference must be (F, H, W), got {ref.shape}")
    if not recons:
        raise ShapeError("figure 2 needs at least one method")
    recs = {}
    for name, r in recons.items():
        a = np.asarray(r, dtype=np.float32)
        if a.shape != ref.shape:
            raise ShapeError(f"{name}: frames {a.shape} differ from the reference {ref.shape}")
        recs[name] = a
    cols = list(frames) if frames is not None else pick_frames(ref.shape[0], n_frames)
    if not cols or min(cols) < 0 or max(cols) >= ref.shape[0]:
        raise ShapeError(f"frame indices {cols} out of range for {ref.shape[0]} frames")

    errors = {n: np.abs(a[cols] - ref[cols]) for n, a in recs.items()}
    if error_vmax is None:
        all_err = np.concatenate([e.ravel() for e in errors.values()])
        error_vmax = max(float(np.percentile(all_err, 99)), 1e-6)

    image_rows = [(reference_label, ref)] + [(method_label(n), a) for n, a in recs.items()]
    err_rows = [(f"|{method_label(n)} − ref|", e) for n, e in errors.items()] if error_maps else []
    n_rows = len(image_rows) + len(err_rows)
    h, w = ref.shape[1:]
    cell = 1.35
    fig = _figure((cell * len(cols) * w / h + 1.6, cell * n_rows + (0.4 if title else 0.1)), dpi)
    axes = fig.subplots(n_rows, len(cols), squeeze=False)
    err_im = None
    for i, (_, data) in enumerate(image_rows):
        for j, k in enumerate(cols):
            axes[i, j].imshow(data[k], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    for i, (_, err) in enumerate(err_rows, start=len(image_rows)):
        for j in range(len(cols)):
            err_im = axes[i, j].imshow(
                err[j], cmap="inferno", vmin=0.0, vmax=error_vmax, interpolation="nearest"
            )
    for i, (label, _) in enumerate(image_rows + err_rows):
        axes[i, 0].set_ylabel(label, fontsize=8)
    for j, k in enumerate(cols):
        head = f"t = {k / frame_rate_hz:.2f} s" if frame_rate_hz else f"frame {k}"
        axes[0, j].set_title(head, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if err_im is not None:
        # One bar beside the error rows, attached to the whole grid so the columns stay aligned.
        frac = 0.95 * len(err_rows) / n_rows
        cb = fig.colorbar(err_im, ax=axes.ravel().tolist(), shrink=frac, anchor=(0.0, 0.0))
        cb.ax.tick_params(labelsize=7)
        cb.set_label("absolute error", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, Path(out), overwrite)


def figure3_runtime(
    ms_per_frame: Mapping[str, Sequence[float] | float],
    out: Path | str,
    *,
    realtime_ms: float = REALTIME_MS_PER_FRAME,
    log_scale: bool | None = None,
    title: str | None = "Reconstruction time per frame",
    dpi: int = 150,
    overwrite: bool = True,
) -> Path:
    """Write the runtime bar chart (paper figure 3).

    Args:
        ms_per_frame: method -> per-sequence ms/frame values (or one value).
        out: output PNG path.
        realtime_ms: real-time threshold drawn as a dashed line (default 1000/30 ms).
        log_scale: logarithmic y axis; None chooses it when the means span more than a
            factor of 50.
        title: figure title.
        dpi: resolution.
        overwrite: replace an existing file.

    Returns:
        ``out``.

    Raises:
        ShapeError: no methods, or a method without a finite positive value.
    """
    if not ms_per_frame:
        raise ShapeError("figure 3 needs at least one method")
    names, means, stds = [], [], []
    for name, vals in ms_per_frame.items():
        v = np.atleast_1d(np.asarray(vals, dtype=np.float64))
        v = v[np.isfinite(v)]
        if v.size == 0 or np.any(v < 0):
            raise ShapeError(f"{name}: no valid ms/frame value")
        names.append(name)
        means.append(float(v.mean()))
        stds.append(float(v.std(ddof=1)) if v.size > 1 else 0.0)
    pos = [m for m in means if m > 0]
    if log_scale is None:
        log_scale = bool(pos) and max(pos) / min(pos) > 50
    fig = _figure((max(4.0, 1.1 * len(names) + 2.0), 3.6), dpi)
    ax = fig.subplots()
    x = np.arange(len(names))
    colors = ["tab:green" if m <= realtime_ms else "tab:gray" for m in means]
    ax.bar(x, means, yerr=stds, capsize=4, color=colors, edgecolor="black", linewidth=0.6)
    ax.axhline(
        realtime_ms,
        color="tab:red",
        linestyle="--",
        linewidth=1.2,
        label=f"real time ({1000 / realtime_ms:.0f} fps, {realtime_ms:.1f} ms/frame)",
    )
    for xi, m, sd in zip(x, means, stds, strict=True):
        ax.annotate(
            f"{m:.1f}",
            (xi, m + sd),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(x, [method_label(n) for n in names], rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("ms / frame")
    top = max(*(m + sd for m, sd in zip(means, stds, strict=True)), realtime_ms)
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(top=top * 4)  # room for the value labels and the legend
    else:
        ax.set_ylim(0, top * 1.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, Path(out), overwrite)


def read_runtimes(paths: Iterable[Path | str]) -> dict[str, list[float]]:
    """Per-sequence ms/frame of each method from reconstruction files (hdf5-format.md).

    Reads the root attribute ``method`` and each ``/utterances/<prefix>`` attribute
    ``ms_per_frame``; files of the same method are pooled.

    Args:
        paths: reconstruction HDF5 files.

    Returns:
        method -> list of ms/frame values, one per utterance.

    Raises:
        InputError: a file is missing or unreadable.
        FormatError: a file lacks the ``utterances`` group or the attributes.
    """
    import h5py

    out: dict[str, list[float]] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise InputError(f"{p}: no such file")
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise InputError(f"{p}: not a readable HDF5 file ({exc})") from exc
        with f:
            method = f.attrs.get("method")
            if method is None or "utterances" not in f:
                raise FormatError(f"{p}: not a reconstruction file (no 'method' or 'utterances')")
            method = method.decode() if isinstance(method, bytes) else str(method)
            vals = out.setdefault(method, [])
            for prefix, group in f["utterances"].items():
                if "ms_per_frame" not in group.attrs:
                    raise FormatError(f"{p}: /utterances/{prefix} lacks the attribute ms_per_frame")
                vals.append(float(group.attrs["ms_per_frame"]))
    return out
