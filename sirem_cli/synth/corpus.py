"""Assemble a synthetic speech-rtMRI corpus in the real USC-75 / Annot-16 on-disk layout.

Layout written under ``OUT`` (see data-formats.md sections 1.2, 2.2 and 5)::

    usc75/subNNN/2drt/raw/<prefix>_raw.h5        ISMRMRD raw spiral k-space, one acquisition per arm
    usc75/subNNN/2drt/recon/<prefix>_recon.h5    /recon float64 (ns // 2, 84, 84), recon[k].T upright
    usc75/subNNN/2drt/audio/<prefix>_audio.wav   20 kHz mono 16-bit, sample 0 at the first arm
    annot16/subNNN/track/<prefix>_track.mat      Annot-16 dense contours, one record per 2-arm frame
    annot16/subNNN/alignment/<prefix>_text.TextGrid   words + phones tiers (UTF-16)
    truth/<prefix>_truth.h5                      ground truth: upright images at every 2-arm centre,
                                                 true coil maps, articulatory parameters, labels

Physics: every spiral arm sees the phantom at its own acquisition time (the tract moves within
a 13-arm frame), multiplied by 8 smooth coil sensitivities, Fourier-sampled on its interleaf,
plus complex Gaussian noise. The audio is synthesized from the same articulatory trajectory.

Orientation: a plain adjoint NUFFT of the raw data (coordinates ``traj[:, :2] * 84``, image
axis 0 with kx, ``+i`` sign) gives ``G = fliplr(U.T)`` for the upright image ``U``; the USC
``/recon`` files hold ``U.T = fliplr(G)`` (data-formats.md 1.5). We generate k-space from ``G``
exactly, so the relation holds by construction and ``sirem prepare`` must find it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sirem_cli import __version__
from sirem_cli.errors import InputError
from sirem_cli.io.output import (
    h5_create,
)
from sirem_cli.mri.spiral import USC_INTERLEAVES, interleaf_order, to_radians, vd_spiral
from sirem_cli.synth.coils import airway_coil_maps

TR_S = 6.004e-3
#: Arms are imaged at mid-readout: echo time 0.8 ms plus half of the 2.52 ms readout.
ARM_TIME_OFFSET_S = 0.8e-3 + 1.26e-3
#: Stimuli used for synthetic prefixes, in this order (USC-75 task names, data-formats.md 1.3).
TASKS = (
    "17_topic1",
    "01_vcv1_r1",
    "09_northwind1_r1",
    "12_picture1",
    "18_topic2",
    "06_rainbow_r1",
    "07_grandfather1_r1",
    "13_picture2",
    "19_topic3",
    "05_shibboleth_r1",
)
AUDIO_RATE_HZ = 20000
#: Audio runs 30 ms past the last arm, as in the real files.
AUDIO_TAIL_S = 0.03
#: /recon intensity scale: arbitrary in the real files (k-space scaled to 1e6 before recon).
RECON_SCALE = 1.0e3
#: Left in every corpus folder: the config and the files written (``--overwrite`` checks it).
SYNTH_MARKER = ".sirem-synth.json"
#: Every file of a corpus folder (how ``--overwrite`` recognizes corpora without a marker).
SYNTH_FILES = re.compile(
    r"(usc75/sub\d{3}/2drt/(raw|recon|audio)/sub\d{3}_2drt_\w+_(raw\.h5|recon\.h5|audio\.wav)"
    r"|annot16/sub\d{3}/(track|alignment)/sub\d{3}_2drt_\w+_(track\.mat|text\.TextGrid)"
    r"|truth/sub\d{3}_2drt_\w+_truth\.h5)"
)
#: About how many bytes a corpus takes per second of scan (raw 8.0 MB, /recon 4.7 MB, truth and
#: tracks 2.9 MB, audio), for the free-space check.
BYTES_PER_SCAN_SECOND = 16.0e6


@dataclass(frozen=True)
class SynthConfig:
    """Options of :func:`synthesize_corpus` (the ``sirem synth`` flags).

    Attributes:
        subjects: number of speakers, taken in order from the Annot-16 speaker list
            (ignored when ``subject_ids`` is given).
        utterances: utterances per speaker.
        seconds: scan length of each utterance in seconds.
        snr_db: k-space SNR in dB: RMS of the noiseless steady-state k-space over the noise
            standard deviation (per real and imaginary part combined).
        seed: master seed; the corpus is a deterministic function of the config.
        transient: brighten the first frames like the approach to steady state of a real
            scan (about 2.2x at the start, decaying over ~20 frames).
        oversample: render the phantom on an ``oversample`` times finer grid before the
            Fourier sampling (1 = on the 84 grid).
        subject_ids: explicit Annot-16 speaker ids.
        n_coils: receive channels.
        matrix: image matrix (84 for USC).
        anatomy_spread: 1 = every speaker draws their own head size and position and vocal-tract
            geometry; 0 = all speakers share one anatomy (voices, texts and articulation stay
            their own); in between, the geometry shrinks toward the shared one. A control for
            experiments on how anatomy variation limits what audio can predict.
    """

    subjects: int = 4
    utterances: int = 2
    seconds: float = 6.0
    snr_db: float = 30.0
    seed: int = 0
    transient: bool = True
    oversample: int = 1
    subject_ids: tuple[str, ...] | None = None
    n_coils: int = 8
    matrix: int = 84
    anatomy_spread: float = 1.0

    def resolved_subjects(self) -> tuple[str, ...]:
        """The speaker ids this config produces; raises InputError for bad values."""
        from sirem_cli.io.annot16 import ANNOT16_SPEAKERS

        if self.subject_ids:
            unknown = [s for s in self.subject_ids if s not in ANNOT16_SPEAKERS]
            if unknown:
                raise InputError(
                    f"unknown subject {unknown[0]!r}: choose from the Annot-16 speakers "
                    f"{', '.join(ANNOT16_SPEAKERS)}"
                )
            if len(set(self.subject_ids)) != len(self.subject_ids):
                raise InputError("--subject: the same subject is given twice")
            return tuple(self.subject_ids)
        if not 1 <= self.subjects <= len(ANNOT16_SPEAKERS):
            raise InputError(
                f"--subjects must be between 1 and {len(ANNOT16_SPEAKERS)} "
                f"(the Annot-16 speakers), got {self.subjects}"
            )
        return tuple(ANNOT16_SPEAKERS[: self.subjects])

    def validate(self) -> None:
        """Raise InputError naming the first bad option."""
        self.resolved_subjects()
        if not 1 <= self.utterances <= len(TASKS):
            raise InputError(
                f"--utterances must be between 1 and {len(TASKS)}, got {self.utterances}"
            )
        if not np.isfinite(self.seconds) or self.seconds < 1.0:
            raise InputError(f"--seconds must be at least 1 s, got {self.seconds:g}")
        if self.seconds > 600:
            raise InputError(f"--seconds must be at most 600 s, got {self.seconds:g}")
        if not np.isfinite(self.snr_db):
            raise InputError("--noise must be a finite SNR in dB")
        if self.oversample not in (1, 2, 3, 4):
            raise InputError(f"--oversample must be 1, 2, 3 or 4, got {self.oversample}")
        if self.seed < 0:
            raise InputError(f"--seed must be non-negative, got {self.seed}")
        if not (np.isfinite(self.anatomy_spread) and 0.0 <= self.anatomy_spread <= 1.0):
            raise InputError(
                f"--anatomy-spread must be between 0 and 1, got {self.anatomy_spread:g}"
            )


@dataclass
class UtteranceSummary:
    """What was written for one utterance."""

    prefix: str
    subject: str
    n_acquisitions: int
    n_frames_2arm: int
    seconds: float
    wall_s: float


@dataclass
class SynthResult:
    """Result of :func:`synthesize_corpus`."""

    out: Path
    config: SynthConfig
    utterances: list[UtteranceSummary] = field(default_factory=list)


ProgressFn = Callable[[str, int, int], None]


def n_acquisitions_for(seconds: float, rng: np.random.Generator) -> int:
    """Number of arms of a scan of about ``seconds``: 13 F + r with 0 < r < 13, as in real scans."""
    n_full = max(1, int(seconds / (USC_INTERLEAVES * TR_S)))
    return n_full * USC_INTERLEAVES + int(rng.integers(1, USC_INTERLEAVES))


def upright_to_raw(images: np.ndarray) -> np.ndarray:
    """Upright images (..., H, W) -> the orientation of a plain gridding of the raw data."""
    return np.flip(np.swapaxes(images, -1, -2), axis=-1)


def transient_gain(times: np.ndarray) -> np.ndarray:
    """Signal gain of the approach to steady state (2.2x at t = 0, ~1.0 after ~1.5 s)."""
    return 1.0 + 1.17 * np.exp(-np.asarray(times) / 0.25)


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks of (..., H*f, W*f) images."""
    if factor == 1:
        return images
    *lead, h, w = images.shape
    return images.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


class SpiralSampler:
    """Trajectory, DCF and one forward NUFFT per interleaf, shared by every utterance."""

    def __init__(self, config: SynthConfig) -> None:
        from sirem_cli.nufft import make_nufft

        traj, dcf = vd_spiral(matrix=config.matrix)
        self.traj = traj.astype(np.float32)  # (A, S, 2) cycles/pixel
        self.dcf = dcf.astype(np.float32)  # (S,)
        self.order = interleaf_order()
        self.os = config.oversample
        m = config.matrix * self.os
        # On the finer grid the same physical k is k / os cycles per fine pixel.
        rad = to_radians(traj / self.os).astype(np.float64)
        self.ops = [make_nufft(rad[a], (m, m)) for a in range(traj.shape[0])]
        self.scale = 1.0 / self.os**2  # keep intensities equal to the matrix-grid sum

    def sample(self, coil_images: np.ndarray, interleaf: int) -> np.ndarray:
        """(n, C, m, m) complex raw-orientation coil images -> (n, C, S) complex64 k-space."""
        y = self.ops[interleaf].forward(coil_images.astype(np.complex64))
        return (np.asarray(y) * self.scale).astype(np.complex64)


def write_utterance(
    root: Path,
    prefix: str,
    subject: str,
    seeds: Sequence[np.random.SeedSequence],
    config: SynthConfig,
    sampler: SpiralSampler,
    progress: ProgressFn | None,
) -> UtteranceSummary:
    from sirem_cli.io.annot16 import write_track
    from sirem_cli.io.ismrmrd import RawHeader, RawWriter
    from sirem_cli.io.textgrid import write_textgrid
    from sirem_cli.io.usc import write_wav
    from sirem_cli.synth.anatomy import anatomy_for_subject
    from sirem_cli.synth.articulation import PARAM_NAMES, articulate
    from sirem_cli.synth.contours import contours_batch
    from sirem_cli.synth.images import render
    from sirem_cli.synth.labels import ARTICULATORS, label_raster
    from sirem_cli.synth.lexicon import sample_utterance
    from sirem_cli.synth.speech import synthesize_audio

    t0 = time.perf_counter()
    text_rng, traj_seed, noise_rng, audio_seed = (
        np.random.default_rng(seeds[0]),
        seeds[1],
        np.random.default_rng(seeds[2]),
        seeds[3],
    )
    n = config.matrix
    ns = n_acquisitions_for(config.seconds, text_rng)
    nof = ns // 2
    # A whole number of audio samples, so the wav and the TextGrids end at the same time.
    duration = round((ns * TR_S + AUDIO_TAIL_S) * AUDIO_RATE_HZ) / AUDIO_RATE_HZ
    utt = sample_utterance(text_rng, duration)
    anat = anatomy_for_subject(subject, config.seed, config.anatomy_spread)

    def trajectory(times: np.ndarray) -> np.ndarray:
        # A fresh generator of the same seed each time: one continuous trajectory.
        return articulate(utt, times, np.random.default_rng(traj_seed))

    smaps_up = airway_coil_maps(n, config.n_coils, seed=int(subject[3:]) + 1000 * config.seed)
    smaps_fine = smaps_up
    if sampler.os > 1:
        smaps_fine = np.repeat(np.repeat(smaps_up, sampler.os, axis=-2), sampler.os, axis=-1)
    smaps_raw = upright_to_raw(smaps_fine)  # (C, m, m)

    raw_dir = root / "usc75" / subject / "2drt"
    paths = {
        "raw": raw_dir / "raw" / f"{prefix}_raw.h5",
        "recon": raw_dir / "recon" / f"{prefix}_recon.h5",
        "audio": raw_dir / "audio" / f"{prefix}_audio.wav",
        "track": root / "annot16" / subject / "track" / f"{prefix}_track.mat",
        "textgrid": root / "annot16" / subject / "alignment" / f"{prefix}_text.TextGrid",
        "truth": root / "truth" / f"{prefix}_truth.h5",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)

    # --- raw k-space, streamed in chunks of whole rotations -------------------------------
    arm_times = np.arange(ns) * TR_S + ARM_TIME_OFFSET_S
    interleaf = sampler.order[np.arange(ns) % USC_INTERLEAVES]
    dcf3 = np.broadcast_to(sampler.dcf[:, None], (sampler.dcf.size, 1))
    traj3 = {
        a: np.concatenate([sampler.traj[a], dcf3], axis=1).astype(np.float32)
        for a in range(USC_INTERLEAVES)
    }
    chunk = USC_INTERLEAVES * 16
    sigma = None
    with RawWriter(paths["raw"], RawHeader(matrix=(n, n), n_channels=config.n_coils)) as writer:
        for start in range(0, ns, chunk):
            stop = min(ns, start + chunk)
            times = arm_times[start:stop]
            images = render(anat, trajectory(times), n=n, oversample=sampler.os)  # (T, m, m)
            gain = transient_gain(times) if config.transient else np.ones_like(times)
            raw_images = upright_to_raw(images)
            data = np.empty((stop - start, config.n_coils, sampler.traj.shape[1]), np.complex64)
            for a in range(USC_INTERLEAVES):
                sel = np.nonzero(interleaf[start:stop] == a)[0]
                if sel.size == 0:
                    continue
                coil_imgs = raw_images[sel, None] * smaps_raw[None]  # (n_sel, C, m, m)
                data[sel] = sampler.sample(coil_imgs, a)
            if sigma is None:
                rms = float(np.sqrt(np.mean(np.abs(data) ** 2)))
                sigma = rms / 10 ** (config.snr_db / 20)
            data *= gain[:, None, None].astype(np.float32)
            noise = noise_rng.standard_normal((2, *data.shape), dtype=np.float32)
            data += (sigma / np.sqrt(2)) * (noise[0] + 1j * noise[1]).astype(np.complex64)
            traj_block = np.stack([traj3[a] for a in interleaf[start:stop]])
            writer.append(data, traj_block, interleaf[start:stop])
            if progress is not None:
                progress(prefix, stop, ns + nof)

    # --- 2-arm ground truth, /recon reference, labels, contours ---------------------------
    centres = (2 * np.arange(nof) + 1) * TR_S
    contour_frames: list[dict[str, np.ndarray]] = []
    with (
        h5_create(paths["truth"]) as tf,
        h5_create(paths["recon"]) as rf,
    ):
        d_truth = tf.create_dataset(
            "truth", (nof, n, n), np.float32, chunks=(1, n, n), compression="gzip"
        )
        d_labels = tf.create_dataset(
            "labels", (nof, n, n), np.uint8, chunks=(16, n, n), compression="gzip"
        )
        d_params = tf.create_dataset("params", (nof, len(PARAM_NAMES)), np.float32)
        d_recon = rf.create_dataset("recon", (nof, n, n), np.float64)
        step = 256
        for start in range(0, nof, step):
            stop = min(nof, start + step)
            params = trajectory(centres[start:stop])
            truth = box_downsample(render(anat, params, n=n, oversample=sampler.os), sampler.os)
            d_truth[start:stop] = truth
            d_labels[start:stop] = label_raster(anat, params, n=n)
            d_params[start:stop] = params
            d_recon[start:stop] = RECON_SCALE * np.swapaxes(_soften(truth), -1, -2)
            contour_frames.extend(contours_batch(anat, params, n=n))
            if progress is not None:
                progress(prefix, ns + stop, ns + nof)
        for name, value in (("lambda_t", 0.08), ("lambda_s", 0.0), ("iterations", 150.0)):
            rf.create_dataset(name, data=np.full((1, 1), value))
        tf.create_dataset("smaps", data=smaps_up)
        tf.create_dataset("frame_time", data=centres)
        tf.attrs.update(
            {
                "format": "sirem-synth-truth",
                "format_version": 1,
                "sirem_version": __version__,
                "prefix": prefix,
                "subject": subject,
                "tr_s": TR_S,
                "n_acquisitions": ns,
                "param_names": json.dumps(list(PARAM_NAMES)),
                "labels": json.dumps({int(k): v for k, v in ARTICULATORS.items()}),
                "config": json.dumps(asdict(config)),
                "orientation": "upright: row 0 superior, column 0 the face",
            }
        )
        for name, dims in (
            ("truth", "F2,H,W"),
            ("labels", "F2,H,W"),
            ("params", "F2,P"),
            ("smaps", "C,H,W"),
        ):
            tf[name].attrs["dims"] = dims

    write_track(paths["track"], contour_frames, width=n, height=n)
    write_textgrid(
        paths["textgrid"],
        {
            "words": [(iv.start, iv.end, iv.label) for iv in utt.words],
            "phones": [(iv.start, iv.end, iv.label) for iv in utt.phones],
        },
        0.0,
        utt.duration,
    )
    # The speech comes from the very trajectory the images were rendered from; audio_seed
    # only drives the source noise (glottal jitter, aspiration, frication).
    audio = synthesize_audio(
        anat,
        utt,
        np.random.default_rng(audio_seed),
        sample_rate=AUDIO_RATE_HZ,
        articulate_fn=lambda _utt, times, _rng: trajectory(times),
    )
    write_wav(paths["audio"], audio, AUDIO_RATE_HZ)
    return UtteranceSummary(
        prefix=prefix,
        subject=subject,
        n_acquisitions=ns,
        n_frames_2arm=nof,
        seconds=ns * TR_S,
        wall_s=time.perf_counter() - t0,
    )


def _soften(images: np.ndarray) -> np.ndarray:
    """A mild blur standing in for the regularized reference reconstruction."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0, 0.5, 0.5), mode="nearest")


def readme(config: SynthConfig, subjects: Sequence[str]) -> str:
    return (
        "Synthetic speech-rtMRI corpus written by `sirem synth` "
        f"(sirem {__version__}).\n"
        "usc75/ has the USC 75-speaker layout, annot16/ the 75-Speaker Annot-16 layout,\n"
        "truth/ the ground truth (not part of the real corpora).\n"
        f"subjects: {' '.join(subjects)}\n"
        f"config: {json.dumps(asdict(config))}\n"
    )
