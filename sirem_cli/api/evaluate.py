"""``sirem evaluate`` and ``sirem export``: reconstruction files -> metrics, tables, figures, video."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.errors import InputError
from sirem_cli.io.prepared import PreparedSet, ReconSet

StageFn = Callable[[str, int, int], None]
BUILTIN_TARGETS = ("reference", "truth")


def _load_recon(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    recon = ReconSet(path)
    return recon.method, dict(recon.iter_frames())


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


@dataclass
class EvaluateResult:
    """What :func:`run_evaluate` produced."""

    results: list[Any]
    files: dict[str, Path]
    report_files: list[Path] = field(default_factory=list)


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
    report_dir: Path | None = None,
    progress: StageFn | None = None,
) -> EvaluateResult:
    """Evaluate every reconstruction file against every target; write JSON/CSV/markdown.

    LPIPS/FID weight files missing from ``weights_dir`` and the torch hub cache are downloaded
    into the cache (verified) unless ``offline`` (None: ``SIREM_OFFLINE`` / ``HF_HUB_OFFLINE``).
    """
    from sirem_cli.metrics.evaluate import PerceptualModels, evaluate_methods
    from sirem_cli.metrics.registry import parse_metrics
    from sirem_cli.report.outputs import write_results

    chosen = parse_metrics(metrics if metrics else "paper")
    if not recon_paths:
        raise InputError("give at least one reconstruction file")
    prepared_set = PreparedSet(prepared) if prepared else None
    by_method: dict[str, dict[str, np.ndarray]] = {}
    for path in recon_paths:
        method, frames = _load_recon(Path(path))
        if method in by_method:
            method = f"{method} ({Path(path).stem})"
        by_method[method] = frames
    prefixes = sorted({p for frames in by_method.values() for p in frames})

    def download_progress(name: str, done: int, total: int) -> None:
        if progress is not None:  # in MiB, the unit of the evaluate bar's counter
            progress(f"downloading {name} (MiB)", done >> 20, max(total >> 20, 1))

    models = PerceptualModels(weights_dir, offline=offline, download_progress=download_progress)
    results = []
    for target in targets:
        target_name, target_frames = load_target(target, prefixes, prepared_set)
        for path, frames in zip(recon_paths, by_method.values(), strict=True):
            check_pairs(Path(path), frames, target_name, target_frames)
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
    report_files = []
    if report_dir is not None:
        report_files = write_report(
            results, by_method, recon_paths, targets[0], prefixes, prepared_set, report_dir
        )
    return EvaluateResult(results, files, report_files)


def write_report(
    results: Sequence[Any],
    by_method: dict[str, dict[str, np.ndarray]],
    recon_paths: Sequence[Path],
    target: str,
    prefixes: Sequence[str],
    prepared: PreparedSet | None,
    report_dir: Path,
) -> list[Path]:
    """Tables 1 and 2 (markdown), figure 2 (qualitative panel) and figure 3 (runtimes)."""
    from sirem_cli.io.atomic import atomic_path
    from sirem_cli.report.figures import figure2_panel, figure3_runtime, read_runtimes
    from sirem_cli.report.tables import table1, table2

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    blocks = [t.to_markdown() for t in table1(results)]
    t2 = table2(results)
    text = "# Table 1\n\n" + "\n\n".join(blocks) + "\n"
    text += "\n# Table 2: sirem minus sirem-no-audio\n\n"
    text += (
        t2.to_markdown() if t2 is not None else "(needs both sirem and sirem-no-audio results)"
    ) + "\n"
    tables_path = report_dir / "tables.md"
    with atomic_path(tables_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    prefix = next((p for p in prefixes if all(p in f for f in by_method.values())), prefixes[0])
    target_name, target_frames = load_target(target, [prefix], prepared)
    rate = None
    if prepared is not None and prefix in {u.prefix for u in prepared.utterances}:
        rate = (
            float(PreparedSet.read(prepared.find(prefix), [])["attrs"].get("frame_rate_hz", 0))
            or None
        )
    fig2 = figure2_panel(
        {m: f[prefix] for m, f in by_method.items() if prefix in f},
        target_frames[prefix],
        report_dir / "figure2.png",
        reference_label=target_name.capitalize(),
        frame_rate_hz=rate,
        title=prefix,
    )
    fig3 = figure3_runtime(read_runtimes(recon_paths), report_dir / "figure3.png")
    return [tables_path, fig2, fig3]


def run_export(
    recon_path: Path,
    prepared: Sequence[Path],
    prefix: str,
    out: Path,
    *,
    kind: str = "mp4",
    n_frames: int = 8,
) -> Path:
    """Write one utterance of a reconstruction as an MP4 with its audio, a GIF or a PNG strip."""
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
