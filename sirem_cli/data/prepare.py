"""``sirem prepare``: USC-75 raw files + Annot-16 annotations -> one prepared HDF5 file.

The ten steps of method.md section 1, one utterance in memory at a time. The output is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.data.eba import DEFAULT_EBA_ARTICULATORS, LABEL_IDS, contour_maps
from sirem_cli.data.orientation import find_transform, fold_transform
from sirem_cli.data.splits import assign_splits, parse_splits
from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.imaging import normalize_magnitude
from sirem_cli.io.estimates import prepared_bytes
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedWriter
from sirem_cli.io.schema import PREPARED_FORMAT
from sirem_cli.mri.spiral import to_radians

ARMS = 13
TARGET_RATE_HZ = 16000
#: Largest --audio-context (s): a frame's audio window is 2x this long.
MAX_AUDIO_CONTEXT_S = 5.0
#: Default --audio-tolerance (s). Real USC copies match the scan within ~0.05 s and a few differ
#: by up to ~0.5 s (data-formats.md 1.6); a wrong sample rate in the wav header is off by a
#: factor (16 vs 20 kHz: 1.25; 8 kHz: 2.5), seconds on any real scan.
AUDIO_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class PrepareConfig:
    """Options of :func:`prepare` (the ``sirem prepare`` flags); stored as JSON in the output."""

    skip_frames: int = 10
    audio_context_s: float = 0.25
    kspace_norm: str = "utterance"
    coil_window: int = 5
    eba_articulators: tuple[str, ...] = DEFAULT_EBA_ARTICULATORS
    eba_dilate_px: int = 3
    eba_blur_sigma: float = 1.5
    splits: tuple[str, ...] = ()
    split_seed: int = 0
    subjects: tuple[str, ...] = ()
    image_size: int = 84
    min_orientation_corr: float = 0.5
    strict: bool = False
    audio_tolerance_s: float = AUDIO_TOLERANCE_S

    def validate(self) -> None:
        """Raise InputError naming the first bad option."""
        if self.skip_frames < 0:
            raise InputError(f"--skip-frames must be >= 0, got {self.skip_frames}")
        if not (
            np.isfinite(self.audio_context_s) and 0 < self.audio_context_s <= MAX_AUDIO_CONTEXT_S
        ):
            raise InputError(
                f"--audio-context must be between 0 and {MAX_AUDIO_CONTEXT_S:g} s, "
                f"got {self.audio_context_s:g}"
            )
        if not (np.isfinite(self.audio_tolerance_s) and self.audio_tolerance_s >= 0):
            raise InputError(f"--audio-tolerance must be >= 0 s, got {self.audio_tolerance_s:g}")
        if self.split_seed < 0:
            raise InputError(f"--split-seed must be >= 0, got {self.split_seed}")
        if self.kspace_norm not in ("utterance", "frame"):
            raise InputError(f"--kspace-norm must be utterance or frame, got {self.kspace_norm!r}")
        unknown = [a for a in self.eba_articulators if a not in LABEL_IDS]
        if unknown:
            raise InputError(
                f"--eba-articulators: unknown articulator {unknown[0]!r} "
                f"(choose from {', '.join(LABEL_IDS)})"
            )
        if not 1 <= self.coil_window <= self.image_size:
            raise InputError(
                f"--coil-window must be between 1 and {self.image_size} pixels, "
                f"got {self.coil_window}"
            )
        if self.image_size < 8:
            raise InputError(f"image size must be >= 8, got {self.image_size}")
        parse_splits(self.splits)


@dataclass
class UtteranceReport:
    """Per-utterance line of the closing table."""

    prefix: str
    subject: str
    split: str
    frames: int
    seconds: float
    annotated: bool
    orientation: str
    orientation_corr: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class PrepareResult:
    """What :func:`prepare` wrote."""

    out: Path
    utterances: list[UtteranceReport]
    skipped: list[str]
    notes: list[str]
    wall_s: float


ProgressFn = Callable[[str, int, int], None]


def prepare(
    root: Path,
    out: Path,
    config: PrepareConfig,
    *,
    annot: Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> PrepareResult:
    """Prepare every utterance found under ``root`` (and ``annot``) into ``out``.

    Args:
        root: a USC-75 tree (or a synthetic corpus folder, or its ``usc75/``).
        out: the prepared HDF5 file to write.
        config: options.
        annot: Annot-16 tree when it is not under ``root``.
        overwrite: replace an existing ``out``.
        progress: ``progress(prefix, index, total)`` before each utterance and at the end.

    Raises:
        InputError, FormatError, OutputError: one line naming the file and the problem.
    """
    from sirem_cli.io.usc import discover

    t0 = time.perf_counter()
    config.validate()
    root = Path(root)
    check_output(Path(out), inputs=[root, annot], overwrite=overwrite, kind=PREPARED_FORMAT)
    annot_dirs = [annot] if annot is not None else []
    found = discover(root, annot=annot, subjects=None)
    if annot is None and (root.parent / "annot16").is_dir() and root.name == "usc75":
        found = discover(root, annot=root.parent / "annot16", subjects=None)
        annot_dirs.append(root.parent / "annot16")
    truth_dir = root / "truth" if (root / "truth").is_dir() else root.parent / "truth"
    all_subjects = sorted({u.subject for u in found})
    split_of, split_note = assign_splits(
        all_subjects, seed=config.split_seed, explicit=parse_splits(config.splits) or None
    )
    if config.subjects:
        missing = [s for s in config.subjects if s not in all_subjects]
        if missing:
            raise InputError(f"{root}: no utterances of subject {missing[0]}")
        found = [u for u in found if u.subject in config.subjects]

    notes = [split_note]
    skipped: list[str] = []
    usable = []
    for files in found:
        lacking = [k for k in ("raw", "recon", "audio") if getattr(files, k) is None]
        if lacking:
            msg = f"{files.prefix}: no {', '.join(lacking)} file; skipped"
            if config.strict:
                raise InputError(f"{root}: {msg.replace('; skipped', '')} (--strict)")
            skipped.append(msg)
            continue
        usable.append(files)
    if not usable:
        raise InputError(f"{root}: no utterance has raw, recon and audio files")

    reports: list[UtteranceReport] = []
    cfg_json = {**asdict(config), "root": str(root), "annot": [str(a) for a in annot_dirs]}
    inputs = [root, annot, *(getattr(u, f.name) for u in usable for f in fields(u))]
    with (
        claim_outputs(
            [out],
            inputs=inputs,
            overwrite=overwrite,
            expected_bytes=prepared_bytes(usable),
            kind=PREPARED_FORMAT,
        ),
        PreparedWriter(Path(out), config=cfg_json, overwrite=overwrite) as writer,
    ):
        for i, files in enumerate(usable):
            if progress is not None:
                progress(files.prefix, i, len(usable))
            truth_path = files.truth
            if truth_path is None and truth_dir.is_dir():
                candidate = truth_dir / f"{files.prefix}_truth.h5"
                truth_path = candidate if candidate.exists() else None
            try:
                arrays, attrs, report = prepare_utterance(
                    files.raw,
                    files.recon,
                    files.audio,
                    config,
                    track=files.track,
                    truth=truth_path,
                    prefix=files.prefix,
                    subject=files.subject,
                )
            except ShapeError as exc:  # a library check (NaN coil images, ...): name the files
                raise FormatError(f"{files.raw}: utterance {files.prefix}: {exc}") from None
            attrs["split"] = split_of[files.subject]
            report.split = attrs["split"]
            writer.write_utterance(files.prefix, attrs, arrays)
            reports.append(report)
            del arrays
        if progress is not None:
            progress("", len(usable), len(usable))
    n_plain = sum(not r.annotated for r in reports)
    if n_plain:
        notes.append(f"{n_plain} utterance(s) without annotations: prepared without eba/labels")
    return PrepareResult(Path(out), reports, skipped, notes, time.perf_counter() - t0)


def prepare_utterance(
    raw_path: Path,
    recon_path: Path,
    audio_path: Path,
    config: PrepareConfig,
    *,
    track: Path | None = None,
    truth: Path | None = None,
    prefix: str = "",
    subject: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, Any], UtteranceReport]:
    """Run steps 1-9 of method.md section 1 on one utterance.

    Returns:
        The datasets and attributes of its ``/utterances/<prefix>`` group and a report line.
    """
    from sirem_cli.io.ismrmrd import read_raw
    from sirem_cli.io.usc import read_recon

    warnings: list[str] = []
    scan = read_raw(Path(raw_path))  # step 1
    tr_s = scan.header.tr_ms * 1e-3
    ns = scan.data.shape[0]
    kspace, traj_cycles, dcf = bin_frames(
        scan.data, scan.traj, scan.interleaf, raw_path
    )  # steps 2-3
    n_all = kspace.shape[0]
    skip = config.skip_frames
    if n_all - skip < 1:
        raise FormatError(
            f"{raw_path}: {ns} acquisitions give {n_all} frames of 13 arms, "
            f"none left after skipping {skip} (--skip-frames)"
        )
    kspace = kspace[skip:]
    frames = np.arange(skip, n_all)
    n_frames = kspace.shape[0]

    recon = read_recon(Path(recon_path))  # (nof, n, n) h5py order
    nof = recon.shape[0]
    if abs(nof - ns // 2) > 1:
        raise FormatError(
            f"{recon_path}: /recon has {nof} frames, expected ns // 2 = {ns // 2} for {raw_path.name}"
        )
    ref_index = (ARMS * frames + 6) // 2  # step 6: nearest 2-arm frame to the 13-arm centre
    if ref_index[-1] >= nof:
        raise FormatError(f"{recon_path}: /recon has {nof} frames, frame {ref_index[-1]} is needed")
    size = config.image_size
    reference = _upright_frames(recon[ref_index], size)

    # Step 7: orientation of a plain gridding, checked against /recon and folded into the data.
    traj_raw = to_radians(traj_cycles)
    gridded = _grid_samples(kspace, traj_raw, dcf, size)
    transform, corr, _ = find_transform(
        gridded, normalize_magnitude(reference[_sample_frames(n_frames)])
    )
    if corr < config.min_orientation_corr:
        raise FormatError(
            f"{raw_path}: gridded frames do not match {Path(recon_path).name} in any orientation "
            f"(best correlation {corr:.2f} < {config.min_orientation_corr})"
        )
    traj, kspace = fold_transform(traj_raw, kspace, transform)

    # Step 4: k-space normalization.
    mags = np.abs(kspace)
    if config.kspace_norm == "utterance":
        scale: float | np.ndarray = float(mags.max())
        kspace /= np.float32(scale) if scale > 0 else 1
    else:
        scale = mags.reshape(n_frames, -1).max(axis=1)
        kspace /= np.where(scale > 0, scale, 1).astype(np.float32)[:, None, None, None]
    del mags

    smaps = estimate_coil_maps(kspace, traj, dcf, size, config.coil_window)  # step 5
    frame_time = (ARMS * frames + 6.5) * tr_s

    audio, window, audio_warn = load_audio_windows(
        Path(audio_path), frame_time, config.audio_context_s, ns * tr_s, config.audio_tolerance_s
    )  # step 8
    warnings += audio_warn

    arrays: dict[str, np.ndarray] = {
        "kspace": kspace,
        "traj": traj,
        "dcf": dcf,
        "smaps": smaps,
        "reference": normalize_magnitude(reference),
        "ref_index": ref_index.astype(np.int64),
        "frame_time": frame_time,
        "audio": audio,
        "audio_window": window,
    }
    annotated = track is not None
    if annotated:  # step 9
        eba, labels = eba_from_track(Path(track), ref_index, nof, size, config)
        arrays["eba"] = eba
        arrays["labels"] = labels
    if truth is not None:
        arrays["truth"] = _truth_frames(Path(truth), ref_index, size)

    attrs: dict[str, Any] = {
        "subject": subject,
        "split": "train",
        "tr_s": tr_s,
        "arms_per_frame": ARMS,
        "frame_rate_hz": 1.0 / (ARMS * tr_s),
        "n_acquisitions": ns,
        "skip_frames": skip,
        "kspace_norm": config.kspace_norm,
        "kspace_scale": scale,
        "coil_window": config.coil_window,
        "orientation": transform.describe(),
        "orientation_corr": corr,
        "sample_rate_hz": TARGET_RATE_HZ,
        "audio_context_s": config.audio_context_s,
        "has_annotations": annotated,
    }
    report = UtteranceReport(
        prefix=prefix,
        subject=subject,
        split="",
        frames=n_frames,
        seconds=ns * tr_s,
        annotated=annotated,
        orientation=transform.describe(),
        orientation_corr=corr,
        warnings=warnings,
    )
    return arrays, attrs, report


def bin_frames(
    data: np.ndarray, traj: np.ndarray, interleaf: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-3: 13-arm frames with arms ordered by interleaf; one trajectory and DCF.

    Args:
        data: (ns, C, S) complex64 acquisitions.
        traj: (ns, S, 3) float32 kx, ky (cycles/pixel) and DCF.
        interleaf: (ns,) ``kspace_encode_step_1``.

    Returns:
        kspace (F, C, A, S) complex64, traj (A, S, 2) float64 cycles/pixel, dcf (A, S) float32.
    """
    ns = data.shape[0]
    n_frames = ns // ARMS
    if n_frames < 1:
        raise FormatError(f"{path}: only {ns} acquisitions, fewer than one 13-arm frame")
    il = np.asarray(interleaf[: n_frames * ARMS]).reshape(n_frames, ARMS)
    order = np.argsort(il, axis=1, kind="stable")
    sorted_il = np.take_along_axis(il, order, axis=1)
    if not np.all(sorted_il == np.arange(ARMS)):
        bad = int(np.nonzero(np.any(sorted_il != np.arange(ARMS), axis=1))[0][0])
        raise FormatError(
            f"{path}: interleaf order (kspace_encode_step_1) does not have period 13 "
            f"(block {bad} holds {sorted(il[bad].tolist())})"
        )
    acq = (np.arange(n_frames)[:, None] * ARMS + order).reshape(-1)  # (F*A,) by interleaf
    kspace = data[acq].reshape(n_frames, ARMS, *data.shape[1:]).transpose(0, 2, 1, 3)
    per_arm = traj[acq].reshape(n_frames, ARMS, traj.shape[1], traj.shape[2])
    kr = np.hypot(per_arm[..., 0], per_arm[..., 1])
    kmax = float(kr.max())
    if not 0.4 <= kmax <= 0.6:
        raise FormatError(f"{path}: max |k| is {kmax:.3g}, expected about 0.5 cycles/pixel")
    first = per_arm[0]
    drift = float(np.abs(per_arm[..., :2] - first[None, ..., :2]).max())
    if drift > 1e-3:
        raise FormatError(
            f"{path}: the trajectory of an interleaf changes across frames (by {drift:.3g} "
            "cycles/pixel); per-frame trajectories are not supported by format version 1"
        )
    dcf = first[..., 2].astype(np.float32)
    if not np.all(np.isfinite(dcf)) or dcf.min() < -1e-6:
        raise FormatError(
            f"{path}: the density compensation (traj[:, 2]) has negative or non-finite values"
        )
    return np.ascontiguousarray(kspace, dtype=np.complex64), first[..., :2].astype(np.float64), dcf


def _sample_frames(n_frames: int, n: int = 8) -> np.ndarray:
    return np.unique(np.linspace(0, n_frames - 1, min(n, n_frames)).round().astype(int))


def _grid_samples(kspace: np.ndarray, traj: np.ndarray, dcf: np.ndarray, size: int) -> np.ndarray:
    """Root-sum-of-squares gridding of a few frames (orientation check)."""
    from sirem_cli.mri.coils import gridded_coil_images

    idx = _sample_frames(kspace.shape[0])
    coil_images = gridded_coil_images(kspace[idx], traj.astype(np.float32), dcf, (size, size))
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=1))


def estimate_coil_maps(
    kspace: np.ndarray, traj: np.ndarray, dcf: np.ndarray, size: int, window: int = 5
) -> np.ndarray:
    """Step 5: Walsh maps from k-space averaged over all full rotations, the coil covariance
    smoothed over a ``window`` x ``window`` box (USC's and SIREM's reference code: 20)."""
    from sirem_cli.mri.coils import coil_images_from_rotation_average, walsh_maps

    coil_images = coil_images_from_rotation_average(
        kspace, traj.astype(np.float32), dcf, (size, size)
    )
    return np.asarray(walsh_maps(coil_images, smoothing=window), dtype=np.complex64)


def _upright_frames(recon_frames: np.ndarray, size: int) -> np.ndarray:
    """``/recon[k]`` (h5py order) -> upright frames ``/recon[k].T`` resized to size x size."""
    upright = np.swapaxes(np.asarray(recon_frames, dtype=np.float32), -1, -2)
    upright = np.maximum(upright, 0)
    if upright.shape[-2:] != (size, size):
        from skimage.transform import resize

        upright = resize(upright, (upright.shape[0], size, size), anti_aliasing=True).astype(
            np.float32
        )
    return upright


def load_audio_windows(
    path: Path,
    frame_time: np.ndarray,
    context_s: float,
    scan_s: float,
    tolerance_s: float = AUDIO_TOLERANCE_S,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Step 8: the waveform at 16 kHz and each frame's [start, stop) window in samples.

    Raises:
        FormatError: the audio lasts more than ``tolerance_s`` longer or shorter than the scan
            (the message names both durations and the likely cause), or holds NaN/Inf.
    """
    import soxr

    from sirem_cli.io.checks import check_audio_duration
    from sirem_cli.io.usc import read_wav

    audio, rate = read_wav(path)
    warnings: list[str] = []
    duration = audio.shape[0] / rate
    check_audio_duration(path, audio, rate, scan_s, tolerance_s)
    if abs(duration - scan_s) > 0.2:
        warnings.append(f"audio lasts {duration:.2f} s, scan {scan_s:.2f} s")
    if rate != TARGET_RATE_HZ:
        audio = soxr.resample(audio, rate, TARGET_RATE_HZ, quality="HQ")
    half = round(context_s * TARGET_RATE_HZ)
    centre = np.rint(frame_time * TARGET_RATE_HZ).astype(np.int64)
    window = np.stack([centre - half, centre + half], axis=1)
    return np.asarray(audio, dtype=np.float32), window, warnings


def eba_from_track(
    path: Path, ref_index: np.ndarray, nof: int, size: int, config: PrepareConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Step 9: explained-by-audio maps and label rasters of the aligned 2-arm frames."""
    from sirem_cli.io.annot16 import frame_articulators, read_track

    track = read_track(path)
    if len(track) != nof:
        raise FormatError(f"{path}: {len(track)} track records, but /recon has {nof} frames")
    eba = np.empty((len(ref_index), size, size), np.float32)
    labels = np.empty((len(ref_index), size, size), np.uint8)
    for j, k in enumerate(ref_index):
        arts = frame_articulators(track[int(k)], width=84, height=84)
        if size != 84:
            arts = {name: pts * (size / 84) for name, pts in arts.items()}
        eba[j], labels[j] = contour_maps(
            arts,
            (size, size),
            eba_articulators=config.eba_articulators,
            dilate_px=config.eba_dilate_px,
            blur_sigma=config.eba_blur_sigma,
        )
    return eba, labels


def _truth_frames(path: Path, ref_index: np.ndarray, size: int) -> np.ndarray:
    """Synthetic ground truth at the aligned 2-arm frames, normalized to [0, 1]."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "truth" not in f:
                raise FormatError(f"{path}: lacks the dataset 'truth'")
            truth = f["truth"][np.asarray(ref_index)]
    except OSError as exc:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})"
        ) from None
    if truth.shape[-2:] != (size, size):
        from skimage.transform import resize

        truth = resize(truth, (truth.shape[0], size, size), anti_aliasing=True)
    return normalize_magnitude(truth)


def summarize(result: PrepareResult) -> list[list[Any]]:
    """Rows of the closing table."""
    return [
        [
            r.prefix,
            r.split,
            r.frames,
            f"{r.seconds:.1f}",
            "yes" if r.annotated else "no",
            f"{r.orientation} ({r.orientation_corr:.2f})",
            "; ".join(r.warnings) or "-",
        ]
        for r in result.utterances
    ]
