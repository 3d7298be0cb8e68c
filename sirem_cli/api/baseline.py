"""``sirem baseline``: non-learned reconstructions of prepared utterances (gridding, wavelet, TV, TTV)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sirem_cli.api.common import backend_info, check_finite, check_positive
from sirem_cli.errors import InputError
from sirem_cli.io.atomic import check_output_path
from sirem_cli.io.prepared import PreparedSet, ReconWriter, UtteranceRef
from sirem_cli.metrics.image import psnr
from sirem_cli.recon.registry import BASELINES, baseline_spec

#: Multiples of the method's default lambda tried by ``--lam auto``.
AUTO_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class BaselineConfig:
    """Options of :func:`run_baseline`; stored as JSON in the reconstruction file."""

    method: str = "gridding"
    lam: float | None = None  # None: the method's default; see ``auto``
    auto: bool = False
    iters: int = 100
    split: str = "test"
    device: str = "auto"
    auto_split: str = "val"
    auto_target: str = "reference"
    auto_frames: int = 24
    lam_spatial: float = 0.0  # ttv only: relative weight of spatial TV added per frame

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
        if self.auto_target not in ("reference", "truth"):
            raise InputError(f"--lam-target must be reference or truth, got {self.auto_target!r}")


@dataclass
class BaselineResult:
    """What :func:`run_baseline` wrote."""

    out: Path
    method: str
    lam: float | None
    lam_scores: dict[float, float] = field(default_factory=dict)
    rows: list[tuple[str, int, float]] = field(default_factory=list)  # prefix, frames, ms/frame
    notice: str | None = None
    backend: str = "finufft"


ProgressFn = Callable[[str, int, int], None]


def _load(ref: UtteranceRef) -> dict:
    data = PreparedSet.read(ref, ["kspace", "traj", "dcf", "smaps", "reference", "truth"])
    check_finite(ref.path, ref.prefix, "kspace", data["kspace"])
    return data


def choose_lambda(
    dataset: PreparedSet, config: BaselineConfig, device: str, progress: ProgressFn | None = None
) -> tuple[float, dict[float, float]]:
    """Pick lambda on the validation utterances by mean per-frame PSNR (the PSNR that evaluate
    reports) against the reference (or truth).

    At most ``auto_frames`` frames per utterance are used, evenly spaced, to bound the cost.
    """
    from sirem_cli.recon.baselines import default_lambda, reconstruct

    refs = dataset.select(config.auto_split)
    base = default_lambda(config.method)
    scores: dict[float, float] = {}
    for i, mult in enumerate(AUTO_GRID):
        lam = base * mult
        values = []
        for ref in refs:
            data = _load(ref)
            if config.auto_target not in data:
                raise InputError(
                    f"{ref.path}: {ref.prefix} has no {config.auto_target} for --lam auto"
                )
            idx = np.unique(
                np.linspace(0, ref.n_frames - 1, min(config.auto_frames, ref.n_frames)).astype(int)
            )
            recon = reconstruct(
                config.method,
                data["kspace"][idx],
                data["traj"],
                data["dcf"],
                data["smaps"],
                lam=lam,
                lam_spatial=config.lam_spatial,
                iters=config.iters,
                device=device,
            )
            values.append(float(np.mean(psnr(recon, data[config.auto_target][idx]))))
        scores[lam] = float(np.mean(values))
        if progress is not None:
            progress("lambda search", i + 1, len(AUTO_GRID))
    best = max(scores, key=lambda k: scores[k])
    return best, scores


def run_baseline(
    prepared: Sequence[Path],
    out: Path,
    config: BaselineConfig,
    *,
    overwrite: bool = True,
    progress: ProgressFn | None = None,
) -> BaselineResult:
    """Reconstruct every utterance of ``config.split`` with a baseline and write ``out``."""
    from sirem_cli.recon.baselines import default_lambda, import_backends, reconstruct

    config.validate()
    check_output_path(Path(out), overwrite=overwrite)
    dataset = PreparedSet(prepared)
    refs = dataset.select(config.split)
    info = backend_info(config.device)
    result = BaselineResult(
        out=Path(out),
        method=config.method,
        lam=None,
        notice=info["notice"],
        backend=info["nufft_backend"],
    )
    lam: float | None = None
    if baseline_spec(config.method).solver is not None:
        if config.auto:
            lam, result.lam_scores = choose_lambda(dataset, config, info["device"], progress)
        else:
            lam = config.lam if config.lam is not None else default_lambda(config.method)
    result.lam = lam
    import_backends(info["device"])  # the imports are not the first utterance's time
    record = {
        **asdict(config),
        "lam": lam,
        "lam_scores": {str(k): v for k, v in result.lam_scores.items()},
    }
    with ReconWriter(
        Path(out),
        method=config.method,
        source=[str(p) for p in dataset.paths],
        config=record,
        device=info["device"],
        nufft_backend=info["nufft_backend"],
        overwrite=overwrite,
    ) as writer:
        for i, ref in enumerate(refs):
            if progress is not None:
                progress(ref.prefix, i, len(refs))
            data = _load(ref)
            t0 = time.perf_counter()
            recon = reconstruct(
                config.method,
                data["kspace"],
                data["traj"],
                data["dcf"],
                data["smaps"],
                lam=lam if lam is not None else 1.0,
                lam_spatial=config.lam_spatial,
                iters=config.iters,
                device=info["device"],
            )
            wall = time.perf_counter() - t0
            writer.write_recon(ref.prefix, recon, wall_s=wall)
            result.rows.append((ref.prefix, recon.shape[0], 1000 * wall / max(1, recon.shape[0])))
        if progress is not None:
            progress("", len(refs), len(refs))
    return result
