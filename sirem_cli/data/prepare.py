"""``sirem prepare``: a speech-rtMRI corpus -> one prepared HDF5 file (format version 2).

The steps of method.md section 1, one utterance in memory at a time, for any corpus layout
(:mod:`sirem_cli.data.sources`: USC-75 + Annot-16, ``sirem synth`` corpora, a flat folder)
and any number N of arms per frame: frame t holds acquisitions N t .. N t + N - 1 (counted
from the scan start, so with N < I the interleaves rotate frame to frame), its arms ordered
by interleaf, named in ``arms``; the trajectory and DCF are the utterance's interleaf table.
The output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.data.eba import DEFAULT_EBA_ARTICULATORS, LABEL_IDS, contour_maps
from sirem_cli.data.orientation import find_transform, fold_trajectory
from sirem_cli.data.sources import RawUtterance
from sirem_cli.data.splits import parse_splits
from sirem_cli.errors import FormatError, InputError
from sirem_cli.imaging import normalize_magnitude
from sirem_cli.io.prepared import PreparedWriter
from sirem_cli.mri.spiral import to_radians

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
    arms_per_frame: int | None = None
    layout: str = "auto"
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
        if self.arms_per_frame is not None and self.arms_per_frame < 1:
            raise InputError(f"--arms-per-frame must be >= 1, got {self.arms_per_frame}")
        if self.layout != "auto":
            from sirem_cli.data.sources import source_class

            source_class(self.layout)
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
    arms_per_frame: int
    seconds: float
    annotated: bool
    orientation: str
    orientation_corr: float
    warnings: list[str] = field(default_factory=list)


ProgressFn = Callable[[str, int, int], None]


#: Acquisitions read per block in the writing pass (bounds prepare's memory on long scans).
ACQUISITIONS_PER_BLOCK = 1024


def prepare_utterance(
    utt: RawUtterance, config: PrepareConfig, writer: PreparedWriter, *, split: str = "train"
) -> UtteranceReport:
    """Run the steps of method.md section 1 on one utterance and write its group.

    Three passes over the raw acquisitions, a block at a time, so memory does not grow with the
    scan's length: the interleaf table and frame layout; the k-space maxima (normalization);
    then binning, normalization and writing, accumulating each interleaf's average for the coil
    maps and x_bar, which are written last.

    Returns:
        The report line.
    """
    warnings: list[str] = []
    raw_path = utt.path("raw")
    ns, tr_s = utt.n_acquisitions, utt.tr_s
    interleaf, table_cycles, dcf = scan_interleaves(utt.raw, raw_path)  # step 3
    n_interleaves = table_cycles.shape[0]
    n_arms = config.arms_per_frame or n_interleaves
    if not 1 <= n_arms <= n_interleaves:
        raise InputError(
            f"{raw_path}: --arms-per-frame {n_arms} is outside 1..{n_interleaves} "
            f"(the scan has {n_interleaves} interleaves)"
        )
    skip_acq = config.skip_frames * n_interleaves  # full rotations: a time, whatever N is
    first = -(-skip_acq // n_arms)
    n_frames = ns // n_arms - first
    if n_frames < 1:
        raise FormatError(
            f"{raw_path}: {ns} acquisitions give no frame of {n_arms} arms after skipping "
            f"{skip_acq} ({config.skip_frames} rotations of {n_interleaves}, --skip-frames)"
        )
    frames = np.arange(first, first + n_frames)
    acq, arms = bin_frames(interleaf, frames, n_arms)  # step 2: (F, N) each

    n_ref = utt.n_reference
    if abs(n_ref - ns // utt.reference_arms) > 1:
        raise FormatError(
            f"{utt.path('recon')}: holds {n_ref} reference frames, expected "
            f"{ns // utt.reference_arms} ({ns} acquisitions / {utt.reference_arms}) for "
            f"{Path(str(raw_path)).name}"
        )
    centre_tr = n_arms * frames + n_arms / 2  # step 6: the frame centre in TRs
    ref_index = np.floor(centre_tr / utt.reference_arms).astype(np.int64)
    if ref_index[-1] >= n_ref:
        raise FormatError(
            f"{utt.path('recon')}: holds {n_ref} reference frames, frame {ref_index[-1]} is needed"
        )
    size = config.image_size

    # Step 7: orientation of a plain gridding of whole rotations, checked against the
    # reference and folded into the data.
    traj_raw = to_radians(table_cycles)
    blocks, block_ref = _rotation_blocks(interleaf, skip_acq, n_interleaves, ns, utt)
    gridded = _grid_blocks(utt.raw, interleaf, blocks, traj_raw, dcf, size)
    check = normalize_magnitude(_resized(utt.reference_at(block_ref), size))
    transform, corr, _ = find_transform(gridded, check)
    if corr < config.min_orientation_corr:
        raise FormatError(
            f"{raw_path}: gridded frames do not match {Path(str(utt.path('recon'))).name} in any "
            f"orientation (best correlation {corr:.2f} < {config.min_orientation_corr})"
        )
    traj, factor = fold_trajectory(traj_raw, transform)
    frame_blocks = _frame_blocks(n_frames, n_arms)

    def folded(block: slice) -> np.ndarray:
        """(b, C, N, S) complex64 k-space of a block of frames, in the upright axes."""
        lo, hi = int(acq[block].min()), int(acq[block].max()) + 1
        data, _, _, _ = utt.raw.read(lo, hi)
        kspace = data[acq[block] - lo].transpose(0, 2, 1, 3)  # (b, C, N, S)
        return (kspace * factor[arms[block]][:, None]).astype(np.complex64)

    # Step 4: k-space normalization (the maxima first).
    frame_max = np.concatenate(
        [np.abs(folded(b)).reshape(b.stop - b.start, -1).max(axis=1) for b in frame_blocks]
    )
    scale: float | np.ndarray
    if config.kspace_norm == "utterance":
        scale = float(frame_max.max())
    else:
        scale = frame_max

    annotated = utt.contours_at is not None
    attrs: dict[str, Any] = {
        "subject": utt.entry.subject,
        "split": split,
        "tr_s": tr_s,
        "arms_per_frame": n_arms,
        "n_interleaves": n_interleaves,
        "frame_rate_hz": 1.0 / (n_arms * tr_s),
        "n_acquisitions": ns,
        "skip_frames": config.skip_frames,
        "skip_acquisitions": first * n_arms,
        "reference_arms": utt.reference_arms,
        "kspace_norm": config.kspace_norm,
        "kspace_scale": scale,
        "coil_window": config.coil_window,
        "orientation": transform.describe(),
        "orientation_corr": corr,
        "sample_rate_hz": TARGET_RATE_HZ,
        "audio_context_s": config.audio_context_s,
        "has_annotations": annotated,
    }
    out = writer.begin_utterance(utt.entry.prefix, attrs)
    n_coils, n_samples = utt.raw.n_channels, table_cycles.shape[1]
    out.create("kspace", (n_frames, n_coils, n_arms, n_samples))
    per_frame = ["reference"] + (["eba", "labels"] if annotated else [])
    if utt.truth_at is not None:
        per_frame.append("truth")
    for name in per_frame:
        out.create(name, (n_frames, size, size))

    # Step 5 runs alongside the writing: each interleaf's average over the frames.
    sums = np.zeros((n_coils, n_interleaves, n_samples), np.complex128)
    counts = np.zeros(n_interleaves, np.int64)
    reference_sum = np.zeros((size, size), np.float64)
    for block in frame_blocks:
        kspace = folded(block)
        if config.kspace_norm == "utterance":
            kspace /= np.float32(scale) if scale > 0 else 1
        else:
            peak = frame_max[block]
            kspace /= np.where(peak > 0, peak, 1).astype(np.float32)[:, None, None, None]
        out.write("kspace", block, kspace)
        _accumulate(sums, counts, kspace, arms[block])
        reference = _resized(utt.reference_at(ref_index[block]), size)
        reference_sum += reference.sum(axis=0)
        out.write("reference", block, normalize_magnitude(reference))
        if annotated:  # step 9
            eba, labels = eba_maps(
                utt.contours_at(ref_index[block]), utt.contour_size, size, config
            )
            out.write("eba", block, eba)
            out.write("labels", block, labels)
        if utt.truth_at is not None:
            truth = _resized(utt.truth_at(ref_index[block]), size)
            out.write("truth", block, normalize_magnitude(truth))

    mean = sums / np.maximum(counts, 1)[None, :, None]  # (C, I, S)
    smaps = estimate_coil_maps(mean, traj, dcf, size, config.coil_window)
    xbar = time_averaged_image(mean, traj, dcf, smaps)
    _check_xbar(xbar, reference_sum / n_frames, config, raw_path)
    frame_time = centre_tr * tr_s
    audio, window, audio_warn = audio_windows(
        utt.audio,
        utt.audio_rate_hz,
        utt.path("audio"),
        frame_time,
        config.audio_context_s,
        ns * tr_s,
        config.audio_tolerance_s,
    )  # step 8
    warnings += audio_warn
    for name, value in (
        ("traj", traj),
        ("dcf", dcf),
        ("arms", arms.astype(np.int16)),
        ("smaps", smaps),
        ("xbar", xbar),
        ("ref_index", ref_index),
        ("frame_time", frame_time),
        ("audio", audio),
        ("audio_window", window),
    ):
        out.put(name, value)
    return UtteranceReport(
        prefix=utt.entry.prefix,
        subject=utt.entry.subject,
        split=split,
        frames=n_frames,
        arms_per_frame=n_arms,
        seconds=ns * tr_s,
        annotated=annotated,
        orientation=transform.describe(),
        orientation_corr=corr,
        warnings=warnings,
    )


def _frame_blocks(n_frames: int, n_arms: int) -> list[slice]:
    """Consecutive blocks of frames of about :data:`ACQUISITIONS_PER_BLOCK` acquisitions."""
    step = max(1, ACQUISITIONS_PER_BLOCK // n_arms)
    return [slice(a, min(a + step, n_frames)) for a in range(0, n_frames, step)]


def _accumulate(sums: np.ndarray, counts: np.ndarray, kspace: np.ndarray, arms: np.ndarray) -> None:
    """Add each arm's k-space (b, C, N, S) to its interleaf's sum (C, I, S)."""
    if kspace.shape[2] == sums.shape[1] and np.all(arms == np.arange(sums.shape[1])):
        sums += kspace.astype(np.complex128).sum(axis=0)
        counts += kspace.shape[0]
        return
    for interleaf in np.unique(arms):
        frames, slots = np.nonzero(arms == interleaf)
        sums[:, interleaf] += kspace[frames, :, slots].astype(np.complex128).sum(axis=0)
        counts[interleaf] += frames.size


def scan_interleaves(raw: Any, path: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 0: each acquisition's interleaf and the interleaf table. The k-space is read too
    (and dropped), so that NaN/Inf anywhere in the file is reported even where no frame uses it.

    Returns:
        interleaf (ns,) int64, traj (I, S, 2) float64 cycles/pixel and dcf (I, S) float32.

    Raises:
        FormatError: an interleaf never acquired, a trajectory outside |k| ~ 0.5, an interleaf
            whose trajectory changes within the utterance (format version 2 stores one table),
            or a negative/non-finite DCF.
    """
    parts_il, table, table_dcf = [], None, None
    ns = raw.n_acquisitions
    for lo in range(0, ns, ACQUISITIONS_PER_BLOCK * 4):
        hi = min(ns, lo + ACQUISITIONS_PER_BLOCK * 4)
        _, traj, interleaf, _ = raw.read(lo, hi)
        parts_il.append(interleaf)
        table, table_dcf = _merge_table(table, table_dcf, traj, interleaf, path)
    interleaf = np.concatenate(parts_il)
    if interleaf.min() < 0:
        raise FormatError(f"{path}: interleaf indices (kspace_encode_step_1) must be >= 0")
    n_interleaves = int(interleaf.max()) + 1
    missing = [i for i in range(n_interleaves) if i not in table]
    if missing:
        raise FormatError(
            f"{path}: interleaf {missing[0]} of 0..{n_interleaves - 1} is never acquired "
            "(kspace_encode_step_1)"
        )
    traj_table = np.stack([table[i] for i in range(n_interleaves)]).astype(np.float64)
    dcf_table = np.stack([table_dcf[i] for i in range(n_interleaves)]).astype(np.float32)
    kmax = float(np.hypot(traj_table[..., 0], traj_table[..., 1]).max())
    if not 0.4 <= kmax <= 0.6:
        raise FormatError(f"{path}: max |k| is {kmax:.3g}, expected about 0.5 cycles/pixel")
    if not np.all(np.isfinite(dcf_table)) or dcf_table.min() < -1e-6:
        raise FormatError(
            f"{path}: the density compensation (traj[:, 2]) has negative or non-finite values"
        )
    return interleaf, traj_table, dcf_table


def _merge_table(
    table: dict[int, np.ndarray] | None,
    table_dcf: dict[int, np.ndarray] | None,
    traj: np.ndarray,
    interleaf: np.ndarray,
    path: Any,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Add a block's first occurrences to the table and check every arm against it."""
    table = {} if table is None else table
    table_dcf = {} if table_dcf is None else table_dcf
    for i, index in zip(*np.unique(interleaf, return_index=True), strict=True):
        if int(i) not in table:
            table[int(i)] = traj[index, :, :2].astype(np.float64)
            table_dcf[int(i)] = traj[index, :, 2]
    if interleaf.min() < 0:
        raise FormatError(f"{path}: interleaf indices (kspace_encode_step_1) must be >= 0")
    expected = np.stack([table[int(i)] for i in interleaf])  # (n, S, 2)
    drift = float(np.abs(traj[..., :2] - expected).max())
    if drift > 1e-3:
        raise FormatError(
            f"{path}: the trajectory of an interleaf changes within the utterance (by "
            f"{drift:.3g} cycles/pixel); sirem stores one trajectory per interleaf (format "
            "version 2) and cannot prepare it"
        )
    return table, table_dcf


def bin_frames(
    interleaf: np.ndarray, frames: np.ndarray, n_arms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: acquisitions of each frame, ordered by interleaf.

    Frame t holds acquisitions ``N t .. N t + N - 1``; within a frame the arms are sorted by
    interleaf (stable), so with N = I every frame lists the interleaves 0..I-1 in order.

    Args:
        interleaf: (ns,) interleaf of each acquisition.
        frames: (F,) frame indices t (counted from the scan start).
        n_arms: N.

    Returns:
        acquisition indices (F, N) and their interleaves ``arms`` (F, N) int64.
    """
    acq = frames[:, None] * n_arms + np.arange(n_arms)[None, :]  # (F, N) acquisition order
    il = np.asarray(interleaf)[acq]
    order = np.argsort(il, axis=1, kind="stable")
    return np.take_along_axis(acq, order, axis=1), np.take_along_axis(il, order, axis=1)


def _rotation_blocks(
    interleaf: np.ndarray, skip_acq: int, n_interleaves: int, ns: int, utt: RawUtterance
) -> tuple[np.ndarray, np.ndarray]:
    """A few whole rotations (I consecutive acquisitions, sorted by interleaf) after the skip,
    and the reference frame at the centre of each (the orientation check of step 7)."""
    n_blocks = (ns - skip_acq) // n_interleaves
    if n_blocks < 1:
        raise FormatError(f"{utt.path('raw')}: no whole rotation of the interleaves after the skip")
    starts = skip_acq + _sample_frames(n_blocks) * n_interleaves
    acq = starts[:, None] + np.arange(n_interleaves)[None, :]  # (n, I)
    order = np.argsort(np.asarray(interleaf)[acq], axis=1, kind="stable")
    ref = np.floor((starts + n_interleaves / 2) / utt.reference_arms).astype(np.int64)
    return np.take_along_axis(acq, order, axis=1), np.minimum(ref, utt.n_reference - 1)


def _grid_blocks(
    raw: Any,
    interleaf: np.ndarray,
    blocks: np.ndarray,
    traj: np.ndarray,
    dcf: np.ndarray,
    size: int,
) -> np.ndarray:
    """Root-sum-of-squares gridding of whole rotations (raw axes, orientation check)."""
    from sirem_cli.mri.coils import gridded_coil_images

    images = []
    for block in blocks:  # (I,) acquisitions of one rotation, sorted by interleaf
        lo, hi = int(block.min()), int(block.max()) + 1
        data, _, _, _ = raw.read(lo, hi)
        kspace = data[block - lo].transpose(1, 0, 2)[None]  # (1, C, I, S)
        il = np.asarray(interleaf)[block]
        coil = gridded_coil_images(kspace, traj[il].astype(np.float32), dcf[il], (size, size))
        images.append(np.sqrt(np.sum(np.abs(coil[0]) ** 2, axis=0)))
    return np.stack(images)


def estimate_coil_maps(
    mean: np.ndarray, traj: np.ndarray, dcf: np.ndarray, size: int, window: int = 5
) -> np.ndarray:
    """Step 5: Walsh maps from the rotation-averaged k-space (C, I, S), the coil covariance
    smoothed over a ``window`` x ``window`` box (USC's and SIREM's reference code: 20)."""
    from sirem_cli.mri.coils import gridded_coil_images, walsh_maps

    dcf64 = np.asarray(dcf, dtype=np.float64)
    coil_images = gridded_coil_images(mean, traj.astype(np.float32), dcf64, (size, size))
    return np.asarray(walsh_maps(coil_images, smoothing=window), dtype=np.complex64)


def time_averaged_image(
    mean: np.ndarray, traj: np.ndarray, dcf: np.ndarray, smaps: np.ndarray
) -> np.ndarray:
    """x_bar: the SENSE adjoint A^H W of the rotation-averaged k-space, (H, W) complex64.

    All frames together sample k-space fully, so x_bar is the speaker's anatomy at high SNR
    in the units of a one-rotation gridding, in the upright orientation of every frame.
    """
    from sirem_cli.mri.sense import FrameSenseOp

    op = FrameSenseOp(traj, smaps, n_frames=1)
    y = np.asarray(mean, dtype=np.complex64)[None]  # (1, C, I, S)
    return np.asarray(op.adjoint(op.weighting(dcf).forward(y))[0], dtype=np.complex64)


def _check_xbar(xbar: np.ndarray, mean_ref: np.ndarray, config: PrepareConfig, path: Any) -> None:
    """x_bar must be upright and pixel-aligned with the references (the identity transform).

    Args:
        xbar: (H, W) complex time-averaged image.
        mean_ref: (H, W) mean of the frames' references.
    """
    mean_ref = normalize_magnitude(mean_ref[None])
    image = normalize_magnitude(np.abs(xbar)[None])
    transform, corr, _ = find_transform(image, mean_ref)
    if transform.describe() != "identity" or corr < config.min_orientation_corr:
        raise FormatError(
            f"{path}: the time-averaged image does not match the mean reference frame "
            f"(best transform {transform.describe()}, correlation {corr:.2f})"
        )


def _sample_frames(n_frames: int, n: int = 8) -> np.ndarray:
    return np.unique(np.linspace(0, n_frames - 1, min(n, n_frames)).round().astype(int))


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    """(n, h, w) frames resized to size x size (anti-aliased) when they are not already."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[-2:] != (size, size):
        from skimage.transform import resize

        frames = resize(frames, (frames.shape[0], size, size), anti_aliasing=True).astype(
            np.float32
        )
    return frames


def audio_windows(
    audio: np.ndarray,
    rate: int,
    path: Any,
    frame_time: np.ndarray,
    context_s: float,
    scan_s: float,
    tolerance_s: float = AUDIO_TOLERANCE_S,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Step 8: the waveform at 16 kHz and each frame's [start, stop) window in samples.

    Args:
        audio: (L,) waveform at ``rate`` Hz, sample 0 at the first acquisition.
        rate: its sample rate.
        path: the audio file (for messages).
        frame_time: (F,) frame centres in seconds.
        context_s: half-width of each window.
        scan_s: duration of the scan.
        tolerance_s: the largest accepted difference of the audio's and the scan's durations.

    Raises:
        FormatError: the audio lasts more than ``tolerance_s`` longer or shorter than the scan
            (the message names both durations and the likely cause), or holds NaN/Inf.
    """
    import soxr

    from sirem_cli.io.checks import check_audio_duration

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


def eba_maps(
    contours: list[dict[str, np.ndarray]],
    contour_size: tuple[int, int],
    size: int,
    config: PrepareConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 9: explained-by-audio maps and label rasters from each frame's contours.

    Args:
        contours: per frame, articulator -> (P, 2) upright pixel polyline on a
            ``contour_size`` (W, H) grid.
        contour_size: the contours' grid.
        size: the prepared image size.
        config: the eba options.

    Returns:
        eba (F, size, size) float32 in [0, 1] and labels (F, size, size) uint8.
    """
    eba = np.empty((len(contours), size, size), np.float32)
    labels = np.empty((len(contours), size, size), np.uint8)
    scale = size / contour_size[0]
    for j, arts in enumerate(contours):
        if scale != 1:
            arts = {name: pts * scale for name, pts in arts.items()}
        eba[j], labels[j] = contour_maps(
            arts,
            (size, size),
            eba_articulators=config.eba_articulators,
            dilate_px=config.eba_dilate_px,
            blur_sigma=config.eba_blur_sigma,
        )
    return eba, labels
