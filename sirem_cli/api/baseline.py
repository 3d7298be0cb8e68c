"""``sirem baseline``: non-learned reconstructions of prepared utterances (gridding, wavelet, TV, TTV)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.api.common import backend_info, check_positive
from sirem_cli.errors import FormatError, InputError, NonFiniteError
from sirem_cli.io.checks import check_device_option, check_finite_arrays
from sirem_cli.io.estimates import recon_bytes
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedSet, ReconWriter, UtteranceRef
from sirem_cli.io.schema import RECON_FORMAT
from sirem_cli.metrics.image import psnr
from sirem_cli.recon.registry import BASELINES, baseline_spec

#: Multiples of the method's default lambda tried by ``--lam auto``.
AUTO_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
#: Spatial TV weights (relative) tried with each temporal weight by ``--lam auto`` for methods
#: with a spatial weight (``ttv``): the two are tuned together.
AUTO_SPATIAL = (0.0, 0.003, 0.01, 0.03)


@dataclass(frozen=True)
class BaselineConfig:
    """Options of :func:`run_baseline`; stored as JSON in the reconstruction file.

    Attributes:
        method: a method of :mod:`sirem_cli.recon.registry`.
        lam: relative weight (None: the method's default); see ``auto``.
        auto: choose ``lam`` (and ``lam_spatial`` for methods that have one) on ``auto_split``.
        iters: iterations of the iterative methods.
        split: the split reconstructed.
        device: ``auto``, ``cpu`` or ``cuda``.
        auto_split: the split the weights are tuned on.
        auto_target: ``truth``, ``reference`` or ``auto`` (the truth where the files have it).
        auto_frames: consecutive frames from the middle of each tuning utterance.
        lam_spatial: relative spatial TV weight of methods with a spatial weight.
        window: frames reconstructed at once (bounds memory on long utterances); methods that
            couple frames overlap consecutive windows by ``overlap`` frames and keep the
            middle of each overlap.
        overlap: see ``window``.
    """

    method: str = "gridding"
    lam: float | None = None
    auto: bool = False
    iters: int = 100
    split: str = "test"
    device: str = "auto"
    auto_split: str = "val"
    auto_target: str = "auto"
    auto_frames: int = 64
    lam_spatial: float = 0.0
    window: int = 512
    overlap: int = 32

    def validate(self) -> None:
        """Raise InputError naming the first bad option."""
        spec = baseline_spec(self.method)
        if self.lam is not None:
            check_positive("--lam", self.lam)
        if not np.isfinite(self.lam_spatial) or self.lam_spatial < 0:
            raise InputError(f"--lam-spatial must be >= 0, got {self.lam_spatial:g}")
        if self.lam_spatial > 0 and not spec.spatial_weight:
            with_weight = [n for n, b in BASELINES.items() if b.spatial_weight]
            raise InputError(f"--lam-spatial applies to --method {' | '.join(with_weight)} only")
        if self.iters <= 0:
            raise InputError(f"--iters must be positive, got {self.iters}")
        if self.auto_target not in ("auto", "reference", "truth"):
            raise InputError(
                f"--lam-target must be auto, reference or truth, got {self.auto_target!r}"
            )
        if self.auto_frames < 2:
            raise InputError(f"--lam-frames must be >= 2, got {self.auto_frames}")
        if self.window < 2:
            raise InputError(f"--window must be >= 2 frames, got {self.window}")
        if not 0 <= self.overlap < self.window:
            raise InputError(f"--overlap must be in 0..{self.window - 1}, got {self.overlap}")
        for flag, split in (("--split", self.split), ("--lam-split", self.auto_split)):
            if split not in ("train", "val", "test", "all"):
                raise InputError(f"{flag} must be train, val, test or all, got {split!r}")
        check_device_option(self.device)


@dataclass
class BaselineResult:
    """What :func:`run_baseline` wrote."""

    out: Path
    method: str
    lam: float | None
    lam_spatial: float = 0.0
    lam_scores: dict[tuple[float, float], float] = field(default_factory=dict)
    lam_target: str = ""
    rows: list[tuple[str, int, float]] = field(default_factory=list)  # prefix, frames, ms/frame
    notice: str | None = None
    backend: str = "finufft"


ProgressFn = Callable[[str, int, int], None]

_GEOMETRY = ("traj", "dcf", "smaps")


def _frames(ref: UtteranceRef, frames: slice, names: Sequence[str] = ()) -> dict[str, Any]:
    """k-space, arms and ``names`` of a block of frames, plus the utterance's geometry.

    The k-space is not scanned for NaN/Inf here: every reconstruction finds them in its
    first gridding pass (``NonFiniteError``), and :func:`_reconstruct` names the file then.
    """
    data = PreparedSet.read(ref, ["kspace", "arms", *_GEOMETRY, *names], frames=frames)
    check_finite_arrays(ref.path, ref.prefix, data, [*_GEOMETRY, *names])
    return data


def _reconstruct(ref: UtteranceRef, data: dict[str, Any], method: str, **kwargs: Any) -> Any:
    """:func:`~sirem_cli.recon.baselines.reconstruct` on frames read by :func:`_frames`;
    NaN/Inf k-space is reported with the file, utterance and first bad frame."""
    from sirem_cli.recon.baselines import reconstruct

    try:
        return reconstruct(
            method,
            data["kspace"],
            data["traj"],
            data["dcf"],
            data["smaps"],
            arms=data.get("arms"),
            **kwargs,
        )
    except NonFiniteError as err:
        check_finite_arrays(ref.path, ref.prefix, data, ["kspace"])  # raises, naming the frame
        raise FormatError(f"{ref.path}: utterance {ref.prefix}: {err}") from err


def windows(n_frames: int, window: int, overlap: int) -> list[tuple[slice, slice]]:
    """Overlapping windows covering ``n_frames``: (frames read, part of them kept).

    Consecutive windows share ``overlap`` frames; each keeps its half of the shared frames, so
    the kept parts tile the utterance exactly once.
    """
    if n_frames <= window:
        return [(slice(0, n_frames), slice(0, n_frames))]
    if overlap == 0:
        bounds = [*range(0, n_frames, window), n_frames]
        return [(slice(a, b), slice(0, b - a)) for a, b in itertools.pairwise(bounds)]
    step = window - overlap
    starts = [*range(0, n_frames - window, step), n_frames - window]
    out = []
    for i, start in enumerate(starts):
        lo = 0 if i == 0 else (starts[i - 1] + window + start) // 2 - start
        hi = window if i == len(starts) - 1 else (start + window + starts[i + 1]) // 2 - start
        out.append((slice(start, start + window), slice(lo, hi)))
    return out


def reconstruct_utterance(
    ref: UtteranceRef,
    config: BaselineConfig,
    lam: float,
    lam_spatial: float,
    device: str,
    *,
    frames: slice | None = None,
    prior: Callable[[slice], tuple[Any, Any]] | None = None,
    mu: float = 0.0,
    motion: float = 0.0,
    uncertainty: float = 0.0,
) -> np.ndarray:
    """One utterance (or a block of its frames) in windows of bounded memory.

    Windows of ``config.window`` frames are read from the file one at a time; methods that
    couple frames overlap them by ``config.overlap``. Every window uses the lambda scale of
    the whole reconstructed range (``max |A^H W y|``, one gridding pass), so the result does
    not depend on where windows fall up to the overlap.

    ``prior`` (``ttv`` only) maps a slice of the utterance's frames to their (prior frames,
    precision weight) for the speech prior's term of weight ``mu`` and temporal-TV
    relaxations ``motion`` and ``uncertainty`` (:class:`~sirem_cli.recon.baselines.PriorTerm`).

    Returns:
        (F, H, W) float32 magnitudes in [0, 1] per frame.
    """
    from sirem_cli.recon.baselines import PriorTerm

    spec = baseline_spec(config.method)
    start, stop = (0, ref.n_frames) if frames is None else (frames.start, frames.stop)
    overlap = config.overlap if spec.couples_frames else 0
    parts = windows(stop - start, config.window, overlap)
    scale = None
    if len(parts) > 1 and spec.solver is not None:
        scale = max(
            float(np.abs(_gridded(ref, slice(start + w.start, start + w.stop), device)).max())
            for w, _ in windows(stop - start, config.window, 0)
        )
    out = []
    for read, keep in parts:
        span = slice(start + read.start, start + read.stop)
        data = _frames(ref, span)
        term = None
        if prior is not None:
            frames_p, weight = prior(span)
            term = PriorTerm(frames_p, weight, mu, motion, uncertainty)
        recon = _reconstruct(
            ref,
            data,
            config.method,
            lam=lam,
            lam_spatial=lam_spatial,
            iters=config.iters,
            device=device,
            scale=scale,
            prior=term,
        )
        out.append(recon[keep])
    return np.concatenate(out)


def _gridded(ref: UtteranceRef, frames: slice, device: str) -> np.ndarray:
    data = _frames(ref, frames)
    return _reconstruct(ref, data, "gridding", lam=1.0, device=device, normalize=False)


def tuning_target(refs: Sequence[UtteranceRef], requested: str, flag: str = "--lam-target") -> str:
    """The frames to score against: ``requested``, or for ``auto`` the truth where every
    utterance has it and the reference otherwise (``flag`` names the option in errors)."""
    with_truth = all("truth" in PreparedSet.read(r, ["truth"], frames=slice(0, 1)) for r in refs)
    if requested == "auto":
        return "truth" if with_truth else "reference"
    if requested == "truth" and not with_truth:
        raise InputError(f"{refs[0].path}: the {refs[0].split} utterances have no truth ({flag})")
    return requested


def choose_lambda(
    dataset: PreparedSet, config: BaselineConfig, device: str, progress: ProgressFn | None = None
) -> tuple[float, float, dict[tuple[float, float], float], str]:
    """Pick the weights on the validation utterances by mean per-frame PSNR (the PSNR that
    evaluate reports) against the truth (or reference).

    Each utterance contributes ``auto_frames`` consecutive frames from its middle (methods
    that couple frames need consecutive ones). Methods with a spatial weight tune it together
    with the main weight over :data:`AUTO_GRID` x :data:`AUTO_SPATIAL`.

    Returns:
        The best (lam, lam_spatial), every pair's mean PSNR, and the target used.
    """
    from sirem_cli.recon.baselines import default_lambda

    refs = dataset.select(config.auto_split)
    target = tuning_target(refs, config.auto_target)
    spec = baseline_spec(config.method)
    base = default_lambda(config.method)
    spatial = AUTO_SPATIAL if spec.spatial_weight else (0.0,)
    grid = [(base * m, s) for m in AUTO_GRID for s in spatial]
    blocks = []
    for ref in refs:
        n = min(config.auto_frames, ref.n_frames)
        start = (ref.n_frames - n) // 2
        blocks.append((ref, slice(start, start + n)))
    truths = {ref.prefix: PreparedSet.read(ref, [target], frames=b)[target] for ref, b in blocks}
    scores: dict[tuple[float, float], float] = {}
    tuning = BaselineConfig(**{**asdict(config), "window": max(config.window, config.auto_frames)})
    for i, (lam, lam_s) in enumerate(grid):
        values = [
            float(
                np.mean(
                    psnr(
                        reconstruct_utterance(ref, tuning, lam, lam_s, device, frames=b),
                        truths[ref.prefix],
                    )
                )
            )
            for ref, b in blocks
        ]
        scores[(lam, lam_s)] = float(np.mean(values))
        if progress is not None:
            progress("lambda search", i + 1, len(grid))
    best = max(scores, key=lambda k: scores[k])
    return best[0], best[1], scores, target


def run_baseline(
    prepared: Sequence[Path],
    out: Path,
    config: BaselineConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> BaselineResult:
    """Reconstruct every utterance of ``config.split`` with a baseline and write ``out``.

    ``out`` follows the output policy of :mod:`sirem_cli.io.output` (never an input, replaced
    only with ``overwrite``, locked while written).
    """
    config.validate()
    check_output(Path(out), inputs=prepared, overwrite=overwrite, kind=RECON_FORMAT)
    dataset = PreparedSet(prepared)
    refs = dataset.select(config.split)
    with claim_outputs(
        [out],
        inputs=prepared,
        overwrite=overwrite,
        expected_bytes=recon_bytes(refs),
        kind=RECON_FORMAT,
    ):
        return _run_baseline(dataset, refs, Path(out), config, progress)


def _run_baseline(
    dataset: PreparedSet,
    refs: Sequence[UtteranceRef],
    out: Path,
    config: BaselineConfig,
    progress: ProgressFn | None,
) -> BaselineResult:
    from sirem_cli.recon.baselines import default_lambda, import_backends

    info = backend_info(config.device)
    result = BaselineResult(
        out=Path(out),
        method=config.method,
        lam=None,
        notice=info["notice"],
        backend=info["nufft_backend"],
    )
    lam: float | None = None
    lam_spatial = config.lam_spatial
    if baseline_spec(config.method).solver is not None:
        if config.auto:
            lam, lam_spatial, result.lam_scores, result.lam_target = choose_lambda(
                dataset, config, info["device"], progress
            )
        else:
            lam = config.lam if config.lam is not None else default_lambda(config.method)
    result.lam, result.lam_spatial = lam, lam_spatial
    import_backends(info["device"])  # the imports are not the first utterance's time
    record = {
        **asdict(config),
        "lam": lam,
        "lam_spatial": lam_spatial,
        "lam_target": result.lam_target or None,
        "lam_scores": [
            {"lam": k[0], "lam_spatial": k[1], "psnr": v} for k, v in result.lam_scores.items()
        ],
    }
    with ReconWriter(
        Path(out),
        method=config.method,
        source=[str(p) for p in dataset.paths],
        config=record,
        device=info["device"],
        nufft_backend=info["nufft_backend"],
    ) as writer:
        for i, ref in enumerate(refs):
            if progress is not None:
                progress(ref.prefix, i, len(refs))
            t0 = time.perf_counter()
            recon = reconstruct_utterance(
                ref, config, lam if lam is not None else 1.0, lam_spatial, info["device"]
            )
            wall = time.perf_counter() - t0
            writer.write_recon(
                ref.prefix, recon, wall_s=wall, extra={"frame_rate_hz": ref.frame_rate_hz}
            )
            result.rows.append((ref.prefix, recon.shape[0], 1000 * wall / max(1, recon.shape[0])))
        if progress is not None:
            progress("", len(refs), len(refs))
    return result
