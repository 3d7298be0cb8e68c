"""``sirem evaluate`` and ``sirem export``: reconstruction files -> metrics, tables, figures, video."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import InputError, SiremError
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedSet, ReconSet

StageFn = Callable[[str, int, int], None]
BUILTIN_TARGETS = ("reference", "truth")
#: Files ``--out DIR`` receives; the figures go to ``--report DIR`` instead when it is given,
#: and it also receives ``tables.md``.
METRIC_FILES = ("metrics.json", "metrics.csv", "metrics.md")
FIGURE_FILES = ("figure2.png", "figure2.labels.json", "figure3.png", "figure3.labels.json")
REPORT_FILES = ("tables.md",)


def _load_recon(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    recon = ReconSet(path)
    return recon.method, dict(recon.iter_frames())


def held_out_check(recon: ReconSet, prepared: PreparedSet | None) -> tuple[str | None, str | None]:
    """Whether a reconstruction's checkpoint was trained on a speaker of the utterances it holds.

    The speakers trained on are the ``train_subjects`` of the file's ``config`` (written by
    ``sirem reconstruct``; absent in baselines). Each utterance's speaker comes from
    ``prepared`` when it holds them all, else from the prepared files the reconstruction names
    in its ``source`` attribute.

    Returns:
        (warning, note): a one-line warning naming the speakers when their scores are not
        held-out results; a note when the speakers are unknown (no prepared file readable).
        Both None when the file was not made by a trained model or every speaker is held out.
    """
    trained = {str(s) for s in recon.config.get("train_subjects") or ()}
    if not trained:
        return None, None
    prefixes = {u.prefix for u in recon.utterances}
    dataset = prepared
    if dataset is None or not prefixes <= {u.prefix for u in dataset.utterances}:
        dataset = _source_set(recon.source, recon.path) or prepared
    if dataset is None:
        return None, (
            f"{recon.path}: its utterances' speakers are unknown without --prepared, so it is not "
            "checked whether they were held out from training"
        )
    subjects = {u.prefix: u.subject for u in dataset.utterances}
    leaked = sorted({subjects[p] for p in prefixes if p in subjects} & trained)
    if not leaked:
        return None, None
    checkpoint = recon.config.get("checkpoint", "its checkpoint")
    return (
        f"{recon.path}: the checkpoint {checkpoint} was trained on {', '.join(leaked)}, whose "
        "utterances are evaluated here: their scores are not held-out results"
    ), None


def load_target(
    name: str, prefixes: Sequence[str], prepared: PreparedSet | None
) -> tuple[str, dict[str, np.ndarray]]:
    """Target frames for ``prefixes``: the prepared reference or truth, or another recon file.

    Returns:
        The target's name (``reference``, ``truth`` or the other file's method) and its frames.
    """
    if name in BUILTIN_TARGETS:
        if prepared is None:
            raise InputError(f"--target {name} needs the prepared file(s): pass --prepared P.h5")
        frames = {}
        for prefix in prefixes:
            ref = prepared.find(prefix)
            data = PreparedSet.read(ref, [name])
            if name not in data:
                raise InputError(f"{ref.path}: {prefix} has no {name} frames (--target {name})")
            frames[prefix] = data[name]
        return name, frames
    path = Path(name)
    if not path.exists():
        raise InputError(f"--target {name}: not 'reference', 'truth' or an existing recon file")
    return _load_recon(path)


def check_pairs(
    recon_path: Path,
    recons: dict[str, np.ndarray],
    target_name: str,
    targets: dict[str, np.ndarray],
) -> None:
    """Raise InputError unless every utterance and frame count of ``recons`` is in ``targets``."""
    for prefix, frames in recons.items():
        if prefix not in targets:
            raise InputError(
                f"{recon_path}: utterance {prefix} is missing from the target {target_name}"
            )
        if targets[prefix].shape != frames.shape:
            raise InputError(
                f"{recon_path}: {prefix} has frames {frames.shape}, the target {target_name} "
                f"has {targets[prefix].shape}"
            )


def unique_method_names(paths: Sequence[Path], methods: Sequence[str]) -> list[str]:
    """One row name per reconstruction file: its method, qualified by the file name when two
    files carry the same method (``"sirem (model_a.h5)"``, shown as "SIREM (model_a.h5)").

    Raises:
        InputError: the same file is given twice.
    """
    seen: dict[Path, int] = {}
    for i, path in enumerate(paths):
        key = Path(path).resolve()
        if key in seen:
            raise InputError(f"{path}: given twice (also argument {seen[key] + 1})")
        seen[key] = i
    counts = Counter(methods)
    names = [
        m if counts[m] == 1 else f"{m} ({Path(p).name})"
        for p, m in zip(paths, methods, strict=True)
    ]
    clash = Counter(names)  # same file name in two folders: the whole path tells them apart
    return [
        n if clash[n] == 1 else f"{m} ({p})" for n, p, m in zip(names, paths, methods, strict=True)
    ]


@dataclass
class EvaluateResult:
    """What :func:`run_evaluate` produced.

    Attributes:
        results: one EvalResult per (file, target).
        files: the metrics files (``json``, ``csv``, ``md``).
        report_files: figures, their label sidecars and (with ``report_dir``) tables.md.
        names: the row name of each reconstruction file, in the given order.
        warnings: one line per reconstruction file whose checkpoint was trained on speakers
            it is evaluated on (:func:`held_out_check`).
        notes: one line per file whose speakers could not be checked.
    """

    results: list[Any]
    files: dict[str, Path]
    report_files: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_evaluate(
    recon_paths: Sequence[Path],
    targets: Sequence[str],
    *,
    prepared: Sequence[Path] = (),
    out_dir: Path | None = None,
    metrics: str | Sequence[str] | None = None,
    weights_dir: Path | None = None,
    offline: bool | None = None,
    fid_max_frames: int | None = 512,
    figures: bool = True,
    report_dir: Path | None = None,
    overwrite: bool = False,
    progress: StageFn | None = None,
) -> EvaluateResult:
    """Evaluate every reconstruction file against every target; write metrics and figures.

    ``out_dir`` receives ``metrics.{json,csv,md}`` (the markdown holds tables 1 and 2) and,
    unless ``figures`` is False, figure 2 (the first target) and figure 3 with their label
    sidecars. ``report_dir`` is the older ``--report`` folder: when given, the figures and a
    ``tables.md`` go there instead (and the metrics stay in ``out_dir``).

    The files written (:data:`METRIC_FILES`, :data:`FIGURE_FILES`, :data:`REPORT_FILES`) follow
    the output policy of :mod:`sirem_cli.io.output`. LPIPS/FID weight
    files missing from ``weights_dir`` and the torch hub cache are downloaded into the cache
    (verified) unless ``offline`` (None: ``SIREM_OFFLINE`` / ``HF_HUB_OFFLINE``).
    """
    outputs = [Path(out_dir) / name for name in METRIC_FILES] if out_dir is not None else []
    figure_dir = report_dir if report_dir is not None else out_dir
    if figures and figure_dir is not None:
        outputs += [Path(figure_dir) / name for name in FIGURE_FILES]
    if report_dir is not None:
        outputs += [Path(report_dir) / name for name in REPORT_FILES]
    inputs = [*recon_paths, *prepared, *(t for t in targets if t not in BUILTIN_TARGETS)]
    for path in outputs:
        check_output(path, inputs=inputs, overwrite=overwrite)
    with claim_outputs(outputs, inputs=inputs, overwrite=overwrite):
        return _run_evaluate(
            recon_paths,
            targets,
            prepared=prepared,
            out_dir=out_dir,
            metrics=metrics,
            weights_dir=weights_dir,
            offline=offline,
            fid_max_frames=fid_max_frames,
            figure_dir=figure_dir if figures else None,
            report_dir=report_dir,
            progress=progress,
        )


def _run_evaluate(
    recon_paths: Sequence[Path],
    targets: Sequence[str],
    *,
    prepared: Sequence[Path],
    out_dir: Path | None,
    metrics: str | Sequence[str] | None,
    weights_dir: Path | None,
    offline: bool | None,
    fid_max_frames: int | None,
    figure_dir: Path | None,
    report_dir: Path | None,
    progress: StageFn | None,
) -> EvaluateResult:
    from sirem_cli.metrics.evaluate import PerceptualModels, evaluate_methods
    from sirem_cli.metrics.registry import parse_metrics
    from sirem_cli.report.outputs import write_results

    chosen = parse_metrics(metrics if metrics else "paper")
    if not recon_paths:
        raise InputError("give at least one reconstruction file")
    recon_paths = [Path(p) for p in recon_paths]
    prepared_set = PreparedSet(prepared) if prepared else None
    recon_sets = [ReconSet(path) for path in recon_paths]
    checks = [held_out_check(recon, prepared_set) for recon in recon_sets]
    loaded = [(recon.method, dict(recon.iter_frames())) for recon in recon_sets]
    names = unique_method_names(recon_paths, [method for method, _ in loaded])
    by_method: dict[str, dict[str, np.ndarray]] = {
        name: frames for name, (_, frames) in zip(names, loaded, strict=True)
    }
    prefixes = sorted({p for frames in by_method.values() for p in frames})

    def download_progress(name: str, done: int, total: int) -> None:
        if progress is not None:  # in MiB, the unit of the evaluate bar's counter
            progress(f"downloading {name} (MiB)", done >> 20, max(total >> 20, 1))

    models = PerceptualModels(weights_dir, offline=offline, download_progress=download_progress)
    results = []
    for target in targets:
        target_name, target_frames = load_target(target, prefixes, prepared_set)
        for path, frames in zip(recon_paths, by_method.values(), strict=True):
            check_pairs(path, frames, target_name, target_frames)
        results += evaluate_methods(
            by_method,
            target_frames,
            chosen,
            target_name=target_name,
            weights_dir=weights_dir,
            fid_max_frames=fid_max_frames,
            models=models,
            progress=progress,
        )
    files = write_results(results, out_dir) if out_dir is not None else {}
    report_files: list[Path] = []
    if figure_dir is not None:
        report_files = write_figures(
            by_method, recon_paths, targets[0], prefixes, prepared_set, Path(figure_dir)
        )
    if report_dir is not None:
        report_files.insert(0, write_tables(results, Path(report_dir)))
    return EvaluateResult(
        results,
        files,
        report_files,
        names,
        warnings=[w for w, _ in checks if w],
        notes=[n for _, n in checks if n],
    )


def write_tables(results: Sequence[Any], report_dir: Path) -> Path:
    """``tables.md``: tables 1 and 2 alone (the ``--report`` folder of older scripts)."""
    from sirem_cli.io.atomic import atomic_path
    from sirem_cli.report.tables import table1, table2

    blocks = [t.to_markdown() for t in table1(results)]
    t2 = table2(results)
    text = "# Table 1\n\n" + "\n\n".join(blocks) + "\n"
    text += "\n# Table 2: sirem minus sirem-no-audio\n\n"
    text += (
        t2.to_markdown() if t2 is not None else "(needs both sirem and sirem-no-audio results)"
    ) + "\n"
    path = Path(report_dir) / "tables.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _source_set(paths: Sequence[str], recon_path: Path) -> PreparedSet | None:
    """The prepared files a reconstruction names in its ``source`` attribute, if all readable
    (as written, else beside the reconstruction file)."""
    found = []
    for s in paths:
        p = Path(s)
        if not p.is_file():
            p = recon_path.parent / p.name
        if not p.is_file():
            return None
        found.append(p)
    if not found:
        return None
    try:
        return PreparedSet(found)
    except SiremError:
        return None


def _prepared_rates(dataset: PreparedSet | None, prefixes: Sequence[str]) -> dict[str, float]:
    """prefix -> the prepared utterance's ``frame_rate_hz``, for the prefixes it holds."""
    if dataset is None:
        return {}
    held = {u.prefix: u for u in dataset.utterances}
    rates = {}
    for prefix in prefixes:
        if prefix in held:
            rate = PreparedSet.read(held[prefix], [])["attrs"].get("frame_rate_hz")
            if rate is not None and float(rate) > 0:
                rates[prefix] = float(rate)
    return rates


@dataclass
class RuntimeSeries:
    """One file's ms/frame in the order its command reconstructed the utterances.

    Attributes:
        ms_per_frame: one value per utterance; the first carries the command's warm-up.
        frame_rate_hz: prefix -> the data's frame rate (the reconstruction's own attribute,
            else the prepared file's; absent when neither is readable).
    """

    ms_per_frame: list[float]
    frame_rate_hz: dict[str, float]


def runtime_series(
    recon_paths: Sequence[Path], prepared: PreparedSet | None
) -> list[RuntimeSeries]:
    """ms/frame and frame rate of every utterance of each reconstruction file.

    Commands reconstruct the utterances in the order of their prepared files (file by file, then
    by name), so that order, read from the ``--prepared`` files or the file's ``source``
    attribute, puts the warm-up first; without them the file's own (name) order is used.
    """
    from sirem_cli.report.figures import read_runtimes

    out = []
    for run in read_runtimes(recon_paths):
        rates = {p: r for p, r in zip(run.prefixes, run.frame_rate_hz, strict=True) if r}
        dataset = prepared
        if dataset is None or not set(run.prefixes) <= {u.prefix for u in dataset.utterances}:
            dataset = _source_set(run.source, run.path) or prepared
        missing = [p for p in run.prefixes if p not in rates]
        rates.update(_prepared_rates(dataset, missing))
        order = list(range(len(run.prefixes)))
        if dataset is not None:
            rank = {u.prefix: i for i, u in enumerate(dataset.utterances)}
            order.sort(key=lambda i: rank.get(run.prefixes[i], len(rank) + i))
        out.append(RuntimeSeries([run.ms_per_frame[i] for i in order], rates))
    return out


def write_figures(
    by_method: dict[str, dict[str, np.ndarray]],
    recon_paths: Sequence[Path],
    target: str,
    prefixes: Sequence[str],
    prepared: PreparedSet | None,
    out_dir: Path,
) -> list[Path]:
    """Figure 2 (qualitative panel against ``target``) and figure 3 (runtimes), with their
    label sidecars, into ``out_dir``. Rows follow the tables' method order."""
    from sirem_cli.report.figures import figure2_panel, figure3_runtime, sidecar_path
    from sirem_cli.report.tables import ordered_methods

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(by_method)
    series = dict(zip(names, runtime_series(recon_paths, prepared), strict=True))
    order = ordered_methods(names)
    prefix = next((p for p in prefixes if all(p in f for f in by_method.values())), prefixes[0])
    target_name, target_frames = load_target(target, [prefix], prepared)
    rate = next(
        (s.frame_rate_hz[prefix] for s in series.values() if prefix in s.frame_rate_hz), None
    )
    fig2 = figure2_panel(
        {m: by_method[m][prefix] for m in order if prefix in by_method[m]},
        target_frames[prefix],
        out_dir / "figure2.png",
        target_name=target_name,
        frame_rate_hz=rate,
        title=prefix,
    )
    fig3 = figure3_runtime(
        {m: series[m].ms_per_frame for m in order},
        out_dir / "figure3.png",
        frame_rates_hz={r for s in series.values() for r in s.frame_rate_hz.values()},
    )
    return [fig2, sidecar_path(fig2), fig3, sidecar_path(fig3)]


def run_export(
    recon_path: Path,
    prepared: Sequence[Path],
    prefix: str,
    out: Path,
    *,
    kind: str = "mp4",
    n_frames: int = 8,
    overwrite: bool = False,
) -> Path:
    """Write one utterance of a reconstruction as an MP4 with its audio, a GIF or a PNG strip.

    ``out`` follows the output policy of :mod:`sirem_cli.io.output`.
    """
    if n_frames < 1:
        raise InputError(f"--frames must be >= 1, got {n_frames}")
    inputs = [recon_path, *prepared]
    check_output(Path(out), inputs=inputs, overwrite=overwrite)
    with claim_outputs([out], inputs=inputs, overwrite=overwrite):
        return _run_export(recon_path, prepared, prefix, Path(out), kind=kind, n_frames=n_frames)


def _run_export(
    recon_path: Path,
    prepared: Sequence[Path],
    prefix: str,
    out: Path,
    *,
    kind: str,
    n_frames: int,
) -> Path:
    from sirem_cli.report.video import audio_offset_s, write_gif, write_mp4, write_png_strip

    recon = ReconSet(Path(recon_path))
    if prefix not in {u.prefix for u in recon.utterances}:
        names = ", ".join(u.prefix for u in recon.utterances)
        raise InputError(f"{recon_path}: no utterance {prefix} (it has {names})")
    frames = recon.read(prefix)
    if kind == "png":
        return write_png_strip(frames, out, n_frames=n_frames)
    dataset = PreparedSet(prepared)
    data = PreparedSet.read(dataset.find(prefix), ["audio", "frame_time"])
    if data["frame_time"].shape[0] != frames.shape[0]:
        raise InputError(
            f"{recon_path}: {prefix} has {frames.shape[0]} frames, the prepared file "
            f"{data['frame_time'].shape[0]}"
        )
    rate = float(data["attrs"]["frame_rate_hz"])
    if kind == "gif":
        return write_gif(frames, rate, out)
    return write_mp4(
        frames,
        rate,
        out,
        audio=data["audio"],
        sample_rate_hz=float(data["attrs"]["sample_rate_hz"]),
        audio_offset=audio_offset_s(data["frame_time"], rate),
    )
