"""The speech-informed prior: a frame's deviation from the speaker's time-averaged image.

A new speaker's anatomy (head position, palate, tongue size) is not in the audio, but it is
in the speaker's own time-averaged image x_bar: all frames' k-space together sample every
interleaf many times, so ``x_bar = A_all^H W y_all`` (one DCF-weighted SENSE adjoint of the
per-interleaf mean k-space) is a fully sampled, motion-averaged image of the same scan, with
no annotation. The network therefore predicts only what audio can say, the deviation of
frame t from x_bar::

    Delta_t = f_theta(h_[t-K..t+K], |x_bar|_n)                              (B, H, W)
    p_t     = clip(|x_bar|_n + w (.) Delta_t, 0, c) exp(i angle(x_bar))     (prior_frames)

with h the per-frame audio embedding sequence (any (F, E) sequence at the frame rate: log-mel
spectra centred on the frames from :func:`frame_log_mel`, standardized per utterance with
:func:`standardize_embeddings`, or HuBERT states resampled to the frame centres with
:func:`resample_embeddings`), a context of 2K + 1 frames around t (:func:`context_windows`;
K = 8 at 83 frames/s is +-96 ms, the time scale of articulator motion), ``|x_bar|_n`` the
magnitude of x_bar divided by its maximum (:func:`normalize_xbar`), w an optional pixel map
(1 by default) and c an optional bound (1: no pixel brighter than the brightest of x_bar).
p_t then enters the data-consistent solve of :mod:`sirem_cli.recon.prior`, which fits a
complex scale, starts at the scaled prior and weights it per pixel (M, e.g.
:func:`precision_weight` of the network's predicted log-variance).

Network (:class:`SpeechPriorNet`): a U-Net reads ``|x_bar|_n`` once per speaker and outputs
a time-invariant map Phi_0 and R basis maps Phi_r; an audio path (temporal convolutions over
the embedding context, then an MLP) outputs R coefficients a_r(t), and
``Delta_t = Phi_0 + sum_r a_r(t) Phi_r``: feature-wise linear modulation (FiLM; Perez,
Strub, de Vries, Dumoulin, Courville 2018, "FiLM: Visual reasoning with a general
conditioning layer", AAAI) of the U-Net's last feature layer by the audio, i.e. a rank-R
partially separable model of the frames (spatial factors from the speaker's anatomy,
temporal factors from the speech; cf. Liang 2007 and the low-rank speech-MRI models of
Lingala et al.). The output layers start at zero (Delta = 0: p_t = x_bar). With
``uncertainty`` a second set of maps and coefficients predicts log sigma_t^2(r), trained by
a Gaussian likelihood on the prior's residual. With ``no_audio`` (the ablation) the context
is multiplied by zero before the audio path: the same network, whose coefficients can only
learn constants, i.e. a speaker-adaptive but time-invariant correction of x_bar.

This is the prior-image idea of PICCS (Chen, Tang, Leng 2008, Med. Phys. 35:660) with a
learned, audio-driven prior image, reconstructed with the temporal finite-difference model
of the USC real-time speech MRI (Lingala et al. 2016, JMRI 43:28; 2017, MRM 77:112).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor, nn

from sirem_cli.config import JsonConfig
from sirem_cli.errors import InputError, ShapeError

#: Default half-width K of the embedding context in frames (2K + 1 = 17 frames, +-96 ms at
#: USC's 2-arm rate of 83.3 frames/s).
DEFAULT_HALF_CONTEXT = 8
_XBAR_EPS = 1e-12
#: Range of the predicted log-variance (normalized magnitude units squared).
LOGVAR_RANGE = (-12.0, 2.0)
_LOGVAR_START = math.log(1e-3)


@dataclasses.dataclass(frozen=True)
class SpeechPriorConfig(JsonConfig):
    """Everything needed to rebuild a :class:`SpeechPriorNet`; stored as JSON in checkpoints.

    Attributes:
        embedding_dim: E, size of one frame's audio embedding.
        context: T = 2K + 1, embedding frames per prediction (odd, centred on the frame).
        image_size: (H, W) in pixels (each divisible by 2 ** (len(channels) - 1)).
        channels: U-Net widths per resolution level, finest first.
        rank: R, number of audio-modulated basis maps.
        uncertainty: also predict a per-pixel log-variance of the prior
            (:meth:`SpeechPriorNet.forward_full`), for the weight of :func:`precision_weight`.
        audio_hidden: width of the audio path and of the FiLM conditioning vector.
        dropout: dropout on the audio vector during training.
        no_audio: the ablation: the embedding context is replaced by zeros.
        encoder: name of the embedding the model consumes (e.g. ``"logmel"``, ``"hubert"``).
        frame_rate_hz: frame rate of the embedding sequence the model was trained on.
    """

    _unknown_what = "speech prior config keys"

    embedding_dim: int
    context: int = 2 * DEFAULT_HALF_CONTEXT + 1
    image_size: tuple[int, int] = (84, 84)
    channels: tuple[int, ...] = (16, 32, 48)
    rank: int = 24
    uncertainty: bool = False
    audio_hidden: int = 128
    dropout: float = 0.1
    no_audio: bool = False
    encoder: str = "logmel"
    frame_rate_hz: float = 1.0 / (2 * 6.004e-3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "channels", tuple(int(v) for v in self.channels))
        if self.embedding_dim < 1:
            raise InputError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if self.context < 1 or self.context % 2 == 0:
            raise InputError(f"context must be an odd number of frames, got {self.context}")
        if not self.channels or min(self.channels) < 1:
            raise InputError(f"channels must be positive widths, got {self.channels}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise InputError(f"image_size must be (H, W), got {self.image_size}")
        step = 2 ** (len(self.channels) - 1)
        if any(v % step for v in self.image_size):
            raise InputError(
                f"image_size {self.image_size} must be divisible by {step} for "
                f"{len(self.channels)} U-Net levels"
            )
        if self.rank < 1:
            raise InputError(f"rank must be >= 1, got {self.rank}")
        if self.audio_hidden < 1 or not 0.0 <= self.dropout < 1.0:
            raise InputError("audio_hidden must be >= 1 and dropout in [0, 1)")

    @property
    def half_context(self) -> int:
        """K, frames on each side of the centre."""
        return self.context // 2

    @property
    def n_heads(self) -> int:
        """Output images per frame: Delta, and the log-variance with ``uncertainty``."""
        return 2 if self.uncertainty else 1


# -- pure helpers ----------------------------------------------------------------------
def context_windows(embeddings: np.ndarray | Tensor, half: int) -> np.ndarray | Tensor:
    """Stack each frame's embedding with its K neighbours on either side.

    Frames beyond the ends of the sequence repeat the first or last embedding (the audio
    does not stop at the scan's edges; a zero would read as silence).

    Args:
        embeddings: (F, E) per-frame embedding sequence (numpy or torch).
        half: K >= 0.

    Returns:
        (F, 2K + 1, E), the same type and dtype; row t holds frames t-K .. t+K.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 1:
        raise ShapeError(f"embeddings: expected an (F, E) sequence, got {tuple(embeddings.shape)}")
    if half < 0:
        raise ShapeError(f"half context: expected >= 0, got {half}")
    n = embeddings.shape[0]
    offsets = np.arange(-half, half + 1)
    index = np.clip(np.arange(n)[:, None] + offsets[None, :], 0, n - 1)  # (F, T)
    if isinstance(embeddings, Tensor):
        return embeddings[torch.as_tensor(index, device=embeddings.device)]
    return np.asarray(embeddings)[index]


def standardize_embeddings(embeddings: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-utterance standardization: zero mean, unit variance per channel over frames.

    Removes the speaker's and the recording's constant spectral colour (cepstral mean and
    variance normalization), using nothing but the utterance's own audio.

    Args:
        embeddings: (F, E) float sequence.
        eps: floor of the standard deviation.

    Returns:
        (F, E) float32.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 1:
        raise ShapeError(f"embeddings: expected an (F, E) sequence, got {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise InputError("embeddings: contain NaN or infinite values")
    mean = emb.mean(axis=0, keepdims=True)
    std = emb.std(axis=0, keepdims=True)
    return ((emb - mean) / np.maximum(std, eps)).astype(np.float32)


def resample_embeddings(
    embeddings: np.ndarray, source_times: np.ndarray, frame_times: np.ndarray
) -> np.ndarray:
    """Linearly interpolate an embedding sequence to the frame centres.

    For encoders with their own rate (HuBERT: 50 Hz); values outside the source times repeat
    the end values.

    Args:
        embeddings: (N, E) sequence at ``source_times``.
        source_times: (N,) increasing times in s.
        frame_times: (F,) frame centres in s.

    Returns:
        (F, E) float32.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    src = np.asarray(source_times, dtype=np.float64)
    dst = np.asarray(frame_times, dtype=np.float64)
    if emb.ndim != 2 or src.shape != (emb.shape[0],) or dst.ndim != 1:
        raise ShapeError(
            f"resample: need (N, E) embeddings with (N,) times, got {emb.shape}, {src.shape}"
        )
    if emb.shape[0] > 1 and np.any(np.diff(src) <= 0):
        raise InputError("resample: source times must increase")
    out = np.empty((dst.shape[0], emb.shape[1]), np.float32)
    for e in range(emb.shape[1]):
        out[:, e] = np.interp(dst, src, emb[:, e])
    return out


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(freq, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3)


def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmax: float) -> np.ndarray:
    """Triangular mel filters with Slaney area normalization: (n_mels, n_fft // 2 + 1).

    Band m rises from the centre frequency of band m - 1 to its own and falls to that of
    band m + 1; the centres are equally spaced in mel between 0 Hz and ``fmax``.
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    bins = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins[None] - lo) / (mid - lo)
    fall = (hi - bins[None]) / (hi - mid)
    bank = np.maximum(0.0, np.minimum(rise, fall))
    return bank * (2.0 / (hi - lo))


def frame_log_mel(
    audio: np.ndarray,
    sample_rate_hz: int,
    frame_times: np.ndarray,
    *,
    n_mels: int = 40,
    window_s: float = 0.025,
    fmax: float | None = 8000.0,
) -> np.ndarray:
    """Log-mel spectrum of a Hann window centred on each frame: an (F, n_mels) sequence.

    One short-time spectrum per frame, at exactly the frame's centre time (no hop to align),
    so the sequence is at the frame rate; stack neighbours with :func:`context_windows`.
    Samples outside the waveform count as zeros.

    Args:
        audio: (L,) float waveform; sample 0 is time 0 (the scan's first acquisition).
        sample_rate_hz: its rate.
        frame_times: (F,) frame centres in s.
        n_mels: mel bands (:func:`mel_filterbank`).
        window_s: window length in s (25 ms).
        fmax: highest mel frequency (None: Nyquist).

    Returns:
        (F, n_mels) float32 log10 mel power (floored at 1e-10).
    """
    wave = np.asarray(audio, dtype=np.float32)
    times = np.asarray(frame_times, dtype=np.float64)
    if wave.ndim != 1 or wave.shape[0] < 1 or times.ndim != 1:
        raise ShapeError(
            f"frame_log_mel: need (L,) audio and (F,) times, got {wave.shape}, {times.shape}"
        )
    if not np.all(np.isfinite(wave)) or not np.all(np.isfinite(times)):
        raise InputError("frame_log_mel: audio or frame times contain NaN or infinite values")
    if n_mels < 1 or window_s <= 0:
        raise InputError(f"frame_log_mel: need n_mels >= 1 and window_s > 0, got {n_mels}")
    n_win = max(16, round(window_s * sample_rate_hz))
    n_fft = 1 << (n_win - 1).bit_length()
    start = np.rint(times * sample_rate_hz).astype(np.int64) - n_win // 2  # (F,)
    index = start[:, None] + np.arange(n_win)[None, :]  # (F, n_win)
    valid = (index >= 0) & (index < wave.shape[0])
    segments = np.where(valid, wave[np.clip(index, 0, wave.shape[0] - 1)], 0.0)
    segments = segments * np.hanning(n_win)[None, :]
    power = np.abs(np.fft.rfft(segments, n=n_fft, axis=-1)) ** 2  # (F, n_fft // 2 + 1)
    top = sample_rate_hz / 2 if fmax is None else min(float(fmax), sample_rate_hz / 2)
    mel = power @ mel_filterbank(sample_rate_hz, n_fft, n_mels, top).T  # (F, n_mels)
    return np.log10(np.maximum(mel, 1e-10)).astype(np.float32)


def normalize_xbar(xbar: np.ndarray | Tensor) -> tuple[np.ndarray | Tensor, float]:
    """The network's image input: ``|x_bar| / max |x_bar|``.

    Args:
        xbar: (H, W) complex (or real) time-averaged image.

    Returns:
        ((H, W) float32 magnitude in [0, 1], the divisor max |x_bar|).
    """
    if xbar.ndim != 2:
        raise ShapeError(f"x_bar: expected an (H, W) image, got {tuple(xbar.shape)}")
    if isinstance(xbar, Tensor):
        mag = xbar.abs().to(torch.float32)
        peak = float(mag.max())
    else:
        mag = np.abs(np.asarray(xbar)).astype(np.float32)
        peak = float(mag.max())
    if not math.isfinite(peak) or peak <= _XBAR_EPS:
        raise InputError("x_bar: the time-averaged image is zero or not finite")
    return mag / peak, peak


def smooth_in_time(frames: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing along the frame axis (edges reflected).

    The network predicts each frame from its own context window, so its output can jitter
    from frame to frame more than the articulators move; a sigma of 1-2 frames (12-24 ms
    at 83 frames/s) removes the jitter without blurring the motion.

    Args:
        frames: (F, H, W) real tensor.
        sigma: standard deviation in frames (0: unchanged).

    Returns:
        (F, H, W), the input's dtype.
    """
    if frames.ndim != 3 or frames.is_complex():
        raise ShapeError(f"frames: expected a real (F, H, W) tensor, got {tuple(frames.shape)}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ShapeError(f"sigma: expected a number >= 0, got {sigma}")
    if sigma == 0 or frames.shape[0] == 1:
        return frames
    radius = max(1, int(3 * sigma + 0.5))  # scipy.ndimage's truncate=3 support
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(frames.dtype)
    n = frames.shape[0]
    index = torch.arange(-radius, n + radius)
    period = 2 * (n - 1)
    index = torch.remainder(index, period)
    index = torch.where(index >= n, period - index, index)  # reflect about the end frames
    padded = frames[index]  # (F + 2 radius, H, W)
    flat = padded.reshape(padded.shape[0], -1).T.unsqueeze(1)  # (H*W, 1, F + 2 radius)
    out = torch.nn.functional.conv1d(flat, kernel.view(1, 1, -1))  # (H*W, 1, F)
    return out[:, 0].T.reshape(frames.shape)


def prior_frames(
    xbar: Tensor,
    delta: Tensor,
    weight: Tensor | None = None,
    *,
    clamp_max: float | None = None,
) -> Tensor:
    """``p_t = (|x_bar|_n + w (.) Delta_t) exp(i angle(x_bar))``.

    Args:
        xbar: (H, W) complex time-averaged image (its phase is the prior's phase).
        delta: (F, H, W) real predicted deviations in the normalized magnitude domain.
        weight: (H, W) real map w in [0, 1] (None: 1).
        clamp_max: upper bound of the magnitude (e.g. 1: no pixel brighter than the
            brightest of x_bar); the lower bound is always 0.

    Returns:
        (F, H, W) complex64 prior frames (scale: |x_bar|_n; the solve fits a complex scale).
    """
    if xbar.ndim != 2 or not xbar.is_complex():
        raise ShapeError(f"x_bar: expected a complex (H, W) image, got {tuple(xbar.shape)}")
    if delta.ndim != 3 or delta.shape[-2:] != xbar.shape or delta.is_complex():
        raise ShapeError(
            f"delta: expected a real (F, {xbar.shape[0]}, {xbar.shape[1]}) tensor, "
            f"got {tuple(delta.shape)}"
        )
    mag, _ = normalize_xbar(xbar)
    dev = delta.to(torch.float32) if weight is None else weight.to(torch.float32) * delta
    phase = torch.polar(torch.ones_like(mag), torch.angle(xbar).to(torch.float32))
    return ((mag + dev).clamp(min=0.0, max=clamp_max) * phase).to(torch.complex64)


def precision_weight(logvar: Tensor, quantile: float = 0.05) -> Tensor:
    """Per-frame prior weight from a predicted log-variance: ``M_t = min(1, v_t / sigma_t^2)``.

    A Gaussian prior of variance sigma^2(r) contributes ``1/(2 sigma^2) |x - s p|^2`` to a
    MAP objective; relative to the frame's ``quantile`` variance v_t, that is the weight
    ``v_t / sigma^2(r)``, clipped to 1 so that the most confident pixels share the weight 1
    and the solve's ``mu`` keeps its meaning.

    Args:
        logvar: (F, H, W) predicted log-variance.
        quantile: the reference quantile of each frame's variances, in (0, 1).

    Returns:
        (F, H, W) float32 weights in (0, 1].
    """
    if logvar.ndim != 3 or logvar.is_complex():
        raise ShapeError(f"logvar: expected a real (F, H, W) tensor, got {tuple(logvar.shape)}")
    if not 0.0 < quantile < 1.0:
        raise ShapeError(f"quantile: expected a value in (0, 1), got {quantile}")
    lv = logvar.to(torch.float32)
    ref = torch.quantile(lv.reshape(lv.shape[0], -1), quantile, dim=1)  # (F,)
    return torch.exp(ref[:, None, None] - lv).clamp(max=1.0)


# -- network ---------------------------------------------------------------------------
class _Block(nn.Module):
    """conv3x3 - GroupNorm - GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(min(4, c_out), c_out)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.gelu(self.norm(self.conv(x)))


class SpeechPriorNet(nn.Module):
    """Speaker U-Net basis modulated by the audio: (embedding context, |x_bar|_n) -> Delta.

    Speaker part (:meth:`encode_image`, once per speaker): a U-Net on ``|x_bar|_n`` (levels
    l = 0..D-1 at (H, W) / 2^l, two conv-GroupNorm-GELU blocks per level on the way down,
    average pooling; bilinear upsampling, concatenation with the skip and two blocks per
    level on the way up) ends in a 1x1 convolution to R + 1 maps: a time-invariant map
    Phi_0 and R basis maps Phi_1..Phi_R of this speaker. Audio part
    (:meth:`encode_audio`): LayerNorm over E, two temporal convolutions (kernel 3, GELU),
    flattened over the T context frames, an MLP to R coefficients a(t). Output::

        Delta_t = Phi_0 + sum_r a_r(t) Phi_r

    i.e. FiLM (Perez et al. 2018) of the U-Net's last feature layer, ``gamma = a(t)``,
    followed by a channel sum: the audio modulates, per frame, maps that the speaker's own
    anatomy shaped. It is a rank-R partially separable model (spatial maps x temporal
    coefficients) whose spatial factors come from x_bar and temporal factors from the audio;
    the per-frame cost is R multiply-adds per pixel, so training and inference run the
    U-Net once per speaker. Phi_0 and the coefficient layer start at zero (Delta = 0).

    With ``config.uncertainty`` the 1x1 convolution and the MLP have a second set of R + 1
    maps and R coefficients for the log-variance, ``log sigma_t^2 = Psi_0 + sum_r
    c_r(t) Psi_r``, clamped to :data:`LOGVAR_RANGE` (start: a constant 1e-3).

    Args:
        config: the :class:`SpeechPriorConfig`.
    """

    def __init__(self, config: SpeechPriorConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        hid = config.audio_hidden
        self.down = nn.ModuleList()
        c_prev = 1
        for c in ch:
            self.down.append(nn.Sequential(_Block(c_prev, c), _Block(c, c)))
            c_prev = c
        self.up = nn.ModuleList()
        for level in range(len(ch) - 2, -1, -1):
            self.up.append(
                nn.Sequential(
                    _Block(ch[level + 1] + ch[level], ch[level]), _Block(ch[level], ch[level])
                )
            )
        n_maps = config.rank + 1
        self.maps = nn.Conv2d(ch[0], config.n_heads * n_maps, 1)
        with torch.no_grad():  # Delta starts at 0; the log-variance at a constant
            self.maps.weight[0].zero_()
            self.maps.bias[0] = 0.0
            if config.uncertainty:
                self.maps.weight[n_maps].zero_()
                self.maps.bias[n_maps] = _LOGVAR_START
        self.audio_norm = nn.LayerNorm(config.embedding_dim)
        self.audio_conv = nn.Sequential(
            nn.Conv1d(config.embedding_dim, hid, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hid, hid, 3, padding=1),
            nn.GELU(),
        )
        self.audio_mlp = nn.Sequential(
            nn.Linear(hid * config.context, hid),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(hid, config.n_heads * config.rank),
        )
        last = self.audio_mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def _check_context(self, context: Tensor) -> None:
        cfg = self.config
        if context.ndim != 3 or tuple(context.shape[1:]) != (cfg.context, cfg.embedding_dim):
            raise ShapeError(
                f"context: expected (B, {cfg.context}, {cfg.embedding_dim}), "
                f"got {tuple(context.shape)}"
            )

    def _check_image(self, xbar_n: Tensor) -> None:
        size = self.config.image_size
        if xbar_n.ndim != 3 or tuple(xbar_n.shape[1:]) != size:
            raise ShapeError(
                f"x_bar: expected (U, {size[0]}, {size[1]}), got {tuple(xbar_n.shape)}"
            )

    def encode_image(self, xbar_n: Tensor) -> Tensor:
        """The speaker part: maps [Phi_0, Phi_1..Phi_R] from |x_bar|_n.

        Args:
            xbar_n: (U, H, W) float32 normalized time-averaged magnitudes.

        Returns:
            (U, n_heads (R + 1), H, W) float32: Delta's maps, then (with ``uncertainty``)
            the log-variance's.
        """
        self._check_image(xbar_n)
        x = xbar_n.unsqueeze(1)  # (U, 1, H, W)
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                x = nn.functional.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for i, block in enumerate(self.up):
            skip = skips[-2 - i]
            x = nn.functional.interpolate(
                x, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
            x = block(torch.cat([x, skip], dim=1))
        return self.maps(x)

    def encode_audio(self, context: Tensor) -> Tensor:
        """The audio part: (B, T, E) embedding context -> (B, n_heads R) coefficients a(t).

        With ``config.no_audio`` the context is multiplied by zero first, so a is a learned
        constant.
        """
        self._check_context(context)
        if self.config.no_audio:
            context = context * 0.0
        h = self.audio_norm(context).transpose(1, 2)  # (B, E, T)
        h = self.audio_conv(h)  # (B, hid, T)
        return self.audio_mlp(h.flatten(1))  # (B, n_heads R)

    @staticmethod
    def combine(maps: Tensor, coeffs: Tensor, speaker: Tensor | None = None) -> Tensor:
        """Delta_t = Phi_0 + sum_r a_r(t) Phi_r.

        Args:
            maps: (U, R + 1, H, W) from :meth:`encode_image`.
            coeffs: (B, R) from :meth:`encode_audio`.
            speaker: (B,) int64 row -> speaker index into U (None: U == B, or U == 1 for
                all rows).

        Returns:
            (B, H, W) float32.
        """
        n = coeffs.shape[0]
        n_spk, n_maps, h, w = maps.shape
        flat = maps.reshape(n_spk, n_maps, h * w)  # (U, R + 1, H*W)
        if speaker is None:
            if n_spk == 1:
                return torch.addmm(flat[0, 0], coeffs, flat[0, 1:]).reshape(n, h, w)
            if n_spk != n:
                raise ShapeError(f"combine: {n_spk} speakers for {n} rows; pass speaker")
            out = flat[:, 0] + torch.bmm(coeffs.unsqueeze(1), flat[:, 1:])[:, 0]  # (B, H*W)
            return out.reshape(n, h, w)
        out = coeffs.new_empty((n, h * w))
        for u in torch.unique(speaker).tolist():
            rows = torch.nonzero(speaker == u)[:, 0]
            out[rows] = torch.addmm(flat[u, 0], coeffs[rows], flat[u, 1:])  # (b, H*W)
        return out.reshape(n, h, w)

    def heads(
        self, maps: Tensor, coeffs: Tensor, speaker: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Delta and (with ``uncertainty``) the log-variance from maps and coefficients.

        Args:
            maps: :meth:`encode_image` output.
            coeffs: :meth:`encode_audio` output.
            speaker: see :meth:`combine`.

        Returns:
            ((B, H, W) Delta, (B, H, W) log-variance clamped to :data:`LOGVAR_RANGE`, or
            None).
        """
        cfg = self.config
        n_maps, rank = cfg.rank + 1, cfg.rank
        delta = self.combine(maps[:, :n_maps], coeffs[:, :rank], speaker)
        if not cfg.uncertainty:
            return delta, None
        logvar = self.combine(maps[:, n_maps : 2 * n_maps], coeffs[:, rank : 2 * rank], speaker)
        return delta, logvar.clamp(*LOGVAR_RANGE)

    def forward_full(
        self, context: Tensor, xbar_n: Tensor, speaker: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Like :meth:`forward`, also returning the log-variance (None without
        ``uncertainty``)."""
        return self.heads(self.encode_image(xbar_n), self.encode_audio(context), speaker)

    def forward(self, context: Tensor, xbar_n: Tensor, speaker: Tensor | None = None) -> Tensor:
        """Predict each frame's deviation from its speaker's time-averaged image.

        Args:
            context: (B, T, E) float32 embedding contexts (:func:`context_windows`).
            xbar_n: (U, H, W) float32 normalized |x_bar| (:func:`normalize_xbar`): one per
                row (U = B), one for all rows (U = 1), or U speakers indexed by ``speaker``.
            speaker: (B,) int64 speaker index of each row, or None.

        Returns:
            (B, H, W) float32 Delta in the normalized magnitude domain.
        """
        return self.forward_full(context, xbar_n, speaker)[0]

    @torch.no_grad()
    def predict_full(
        self, context: Tensor, xbar_n: Tensor, *, batch_size: int = 256
    ) -> tuple[Tensor, Tensor | None]:
        """Delta (and the log-variance, or None) for all frames of one speaker, no gradients.

        Args:
            context: (F, T, E) float32.
            xbar_n: (H, W) float32 normalized |x_bar|.
            batch_size: frames per batch.

        Returns:
            ((F, H, W) float32 Delta, (F, H, W) float32 log-variance or None).
        """
        if xbar_n.ndim != 2:
            raise ShapeError(f"x_bar: expected (H, W), got {tuple(xbar_n.shape)}")
        maps = self.encode_image(xbar_n.unsqueeze(0))
        parts = [
            self.heads(maps, self.encode_audio(context[s : s + batch_size]))
            for s in range(0, context.shape[0], max(1, batch_size))
        ]
        delta = torch.cat([d for d, _ in parts], dim=0)
        if not self.config.uncertainty:
            return delta, None
        return delta, torch.cat([v for _, v in parts if v is not None], dim=0)

    def predict(self, context: Tensor, xbar_n: Tensor, *, batch_size: int = 256) -> Tensor:
        """Delta for all frames of one speaker, without gradients: (F, H, W) float32."""
        return self.predict_full(context, xbar_n, batch_size=batch_size)[0]
