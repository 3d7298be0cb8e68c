"""The speech-informed prior: ``sirem train --model prior`` and ``sirem reconstruct`` with it.

Training (:func:`run_train_prior`) fits a :class:`~sirem_cli.models.speech_prior.SpeechPriorNet`
on the training speakers: from log-mel spectra centred on the frames (2K + 1 frames of
context, about +-100 ms at 2-arm frames) and the utterance's time-averaged image x_bar it
predicts each frame's deviation from x_bar, against the truth where the files have it
(``--target auto``). It then chooses the weights of the data-consistent solve on the
validation speakers: first temporal TV's own (lam_t, lam_s), as ``sirem baseline --method ttv
--lam auto`` does, then the prior weight mu with the TV weights at 1 or 2/3 of those, beside mu = 0 (temporal
TV itself: a prior that does not beat it on validation is switched off), by the mean
per-frame PSNR that ``sirem evaluate`` reports. Everything is stored in the checkpoint.

Reconstruction (:func:`run_reconstruct_prior`) solves, per utterance in overlapping windows,

    x = argmin 1/2 ||W^(1/2)(A x - y)||^2 + mu/2 ||M^(1/2)(x - s p)||^2 + lam_s TV(x)
        + lam_t ||D_t x||_1

(:func:`sirem_cli.recon.prior.prior_solve` on the Toeplitz normal operator of the frames' own
interleaves), with p the predicted prior frames, M the precision weight of the network's
predicted variance and s one complex scale per window fitted to the data. mu = 0 is exactly
``ttv``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sirem_cli.api.audio import StageFn
from sirem_cli.api.baseline import (
    BaselineConfig,
    choose_lambda,
    reconstruct_utterance,
    tuning_target,
)
from sirem_cli.api.common import backend_info, training_leak_warnings
from sirem_cli.errors import InputError
from sirem_cli.imaging import normalize_magnitude
from sirem_cli.io.checks import check_device_option, check_finite_arrays
from sirem_cli.io.estimates import recon_bytes
from sirem_cli.io.output import check_output, claim_outputs
from sirem_cli.io.prepared import PreparedSet, ReconWriter, UtteranceRef
from sirem_cli.io.schema import RECON_FORMAT
from sirem_cli.metrics.image import psnr

#: Method names written into reconstruction files.
PRIOR_METHOD = "speech-prior"
#: Prior weights mu tried on the validation speakers (relative to L, the data term's).
#: (1.0 scored last for every network of the study, at both anatomy spreads: dropped.)
MU_GRID = (0.03, 0.1, 0.3)
#: mu without tuning.
DEFAULT_MU = 0.1
#: Factors of temporal TV's own (lam_t, lam_s) tried with the prior.
TV_FACTORS = (1.0, 2.0 / 3.0)
#: Relaxations of temporal TV where the predicted frames move (``motion``; 0: off), tried
#: with the prior (only 0 for a prior that does not change in time). 0.03 and 0.005 scored
#: below 0.01 on validation at both anatomy spreads of the study.
MOTION_GRID = (0.0, 0.01)
#: Relaxations of temporal TV where the prior is unsure (``uncertainty``: the mean 1 - M at
#: which the weight halves; 0: off), tried with the prior (only 0 for a prior whose weight M
#: is 1 everywhere). 1 scored above 0.3 and 3 for the no-audio network on validation
#: (anatomy spread 1; docs/study.md).
UNCERTAINTY_GRID = (0.0, 1.0)
#: Reference quantile of each frame's predicted variance for the precision weight.
PRECISION_QUANTILE = 0.05
#: How the prior's pixel weight M is formed: from the network's predicted variance, from
#: the static explained-by-audio map (M = 1 - 0.9 w), or 1.
WEIGHT_MODES = ("precision", "static", "none")
#: Pixel weights of the training loss: 1 + LOSS_BOOST * (mean explained-by-audio map).
LOSS_BOOST = 4.0


@dataclass(frozen=True)
class PriorOptions:
    """Options of ``sirem train --model prior``; stored in the checkpoint.

    Attributes:
        epochs: passes over ``frames_per_epoch`` training frames.
        batch_size: frames per step.
        frames_per_epoch: frames drawn per epoch (0: all).
        lr: AdamW learning rate (cosine to 1e-5).
        no_audio: the ablation: the same network with the audio zeroed.
        target: ``auto`` (truth where the files have it), ``truth`` or ``reference``.
        seed: initialization, batch order and augmentation.
        n_mels: mel bands of the audio features.
        half_context: K, frames of audio context on each side.
        rank: R, audio-modulated basis maps of the network.
        iters: iterations of the data-consistent solve (tuning and reconstruction).
        tune: choose the weights on the validation speakers: temporal TV's own (lam_t, lam_s)
            unless both are given, then mu, motion and uncertainty (unless given) with the
            TV weights at :data:`TV_FACTORS` of those. Without it: the values below or their
            defaults (mu 0.1, ttv's default lam, no spatial TV, motion and uncertainty 0).
        tune_frames: consecutive middle frames of each validation utterance used to tune.
        mu, lam_time, lam_spatial, motion, uncertainty: fixed solve weights (None: tuned,
            or defaults).
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    epochs: int = 20
    batch_size: int = 64
    frames_per_epoch: int = 3000
    lr: float = 1e-3
    no_audio: bool = False
    target: str = "auto"
    seed: int = 0
    n_mels: int = 40
    half_context: int = 8
    rank: int = 24
    iters: int = 60
    tune: bool = True
    tune_frames: int = 64
    mu: float | None = None
    lam_time: float | None = None
    lam_spatial: float | None = None
    motion: float | None = None
    uncertainty: float | None = None
    device: str = "auto"

    def validate(self) -> None:
        """Raise InputError naming the first bad option."""
        if self.epochs < 0:
            raise InputError(
                f"--epochs must be >= 0 (0: the prior is x_bar itself), got {self.epochs}"
            )
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--iters", self.iters),
            ("--n-mels", self.n_mels),
        ):
            if value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        if self.frames_per_epoch < 0 or self.half_context < 0:
            raise InputError("--frames-per-epoch and the audio context must be >= 0")
        if self.tune_frames < 2:
            raise InputError(f"--tune-frames must be >= 2, got {self.tune_frames}")
        if self.target not in ("auto", "truth", "reference"):
            raise InputError(f"--target must be auto, truth or reference, got {self.target!r}")
        check_solve_weights(self.mu, self.lam_time, self.lam_spatial, self.motion, self.uncertainty)
        check_device_option(self.device)


def check_solve_weights(
    mu: float | None,
    lam_time: float | None,
    lam_spatial: float | None,
    motion: float | None = None,
    uncertainty: float | None = None,
) -> None:
    """Raise InputError for a weight that is not a finite number >= 0 (lam_t > 0)."""
    for flag, value in (
        ("--mu", mu),
        ("--lam-spatial", lam_spatial),
        ("--motion", motion),
        ("--uncertainty", uncertainty),
    ):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise InputError(f"{flag} must be a number >= 0, got {value}")
    if lam_time is not None and not (np.isfinite(lam_time) and lam_time > 0):
        raise InputError(f"--lam must be a positive number, got {lam_time}")


@dataclass(frozen=True)
class SolveWeights:
    """The weights of the data-consistent solve (relative, as ``sirem baseline``'s)."""

    mu: float
    lam_time: float
    lam_spatial: float
    iters: int
    motion: float = 0.0  # temporal TV relaxed where the prior moves (0: off)
    uncertainty: float = 0.0  # ... and where the prior is unsure (low M; 0: off)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SolveWeights:
        """The weights named in a flat record (a checkpoint's info, a tuning score); a
        relaxation the record lacks (written before it existed) is 0."""
        values = {}
        for f in fields(cls):
            value = record.get(f.name, f.default)
            if value is MISSING:
                raise KeyError(f.name)
            values[f.name] = int(value) if f.name == "iters" else float(value)
        return cls(**values)


# -- features ---------------------------------------------------------------------------------
def utterance_inputs(ref: UtteranceRef, n_mels: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    """The network's inputs of one utterance: ((F, 2K + 1, n_mels) contexts, (H, W) x_bar).

    The features are log-mel spectra of 25 ms windows centred on the frames (``frame_time``),
    standardized per utterance (so that loudness and recording gain do not matter).

    Raises:
        InputError: a prepared file without x_bar (format version 1).
    """
    from sirem_cli.models.speech_prior import (
        context_windows,
        frame_log_mel,
        standardize_embeddings,
    )

    data = PreparedSet.read(ref, ["audio", "frame_time", "xbar"])
    if "xbar" not in data:
        raise InputError(
            f"{ref.path}: {ref.prefix} has no time-averaged image xbar (a format-version-"
            f"{ref.version} file): prepare the corpus again with this sirem for the speech prior"
        )
    check_finite_arrays(ref.path, ref.prefix, data, ["audio", "frame_time", "xbar"])
    rate = int(data["attrs"]["sample_rate_hz"])
    mel = frame_log_mel(data["audio"], rate, data["frame_time"], n_mels=n_mels)
    return context_windows(standardize_embeddings(mel), half), data["xbar"]


def static_map(refs: Sequence[UtteranceRef]) -> np.ndarray | None:
    """Mean explained-by-audio map of the utterances, max 1 (None where one has no maps)."""
    maps = []
    for ref in refs:
        data = PreparedSet.read(ref, ["eba"])
        if "eba" not in data:
            return None
        maps.append(data["eba"].mean(axis=0))
    mean = np.mean(maps, axis=0)
    peak = float(mean.max())
    return (mean / peak).astype(np.float32) if peak > 0 else None


def prior_data(
    refs: Sequence[UtteranceRef],
    target: str,
    options: PriorOptions,
    loss_weight: np.ndarray | None,
    progress: StageFn | None = None,
    stage: str = "features",
) -> Any:
    """:class:`~sirem_cli.training.prior.PriorData` of the utterances (all frames)."""
    from sirem_cli.models.speech_prior import normalize_xbar
    from sirem_cli.training.prior import PriorData

    contexts, xbars, speaker, targets = [], [], [], []
    for i, ref in enumerate(refs):
        if progress is not None:
            progress(stage, i, len(refs))
        ctx, xbar = utterance_inputs(ref, options.n_mels, options.half_context)
        frames = PreparedSet.read(ref, [target])[target]
        contexts.append(ctx)
        xbars.append(normalize_xbar(xbar)[0])
        speaker.append(np.full(len(ctx), i))
        targets.append(normalize_magnitude(frames))
    if progress is not None:
        progress(stage, len(refs), len(refs))
    return PriorData(
        np.concatenate(contexts),
        np.stack(xbars),
        np.concatenate(speaker),
        np.concatenate(targets),
        None,
        None if loss_weight is None else 1.0 + LOSS_BOOST * loss_weight,
    )


# -- the prior of one utterance ------------------------------------------------------------
@dataclass
class UtterancePrior:
    """The predicted prior frames of one utterance, formed window by window.

    Attributes:
        model: the network (eval mode).
        contexts: (F, T, E) its audio contexts.
        xbar: (H, W) complex x_bar.
        weight: (H, W) map w of ``p = |x_bar|_n + w Delta`` (None: 1).
        net_seconds: time spent in the network so far.
    """

    model: Any
    contexts: np.ndarray
    xbar: np.ndarray
    weight: Any = None
    mode: str = "precision"
    static: np.ndarray | None = None
    net_seconds: float = 0.0

    def __call__(self, frames: slice) -> tuple[Any, Any]:
        """(prior (F', H, W) complex, its weight M, (F', H, W), (H, W) or None) of ``frames``.

        M follows ``mode`` (:data:`WEIGHT_MODES`): the precision of the network's predicted
        variance, or ``1 - 0.9 w`` of the static explained-by-audio map (the untrained
        network, whose prior is x_bar: less pull towards it where speech moves the tissue).
        """
        import torch

        from sirem_cli.models.speech_prior import normalize_xbar, precision_weight, prior_frames
        from sirem_cli.recon.prior import prior_weight

        t0 = time.perf_counter()
        xbar = torch.as_tensor(self.xbar)
        ctx = torch.as_tensor(self.contexts[frames], dtype=torch.float32)
        delta, logvar = self.model.predict_full(ctx, torch.as_tensor(normalize_xbar(self.xbar)[0]))
        prior = prior_frames(xbar, delta, self.weight, clamp_max=1.0)
        weight = None
        if self.mode == "precision" and logvar is not None:
            weight = precision_weight(logvar, PRECISION_QUANTILE)
        elif self.mode == "static" and self.static is not None:
            weight = prior_weight(torch.as_tensor(self.static))
        self.net_seconds += time.perf_counter() - t0
        return prior, weight


def solve_utterance(
    ref: UtteranceRef,
    prior: UtterancePrior | None,
    weights: SolveWeights,
    device: str,
    *,
    window: int = 512,
    overlap: int = 32,
    frames: slice | None = None,
) -> np.ndarray:
    """The data-consistent reconstruction of one utterance (or a block of its frames).

    ``prior=None`` (or mu = 0) is ``sirem baseline --method ttv`` with the same weights.

    Returns:
        (F, H, W) float32 magnitudes in [0, 1] per frame.
    """
    config = BaselineConfig(method="ttv", iters=weights.iters, window=window, overlap=overlap)
    return reconstruct_utterance(
        ref,
        config,
        weights.lam_time,
        weights.lam_spatial,
        device,
        frames=frames,
        prior=None if prior is None or weights.mu == 0 else prior,
        mu=weights.mu,
        motion=weights.motion,
        uncertainty=weights.uncertainty,
    )


# -- training -------------------------------------------------------------------------------
@dataclass
class PriorTrainRunResult:
    """What :func:`run_train_prior` wrote and measured."""

    checkpoint: Path
    log: list[dict[str, Any]]
    best_epoch: int
    best_val_psnr: float
    start_val_psnr: float
    weights: SolveWeights
    ttv: tuple[float, float]
    scores: list[dict[str, Any]] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    seconds: float = 0.0
    target: str = "truth"
    notes: list[str] = field(default_factory=list)


def default_prior_path(prepared: Sequence[Path], no_audio: bool) -> Path:
    """``<first input stem>.prior[-no-audio].pt`` next to the first prepared file."""
    first = Path(prepared[0])
    return first.with_name(f"{first.stem}.prior{'-no-audio' if no_audio else ''}.pt")


def run_train_prior(
    prepared: Sequence[Path],
    out: Path | None,
    options: PriorOptions,
    *,
    overwrite: bool = False,
    progress: StageFn | None = None,
    epoch_progress: Callable[[int, int, float, float | None], None] | None = None,
) -> PriorTrainRunResult:
    """Train the speech prior on the train split, tune its solve on the val split, and write
    the checkpoint (output policy of :mod:`sirem_cli.io.output`)."""
    options.validate()
    out = Path(out) if out is not None else default_prior_path(prepared, options.no_audio)
    check_output(out, inputs=prepared, overwrite=overwrite)
    with claim_outputs([out], inputs=prepared, overwrite=overwrite):
        return _train_prior(prepared, out, options, progress, epoch_progress)


def _geometry(refs: Sequence[UtteranceRef]) -> tuple[int, tuple[int, int], float]:
    kinds = {(r.arms_per_frame, r.image_size) for r in refs}
    if len(kinds) > 1:
        raise InputError(
            "the prepared utterances differ in arms per frame or image size "
            f"({sorted(kinds)}): prepare every file with the same options"
        )
    ref = refs[0]
    return ref.arms_per_frame, ref.image_size, ref.frame_rate_hz


def _train_prior(
    prepared: Sequence[Path],
    out: Path,
    options: PriorOptions,
    progress: StageFn | None,
    epoch_progress: Callable[[int, int, float, float | None], None] | None,
) -> PriorTrainRunResult:
    import torch

    from sirem_cli.models.speech_prior import SpeechPriorConfig
    from sirem_cli.training.distributed import resolve_device
    from sirem_cli.training.prior import (
        PriorTrainConfig,
        prior_checkpoint_payload,
        save_prior_checkpoint,
        train_prior,
    )

    t_start = time.perf_counter()
    dataset = PreparedSet(prepared)
    train_refs = dataset.select("train")
    val_refs = [u for u in dataset.utterances if u.split == "val"]
    if not val_refs:
        raise InputError(
            f"{dataset.paths[0]}: the speech prior needs validation speakers (split 'val' is "
            "empty) to keep its best epoch and tune its weights; prepare with --splits"
        )
    arms, image_size, frame_rate = _geometry([*train_refs, *val_refs])
    target = tuning_target([*train_refs, *val_refs], options.target, "--target")
    device = str(resolve_device(options.device))
    stat = static_map(train_refs)
    train = prior_data(train_refs, target, options, stat, progress, "training features")
    val = prior_data(val_refs, target, options, stat, progress, "validation features")
    model_config = SpeechPriorConfig(
        embedding_dim=options.n_mels,
        context=2 * options.half_context + 1,
        image_size=image_size,
        rank=options.rank,
        uncertainty=True,
        no_audio=options.no_audio,
        encoder="logmel",
        frame_rate_hz=frame_rate,
    )
    train_config = PriorTrainConfig(
        epochs=max(1, options.epochs),
        batch_size=options.batch_size,
        frames_per_epoch=options.frames_per_epoch,
        lr=options.lr,
        nll_weight=1e-3,
        shift_px=2.0,
        zoom=0.05,
        rotate_deg=3.0,
        seed=options.seed,
    )
    if options.epochs == 0:  # the untrained network: Delta = 0, M = 1, i.e. the prior is x_bar
        result = untrained_prior(model_config, val)
    else:
        result = train_prior(model_config, train, val, train_config, progress=epoch_progress)
    model = result.model
    # A trained network weights its prior by its own predicted variance; the untrained one
    # (x_bar) by the static map, where the files have the explained-by-audio maps.
    mode = "precision" if options.epochs > 0 else ("static" if stat is not None else "none")
    weights, ttv, scores = _choose_weights(
        dataset, val_refs, model, options, target, device, progress, mode, stat
    )
    info = {
        "kind": PRIOR_METHOD,
        "options": json.dumps(asdict(options)),
        "arms_per_frame": int(arms),
        "n_mels": options.n_mels,
        "half_context": options.half_context,
        "target": target,
        "train_subjects": json.dumps(sorted({r.subject for r in train_refs})),
        "mu": weights.mu,
        "lam_time": weights.lam_time,
        "lam_spatial": weights.lam_spatial,
        "motion": weights.motion,
        "uncertainty": weights.uncertainty,
        "iters": weights.iters,
        "ttv_lam": ttv[0],
        "ttv_lam_spatial": ttv[1],
        "tune_scores": json.dumps(scores),
        "best_epoch": result.best_epoch,
        "val_prior_psnr": result.best_val_psnr,
        "prior_weight": mode,
    }
    payload = prior_checkpoint_payload(model, train_config=train_config, info=info)
    if stat is not None:
        payload["static_map"] = torch.as_tensor(stat)
    save_prior_checkpoint(out, payload)
    return PriorTrainRunResult(
        checkpoint=out,
        log=result.log,
        best_epoch=result.best_epoch,
        best_val_psnr=result.best_val_psnr,
        start_val_psnr=result.start_val_psnr,
        weights=weights,
        ttv=ttv,
        scores=scores,
        n_train=len(train),
        n_val=len(val),
        seconds=time.perf_counter() - t_start,
        target=target,
    )


def untrained_prior(model_config: Any, val: Any) -> Any:
    """The result of zero epochs: the network as initialized (its output layers start at zero,
    so Delta = 0 and the predicted variance is constant: the prior is x_bar with M = 1)."""
    from sirem_cli.models.speech_prior import SpeechPriorNet
    from sirem_cli.training.prior import PriorTrainResult, evaluate_prior

    model = SpeechPriorNet(model_config).eval()
    _, start = evaluate_prior(model, val)
    return PriorTrainResult(model, [], 0, start, start)


def _choose_weights(
    dataset: PreparedSet,
    val_refs: Sequence[UtteranceRef],
    model: Any,
    options: PriorOptions,
    target: str,
    device: str,
    progress: StageFn | None,
    mode: str = "precision",
    static: np.ndarray | None = None,
) -> tuple[SolveWeights, tuple[float, float], list[dict[str, Any]]]:
    """(mu, lam_t, lam_s) on the validation speakers; also temporal TV's own (lam_t, lam_s)."""
    from sirem_cli.recon.baselines import default_lambda

    fixed_tv = options.lam_time is not None and options.lam_spatial is not None
    if options.tune and not fixed_tv:  # temporal TV's own weights first, as baseline does
        tv_config = BaselineConfig(
            method="ttv",
            auto=True,
            iters=options.iters,
            device=device,
            auto_split="val",
            auto_target=target,
            auto_frames=options.tune_frames,
        )
        lam_t, lam_s, _, _ = choose_lambda(dataset, tv_config, device, progress)
    else:
        lam_t = options.lam_time if options.lam_time is not None else default_lambda("ttv")
        lam_s = options.lam_spatial if options.lam_spatial is not None else 0.0
    ttv = (float(lam_t), float(lam_s))
    if not options.tune:
        mu = options.mu if options.mu is not None else DEFAULT_MU
        motion, unsure = float(options.motion or 0.0), float(options.uncertainty or 0.0)
        return SolveWeights(float(mu), ttv[0], ttv[1], options.iters, motion, unsure), ttv, []
    # With the prior, TV's weights at 1 and 2/3 of its own (the prior takes part of its
    # work). mu = 0 at TV's own weights is temporal TV itself: a prior that does not beat it
    # on the validation speakers is not used (mu = 0 stored), so the default never does worse
    # than the MRI-only solution there.
    blocks = []
    for ref in val_refs:
        n = min(options.tune_frames, ref.n_frames)
        start = (ref.n_frames - n) // 2
        block = slice(start, start + n)
        truth = normalize_magnitude(PreparedSet.read(ref, [target], frames=block)[target])
        ctx, xbar = utterance_inputs(ref, options.n_mels, options.half_context)
        blocks.append((ref, block, truth, UtterancePrior(model, ctx, xbar, None, mode, static)))
    mus = MU_GRID if options.mu is None else (options.mu,)
    motions = MOTION_GRID if options.motion is None else (options.motion,)
    unsures = UNCERTAINTY_GRID if options.uncertainty is None else (options.uncertainty,)
    moves, unsure = _relaxable([(prior, block) for _, block, _, prior in blocks])
    if options.motion is None and not moves:
        motions = (0.0,)  # a prior constant in time: the relaxation is the identity
    if options.uncertainty is None and not unsure:
        unsures = (0.0,)  # M = 1 everywhere: likewise
    grid = [(0.0, 1.0, 0.0, 0.0)] + [
        (m, f, r, u) for m in mus for f in TV_FACTORS for r in motions for u in unsures if m > 0
    ]
    scores = []
    for i, (mu, factor, motion, unsure_w) in enumerate(grid):
        weights = SolveWeights(
            mu, ttv[0] * factor, ttv[1] * factor, options.iters, motion, unsure_w
        )
        values = [
            float(
                np.mean(
                    psnr(
                        solve_utterance(
                            ref, prior, weights, device, window=max(512, len(truth)), frames=block
                        ),
                        truth,
                    )
                )
            )
            for ref, block, truth, prior in blocks
        ]
        scores.append({**asdict(weights), "psnr": float(np.mean(values))})
        if progress is not None:
            progress("prior weights", i + 1, len(grid))
    best = max(scores, key=lambda s: s["psnr"])
    return SolveWeights.from_record(best), ttv, scores


def _relaxable(blocks: Sequence[tuple[UtterancePrior, slice]]) -> tuple[bool, bool]:
    """(whether the predicted prior frames change in time, whether their weight M is
    below 1 anywhere) in any of the blocks: which relaxations of temporal TV can act."""
    from sirem_cli.recon.prior import motion_map, uncertainty_map

    moves = unsure = False
    for prior, block in blocks:
        frames, weight = prior(block)
        moves = moves or float(motion_map(frames).max()) > 0
        unsure = unsure or (weight is not None and float(uncertainty_map(weight).max()) > 0)
    return moves, unsure


# -- reconstruction ---------------------------------------------------------------------------
@dataclass
class PriorReconstructResult:
    """What :func:`run_reconstruct_prior` wrote."""

    out: Path
    method: str
    rows: list[tuple[str, int, float, float]]  # prefix, frames, ms/frame, network ms/frame
    weights: SolveWeights
    notice: str | None
    backend: str
    warnings: list[str] = field(default_factory=list)


def read_prior(checkpoint: Path) -> tuple[Any, dict[str, Any], np.ndarray | None]:
    """(network, info, static explained-by-audio map or None) of a speech-prior checkpoint
    (``weights_only`` load)."""
    from sirem_cli.training.prior import read_prior_checkpoint

    model, payload = read_prior_checkpoint(Path(checkpoint))
    info = dict(payload.get("info", {}))
    if info.get("kind") != PRIOR_METHOD:
        raise InputError(f"{checkpoint}: a speech-prior network without its solve settings")
    static = payload.get("static_map")
    if static is not None:
        static = np.asarray(static, dtype=np.float32)
        if static.shape != tuple(model.config.image_size):
            raise InputError(f"{checkpoint}: static map of shape {static.shape}, not the image's")
    return model, info, static


def run_reconstruct_prior(
    checkpoint: Path,
    prepared: Sequence[Path],
    out: Path,
    *,
    split: str = "test",
    device: str = "auto",
    mu: float | None = None,
    lam_time: float | None = None,
    lam_spatial: float | None = None,
    motion: float | None = None,
    uncertainty: float | None = None,
    iters: int | None = None,
    weights_from: Path | None = None,
    window: int = 512,
    overlap: int = 32,
    overwrite: bool = False,
    progress: StageFn | None = None,
) -> PriorReconstructResult:
    """Reconstruct ``split`` of ``prepared`` with a speech-prior checkpoint into a recon file.

    ``mu``, ``lam_time``, ``lam_spatial``, ``motion``, ``uncertainty`` and ``iters`` override
    the checkpoint's tuned values (a checkpoint from before ``motion`` or ``uncertainty``
    existed has 0 for it).
    ``weights_from``: another speech-prior checkpoint (of the same arms per frame) whose tuned
    solve weights replace this one's, the explicit values still overriding: an ablation
    reconstructed at the full model's weights, so that only the network differs.
    """
    check_device_option(device)
    check_solve_weights(mu, lam_time, lam_spatial, motion, uncertainty)
    if iters is not None and iters < 1:
        raise InputError(f"--iters must be >= 1, got {iters}")
    if window < 2 or not 0 <= overlap < window:
        raise InputError(
            f"--window must be >= 2 and --overlap in 0..window-1 ({window}, {overlap})"
        )
    inputs = [*prepared, checkpoint, *([weights_from] if weights_from is not None else [])]
    check_output(Path(out), inputs=inputs, overwrite=overwrite, kind=RECON_FORMAT)
    model, info, static = read_prior(checkpoint)
    tuned = info if weights_from is None else _solve_info(Path(weights_from), info)
    refs = PreparedSet(prepared).select(split)
    for ref in refs:
        if ref.arms_per_frame != int(info["arms_per_frame"]):
            raise InputError(
                f"{checkpoint}: trained on frames of {info['arms_per_frame']} arms, but "
                f"{ref.path} holds frames of {ref.arms_per_frame} (prepare it with "
                f"--arms-per-frame {info['arms_per_frame']})"
            )
        if tuple(model.config.image_size) != ref.image_size:
            raise InputError(
                f"{checkpoint}: model image size {tuple(model.config.image_size)} does not "
                f"match {ref.path} ({ref.image_size})"
            )
        if ref.version < 2:
            raise InputError(
                f"{ref.path}: format version {ref.version} has no time-averaged image xbar: "
                "prepare the corpus again with this sirem for the speech prior"
            )
    given = {
        "mu": mu, "lam_time": lam_time, "lam_spatial": lam_spatial, "iters": iters,
        "motion": motion, "uncertainty": uncertainty,
    }  # fmt: skip
    weights = SolveWeights.from_record(tuned | {k: v for k, v in given.items() if v is not None})
    with claim_outputs(
        [out],
        inputs=inputs,
        overwrite=overwrite,
        expected_bytes=recon_bytes(refs),
        kind=RECON_FORMAT,
    ):
        return _reconstruct_prior(
            checkpoint, prepared, Path(out), refs, (model, info, static), weights, split,
            device, window, overlap, progress, weights_from,
        )  # fmt: skip


def _solve_info(source: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The tuned solve weights of another speech-prior checkpoint (for ``weights_from``).

    Raises:
        InputError: not a speech-prior checkpoint, or one of other arms per frame.
    """
    _, other, _ = read_prior(source)
    if int(other["arms_per_frame"]) != int(info["arms_per_frame"]):
        raise InputError(
            f"{source}: its weights were tuned on frames of {other['arms_per_frame']} arms, "
            f"the checkpoint's frames have {info['arms_per_frame']}"
        )
    return other


def _reconstruct_prior(
    checkpoint: Path,
    prepared: Sequence[Path],
    out: Path,
    refs: Sequence[UtteranceRef],
    checkpoint_data: tuple[Any, dict[str, Any], np.ndarray | None],
    weights: SolveWeights,
    split: str,
    device: str,
    window: int,
    overlap: int,
    progress: StageFn | None,
    weights_from: Path | None = None,
) -> PriorReconstructResult:
    from sirem_cli.recon.baselines import import_backends

    model, info, static = checkpoint_data
    # checkpoints without the key (the first ones) weighted by the predicted variance
    mode = str(info.get("prior_weight", "precision"))
    if mode not in WEIGHT_MODES:
        raise InputError(f"{checkpoint}: unknown prior weight {mode!r}")
    dataset = PreparedSet(prepared)
    backend = backend_info(device)
    trained_on = set(json.loads(info.get("train_subjects", "[]")))
    warnings = training_leak_warnings(checkpoint, (r.subject for r in refs), trained_on, split)
    method = f"{PRIOR_METHOD}-no-audio" if model.config.no_audio else PRIOR_METHOD
    record = {
        "checkpoint": str(checkpoint),
        "split": split,
        "target": info.get("target", "truth"),
        "train_subjects": sorted(trained_on),
        **asdict(weights),
        "weights_from": str(weights_from) if weights_from is not None else None,
        "prior_weight": mode,
        "window": window,
        "overlap": overlap,
        "model_config": model.config.to_dict(),
    }
    import_backends(backend["device"])
    rows = []
    with ReconWriter(
        out,
        method=method,
        source=[str(p) for p in dataset.paths],
        config=record,
        device=backend["device"],
        nufft_backend=backend["nufft_backend"],
    ) as writer:
        for i, ref in enumerate(refs):
            if progress is not None:
                progress(ref.prefix, i, len(refs))
            t0 = time.perf_counter()
            ctx, xbar = utterance_inputs(ref, int(info["n_mels"]), int(info["half_context"]))
            prior = UtterancePrior(model, ctx, xbar, None, mode, static)
            recon = solve_utterance(
                ref, prior, weights, backend["device"], window=window, overlap=overlap
            )
            wall = time.perf_counter() - t0
            n = max(1, ref.n_frames)
            writer.write_recon(
                ref.prefix,
                recon,
                wall_s=wall,
                extra={
                    "frame_rate_hz": ref.frame_rate_hz,
                    "prior_ms_per_frame": 1000 * prior.net_seconds / n,
                },
            )
            rows.append((ref.prefix, ref.n_frames, 1000 * wall / n, 1000 * prior.net_seconds / n))
        if progress is not None:
            progress("", len(refs), len(refs))
    return PriorReconstructResult(
        out, method, rows, weights, backend["notice"], backend["nufft_backend"], warnings
    )
