"""Array-level evaluation: metrics per sequence, mean and standard deviation over sequences.

A *sequence* is one utterance: an (F, H, W) float array of magnitude frames in [0, 1]. A
reconstruction method is evaluated against one target (the USC reference, another method's
reconstruction, or the synthetic ground truth) over the sequences they share:

* frame-scope metrics (SSIM, PSNR, their least-squares-scaled twins SSIM (LS) and PSNR (LS),
  MSE, NMSE, NRMSE, HFEN, VIF, LPIPS) are computed per frame,
  averaged over the frames of each sequence (frames where a metric is undefined, NaN, are
  skipped and counted), then summarized by the mean and the sample standard deviation
  (ddof = 1; NaN for a single sequence) over sequences;
* FID, a set-scope metric, is computed once per method over all frames of all sequences
  (optionally an evenly spaced subsample of them).

PSNR of identical frames is capped at 100 dB (:data:`~sirem_cli.metrics.registry.PSNR_CAP_DB`).
LPIPS and FID need pretrained weight files; when they are missing the metric is reported as
unavailable with the reason (never as a number).

Results serialize to JSON (lossless, ``results_to_json``/``results_from_json``) and CSV (one
row per sequence plus ``mean`` and ``std`` rows). The markdown tables and the files of a report
are built in :mod:`sirem_cli.report` (which imports this module, never the other way round).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import FormatError, ShapeError
from sirem_cli.metrics.registry import METRIC_NAMES, METRICS, PSNR_CAP_DB, parse_metrics

__all__ = [
    "EvalResult",
    "MetricStats",
    "PerceptualModels",
    "evaluate_methods",
    "evaluate_sequences",
    "results_from_json",
    "results_to_csv",
    "results_to_json",
]

RESULTS_FORMAT = "sirem-metrics"
RESULTS_FORMAT_VERSION = 1

#: Values this far outside [0, 1] are rejected; smaller excursions (round-off) are clipped.
RANGE_TOLERANCE = 1e-3

#: Progress callback: ``progress(stage, done, total)``; stage names the method and metric.
Progress = Callable[[str, int, int], None]


@dataclass
class MetricStats:
    """Summary of one metric for one (method, target) pair.

    Attributes:
        mean: frame scope: mean over sequences of the per-sequence averages; set scope: the
            value itself. NaN when no sequence had a defined value.
        std: sample standard deviation over sequences (NaN for fewer than 2, and for set scope).
        n: frame scope: number of sequences averaged; set scope: number of frames used.
        excluded_frames: frames skipped because the metric was undefined (NaN) on them.
    """

    mean: float
    std: float
    n: int
    excluded_frames: int = 0


@dataclass
class EvalResult:
    """Evaluation of one method against one target.

    Attributes:
        method: method name (the reconstruction file's ``method`` attribute).
        target: target name (``"reference"``, ``"truth"``, or another method's name).
        metrics: requested metrics, canonical order (available or not).
        sequences: evaluated sequence names, in evaluation order.
        n_frames: frames per sequence.
        per_sequence: sequence -> frame-scope metric -> average over its frames.
        summary: metric -> :class:`MetricStats`, for every available metric.
        unavailable: metric -> one-line reason it could not be computed.
        settings: parameters used (PSNR cap, FID frames, VIF noise variance...).
        per_frame: sequence -> metric -> (F,) values; kept in memory, written to JSON only on
            request.
    """

    method: str
    target: str
    metrics: tuple[str, ...]
    sequences: tuple[str, ...]
    n_frames: dict[str, int]
    per_sequence: dict[str, dict[str, float]]
    summary: dict[str, MetricStats]
    unavailable: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    per_frame: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def value(self, metric: str) -> float:
        """Summary mean of ``metric`` (NaN when unavailable or not requested)."""
        stats = self.summary.get(metric)
        return stats.mean if stats is not None else math.nan

    def to_dict(self, *, include_frames: bool = False) -> dict[str, Any]:
        """JSON-ready dict; non-finite numbers become None."""
        d: dict[str, Any] = {
            "method": self.method,
            "target": self.target,
            "metrics": list(self.metrics),
            "sequences": list(self.sequences),
            "n_frames": dict(self.n_frames),
            "summary": {
                m: {
                    "mean": _num(s.mean),
                    "std": _num(s.std),
                    "n": s.n,
                    "excluded_frames": s.excluded_frames,
                }
                for m, s in self.summary.items()
            },
            "unavailable": dict(self.unavailable),
            "per_sequence": {
                seq: {m: _num(v) for m, v in vals.items()}
                for seq, vals in self.per_sequence.items()
            },
            "settings": dict(self.settings),
        }
        if include_frames:
            d["per_frame"] = {
                seq: {m: [_num(float(v)) for v in arr] for m, arr in vals.items()}
                for seq, vals in self.per_frame.items()
            }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalResult:
        """Inverse of :meth:`to_dict` (None becomes NaN).

        Raises:
            FormatError: a required field is missing or malformed.
        """
        try:
            return cls(
                method=str(d["method"]),
                target=str(d["target"]),
                metrics=tuple(d["metrics"]),
                sequences=tuple(d["sequences"]),
                n_frames={k: int(v) for k, v in d["n_frames"].items()},
                per_sequence={
                    seq: {m: _unnum(v) for m, v in vals.items()}
                    for seq, vals in d["per_sequence"].items()
                },
                summary={
                    m: MetricStats(
                        _unnum(s["mean"]), _unnum(s["std"]), int(s["n"]), int(s["excluded_frames"])
                    )
                    for m, s in d["summary"].items()
                },
                unavailable=dict(d.get("unavailable", {})),
                settings=dict(d.get("settings", {})),
                per_frame={
                    seq: {m: np.array([_unnum(v) for v in arr]) for m, arr in vals.items()}
                    for seq, vals in d.get("per_frame", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"malformed evaluation result ({type(exc).__name__}: {exc})") from exc


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _unnum(v: float | None) -> float:
    return math.nan if v is None else float(v)


class PerceptualModels:
    """Lazily loaded LPIPS / Inception networks and cached target Inception features.

    Share one instance between evaluations (:func:`evaluate_methods` does) so each network is
    loaded once and the target's Inception features are computed once per target.

    Args:
        weights_dir: folder searched for weight files before ``$TORCH_HOME/hub/checkpoints``.
        batch_size: frames per network forward pass.
        offline: never download a missing weight file (None: follow ``SIREM_OFFLINE`` /
            ``HF_HUB_OFFLINE``; see :mod:`sirem_cli.metrics.weights`).
        download_progress: ``progress(file_name, bytes_done, bytes_total)`` while downloading.
    """

    def __init__(
        self,
        weights_dir: Path | str | None = None,
        *,
        batch_size: int = 32,
        offline: bool | None = None,
        download_progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.weights_dir = weights_dir
        self.batch_size = batch_size
        self.offline = offline
        self.download_progress = download_progress
        self._nets: dict[str, Any] = {}
        self._failed: dict[str, Exception] = {}
        self._features: dict[tuple[Any, ...], np.ndarray] = {}

    def net(self, metric: str) -> Any:
        """The loaded network of ``"lpips"`` or ``"fid"``.

        Raises:
            WeightsUnavailable: weight files are missing and not downloadable, or fail their
                SHA-256 check.
            FormatError: a weight file is unreadable or of the wrong architecture.
        """
        if metric in self._failed:  # one attempt per metric: no download retried per method
            raise self._failed[metric]
        if metric not in self._nets:
            from sirem_cli.metrics import perceptual

            loader = perceptual.load_lpips if metric == "lpips" else perceptual.load_inception
            try:
                self._nets[metric] = loader(
                    self.weights_dir, offline=self.offline, progress=self.download_progress
                )
            except perceptual.WeightsUnavailable as exc:
                self._failed[metric] = exc
                raise
        return self._nets[metric]

    def fid_features(
        self,
        frames: np.ndarray,
        key: tuple[Any, ...] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """(N, 2048) Inception pool3 features of (N, H, W) frames in [0, 1].

        ``key`` identifies frames already seen (the target of several methods): their
        features are computed once.
        """
        if key is not None and key in self._features:
            return self._features[key]
        from sirem_cli.metrics import perceptual

        feats = perceptual.inception_features(
            frames, self.net("fid"), batch_size=self.batch_size, progress=progress
        )
        if key is not None:
            self._features[key] = feats
        return feats


def _check_sequences(
    recons: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], method: str, target: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not recons:
        raise ShapeError(f"{method}: no sequences to evaluate")
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for seq, rec in recons.items():
        if seq not in targets:
            raise ShapeError(f"{method}: sequence {seq!r} has no {target} frames")
        r = np.asarray(rec)
        t = np.asarray(targets[seq])
        if r.ndim != 3 or r.shape != t.shape:
            raise ShapeError(
                f"{method} vs {target}, sequence {seq!r}: expected two (F, H, W) arrays of the "
                f"same shape, got {r.shape} and {t.shape}"
            )
        checked = []
        for name, a in ((method, r), (target, t)):
            if np.iscomplexobj(a) or not np.all(np.isfinite(a)):
                raise ShapeError(f"{name}, sequence {seq!r}: frames must be real and finite")
            lo, hi = float(a.min()), float(a.max())
            if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
                raise ShapeError(
                    f"{name}, sequence {seq!r}: values in [{lo:.4g}, {hi:.4g}], expected frames "
                    "normalized to [0, 1]"
                )
            checked.append(np.clip(a.astype(np.float32, copy=False), 0.0, 1.0))
        pairs[seq] = (checked[0], checked[1])
    return pairs


def _frame_functions(metrics: Sequence[str], psnr_cap_db: float | None) -> dict[str, Callable]:
    from sirem_cli.metrics import image, vif

    table: dict[str, Callable] = {
        "ssim": image.ssim,
        "psnr": lambda x, y: image.psnr(x, y, cap_db=psnr_cap_db),
        "ssim_ls": image.ssim_ls,
        "psnr_ls": lambda x, y: image.psnr_ls(x, y, cap_db=psnr_cap_db),
        "mse": image.mse,
        "nmse": image.nmse,
        "nrmse": image.nrmse,
        "hfen": image.hfen,
        "vif": vif.vifp,
    }
    return {m: table[m] for m in metrics if m in table}


def _fid_indices(total: int, max_frames: int | None) -> np.ndarray:
    if max_frames is None or total <= max_frames:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, max_frames)).astype(np.int64))


def evaluate_sequences(
    recons: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    metrics: str | Iterable[str] | None = None,
    *,
    weights_dir: Path | str | None = None,
    method: str = "recon",
    target_name: str = "target",
    fid_max_frames: int | None = None,
    batch_size: int = 32,
    psnr_cap_db: float | None = PSNR_CAP_DB,
    models: PerceptualModels | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate one method's sequences against the target's.

    Args:
        recons: sequence name -> (F, H, W) reconstruction, float in [0, 1].
        targets: sequence name -> (F, H, W) target frames; must hold every key of ``recons``
            (extra sequences are ignored).
        metrics: metric names (see :func:`~sirem_cli.metrics.registry.parse_metrics`); None
            means all.
        weights_dir: folder with the LPIPS / FID weight files (searched before
            ``$TORCH_HOME/hub/checkpoints``); ignored when ``models`` is given.
        method: method label stored in the result.
        target_name: target label stored in the result (and the FID statistics cache key).
        fid_max_frames: use at most this many frames (evenly spaced over all sequences, the
            same ones for recon and target) for FID; None uses every frame.
        batch_size: frames per network pass.
        psnr_cap_db: cap on per-frame PSNR (None: identical frames give inf and poison means).
        models: shared :class:`PerceptualModels` (networks and cached target statistics).
        progress: optional ``progress(stage, done, total)`` callback.

    Returns:
        The :class:`EvalResult`.

    Raises:
        ShapeError: a sequence is missing from the targets, shapes differ, or values are not
            finite or not in [0, 1].
        FormatError: a weight file exists but is not the expected network's.
    """
    names = parse_metrics(metrics)
    pairs = _check_sequences(recons, targets, method, target_name)
    models = models if models is not None else PerceptualModels(weights_dir, batch_size=batch_size)
    unavailable: dict[str, str] = {}
    for m in names:
        if METRICS[m].needs_weights:
            from sirem_cli.metrics.perceptual import WeightsUnavailable  # torch: only when needed

            try:
                models.net(m)
            except WeightsUnavailable as exc:
                unavailable[m] = str(exc)

    funcs = _frame_functions(names, psnr_cap_db)
    if "lpips" in names and "lpips" not in unavailable:
        from sirem_cli.metrics.perceptual import lpips_distance

        net = models.net("lpips")
        funcs["lpips"] = lambda x, y: lpips_distance(x, y, net, batch_size=models.batch_size)

    per_frame: dict[str, dict[str, np.ndarray]] = {}
    per_sequence: dict[str, dict[str, float]] = {}
    excluded = dict.fromkeys(funcs, 0)
    seq_values: dict[str, list[float]] = {m: [] for m in funcs}
    ordered = [m for m in names if m in funcs]
    for i, (seq, (rec, tgt)) in enumerate(pairs.items()):
        per_frame[seq] = {}
        per_sequence[seq] = {}
        for m in ordered:
            vals = np.atleast_1d(np.asarray(funcs[m](rec, tgt), dtype=np.float64))
            per_frame[seq][m] = vals
            ok = np.isfinite(vals)
            excluded[m] += int(np.sum(~ok))
            v = float(np.mean(vals[ok])) if np.any(ok) else math.nan
            per_sequence[seq][m] = v
            if math.isfinite(v):
                seq_values[m].append(v)
        if progress is not None:
            progress(f"{method} vs {target_name}: frame metrics", i + 1, len(pairs))

    summary: dict[str, MetricStats] = {}
    for m in ordered:
        vals = np.asarray(seq_values[m])
        mean = float(vals.mean()) if vals.size else math.nan
        std = float(vals.std(ddof=1)) if vals.size >= 2 else math.nan
        summary[m] = MetricStats(mean, std, int(vals.size), excluded[m])

    settings: dict[str, Any] = {"psnr_cap_db": psnr_cap_db}
    if "vif" in names:
        settings["vif"] = {"sigma_nsq": 2.0, "intensity_scale": 255.0, "scales": 4}
    if "fid" in names and "fid" not in unavailable:
        rec_all = np.concatenate([p[0] for p in pairs.values()])
        tgt_all = np.concatenate([p[1] for p in pairs.values()])
        idx = _fid_indices(rec_all.shape[0], fid_max_frames)
        if idx.size < 2:
            unavailable["fid"] = f"FID unavailable: needs at least 2 frames, got {idx.size}"
        else:

            def fid_progress(done: int, total: int, who: str) -> None:
                if progress is not None:
                    progress(f"{who}: FID features", done, total)

            key = (target_name, tuple((s, p[1].shape) for s, p in pairs.items()), idx.size)
            feats_t = models.fid_features(
                tgt_all[idx], key, lambda d, t: fid_progress(d, t, target_name)
            )
            feats_r = models.fid_features(
                rec_all[idx], None, lambda d, t: fid_progress(d, t, method)
            )
            from sirem_cli.metrics.perceptual import fid_from_features

            value = fid_from_features(feats_r, feats_t)
            summary["fid"] = MetricStats(value, math.nan, int(idx.size), 0)
            settings["fid_frames"] = int(idx.size)
            settings["fid_total_frames"] = int(rec_all.shape[0])
    return EvalResult(
        method=method,
        target=target_name,
        metrics=names,
        sequences=tuple(pairs),
        n_frames={seq: int(p[0].shape[0]) for seq, p in pairs.items()},
        per_sequence=per_sequence,
        summary={m: summary[m] for m in names if m in summary},
        unavailable={m: unavailable[m] for m in names if m in unavailable},
        settings=settings,
        per_frame=per_frame,
    )


def evaluate_methods(
    recons_by_method: Mapping[str, Mapping[str, np.ndarray]],
    targets: Mapping[str, np.ndarray],
    metrics: str | Iterable[str] | None = None,
    *,
    target_name: str = "target",
    weights_dir: Path | str | None = None,
    fid_max_frames: int | None = None,
    batch_size: int = 32,
    psnr_cap_db: float | None = PSNR_CAP_DB,
    models: PerceptualModels | None = None,
    progress: Progress | None = None,
) -> list[EvalResult]:
    """Evaluate several methods against one target, loading networks and target features once.

    Args:
        recons_by_method: method -> sequence -> (F, H, W) frames in [0, 1].
        targets: sequence -> (F, H, W) target frames.
        metrics: as in :func:`evaluate_sequences`.
        target_name: target label.
        weights_dir: LPIPS / FID weight folder.
        fid_max_frames: FID frame subsample size, None for all.
        batch_size: frames per network pass.
        psnr_cap_db: PSNR cap.
        models: shared networks (created from ``weights_dir`` when None).
        progress: progress callback.

    Returns:
        One :class:`EvalResult` per method, in the given order.
    """
    models = models if models is not None else PerceptualModels(weights_dir, batch_size=batch_size)
    return [
        evaluate_sequences(
            recons,
            targets,
            metrics,
            method=method,
            target_name=target_name,
            fid_max_frames=fid_max_frames,
            psnr_cap_db=psnr_cap_db,
            models=models,
            progress=progress,
        )
        for method, recons in recons_by_method.items()
    ]


# --------------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------------


def results_to_json(results: Sequence[EvalResult], *, include_frames: bool = False) -> str:
    """Serialize results (and the metric definitions used) to a JSON document."""
    doc = {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "metric_specs": {
            m: {
                "label": s.label,
                "higher_is_better": s.higher_is_better,
                "scope": s.scope,
                "needs_weights": s.needs_weights,
            }
            for m, s in METRICS.items()
        },
        "results": [r.to_dict(include_frames=include_frames) for r in results],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def results_from_json(text: str, *, source: str = "metrics JSON") -> list[EvalResult]:
    """Parse :func:`results_to_json` output.

    Raises:
        FormatError: not a sirem metrics document (``source`` names it in the message).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise FormatError(f"{source}: not a {RESULTS_FORMAT} document")
    if doc.get("format_version") != RESULTS_FORMAT_VERSION:
        raise FormatError(f"{source}: unsupported format_version {doc.get('format_version')!r}")
    try:
        return [EvalResult.from_dict(d) for d in doc["results"]]
    except FormatError as exc:
        raise FormatError(f"{source}: {exc}") from exc


def _csv_value(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.10g}"


def results_to_csv(results: Sequence[EvalResult]) -> str:
    """One row per (method, target, sequence), then ``mean`` and ``std`` rows per pair.

    Columns: method, target, row (``sequence`` | ``mean`` | ``std``), sequence, n_frames, then
    one column per metric present in any result (canonical order). Empty cells: unavailable
    or undefined. Set-scope metrics (FID) appear only in the ``mean`` row.
    """
    present = {m for r in results for m in r.metrics}
    cols = [m for m in METRIC_NAMES if m in present]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "target", "row", "sequence", "n_frames", *cols])
    for r in results:
        for seq in r.sequences:
            vals = r.per_sequence.get(seq, {})
            w.writerow(
                [r.method, r.target, "sequence", seq, r.n_frames.get(seq, "")]
                + [_csv_value(vals.get(m)) for m in cols]
            )
        total = sum(r.n_frames.values())
        for row in ("mean", "std"):
            cells = []
            for m in cols:
                s = r.summary.get(m)
                cells.append(_csv_value(None if s is None else getattr(s, row)))
            w.writerow([r.method, r.target, row, "", total, *cells])
    return buf.getvalue()
