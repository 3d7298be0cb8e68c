"""Frozen audio encoders that turn 16 kHz audio windows into one embedding each.

Two encoders, chosen by name (the registry :data:`sirem_cli.models.registry.ENCODERS`):

* ``hubert``: transformers ``HubertModel`` (default ``facebook/hubert-base-ls960``), the last hidden
  state mean-pooled over time (paper eqs. 9-10), E = 768. Weights come from a local folder
  (``--hubert PATH``) or the local Hugging Face cache; nothing is ever downloaded, and missing
  weights raise :class:`~sirem_cli.errors.BackendUnavailable` at once with one line saying how to
  provide them.
* ``mel``: log-mel statistics computed with librosa (no weights; the demo and tests use it):
  64 mel bands of a 25 ms / 10 ms STFT, log10 power, and per band the mean and standard deviation
  over time of the log-mel and of its time derivative (``np.gradient``), E = 4 * 64 = 256.

Both are frozen: no trainable parameters, ``eval()``, ``torch.inference_mode()``. Embeddings are
computed once per audio window and cached by the caller; training never runs an encoder.
librosa and transformers are imported lazily.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sirem_cli.errors import BackendUnavailable, InputError, ShapeError
from sirem_cli.models.registry import EncoderOptions, build_encoder

if TYPE_CHECKING:
    import torch

SAMPLE_RATE_HZ = 16000
DEFAULT_HUBERT = "facebook/hubert-base-ls960"
HUBERT_MIN_SAMPLES = 400  # receptive field of HuBERT's convolutional feature extractor
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_LOG_FLOOR = 1e-10

#: progress(done, total): called after each batch with the number of windows encoded so far.
ProgressFn = Callable[[int, int], None]


class AudioEncoder(Protocol):
    """A frozen map from audio windows to embeddings."""

    name: str
    embedding_dim: int
    sample_rate_hz: int

    def encode(
        self, windows: np.ndarray, *, batch_size: int = 8, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Encode (N, L) float32 windows at ``sample_rate_hz`` to (N, E) float32 embeddings."""
        ...


def _check_windows(windows: np.ndarray, min_samples: int, who: str) -> np.ndarray:
    array = np.asarray(windows)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise ShapeError(
            f"{who}: audio windows must be a float (N, L) array, got {array.dtype} {array.shape}"
        )
    if array.shape[1] < min_samples:
        raise ShapeError(
            f"{who}: audio windows of {array.shape[1]} samples are shorter than the "
            f"{min_samples} samples the encoder needs"
        )
    if not np.all(np.isfinite(array)):
        raise InputError(f"{who}: audio windows contain NaN or infinite samples")
    return array.astype(np.float32, copy=False)


def cut_windows(audio: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Cut one audio window per frame, zero-padded where it reaches outside the waveform.

    Args:
        audio: (L,) float32 whole waveform.
        bounds: (F, 2) int64 [start, stop) sample indices (the prepared file's ``audio_window``);
            every window must have the same length and may reach outside [0, L).

    Returns:
        (F, stop - start) float32 windows.
    """
    audio = np.asarray(audio, dtype=np.float32)
    bounds = np.asarray(bounds, dtype=np.int64)
    if audio.ndim != 1 or bounds.ndim != 2 or bounds.shape[1] != 2:
        raise ShapeError(
            f"cut_windows: need audio (L,) and bounds (F, 2), got {audio.shape}, {bounds.shape}"
        )
    lengths = bounds[:, 1] - bounds[:, 0]
    if bounds.shape[0] == 0:
        return np.zeros((0, 0), np.float32)
    if lengths.min() != lengths.max() or lengths[0] <= 0:
        raise ShapeError("cut_windows: all windows must have the same positive length")
    width = int(lengths[0])
    out = np.zeros((bounds.shape[0], width), np.float32)
    for row, (start, stop) in enumerate(bounds):
        lo, hi = max(int(start), 0), min(int(stop), audio.shape[0])
        if hi > lo:
            out[row, lo - start : hi - start] = audio[lo:hi]
    return out


class MelEncoder:
    """Log-mel statistics; no weights, deterministic.

    Args:
        sample_rate_hz: sampling rate of the windows (16000).
        n_mels: number of mel bands.
        n_fft: STFT size in samples (400 = 25 ms at 16 kHz).
        hop_length: STFT hop in samples (160 = 10 ms).
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz (None: sample_rate_hz / 2).
    """

    name = "mel"

    def __init__(
        self,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        n_mels: int = 64,
        n_fft: int = 400,
        hop_length: int = 160,
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        self.sample_rate_hz = int(sample_rate_hz)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.fmin = float(fmin)
        self.fmax = fmax
        self.embedding_dim = 4 * self.n_mels

    def log_mel(self, windows: np.ndarray) -> np.ndarray:
        """Log10 mel power spectrogram.

        Args:
            windows: (N, L) float32 audio at ``sample_rate_hz``.

        Returns:
            (N, n_mels, T) float32 log10(max(mel power, 1e-10)), T = 1 + L // hop_length.
        """
        import librosa

        mel = librosa.feature.melspectrogram(
            y=np.ascontiguousarray(windows, dtype=np.float32),
            sr=self.sample_rate_hz,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            power=2.0,
        )
        return np.log10(np.maximum(mel, _LOG_FLOOR)).astype(np.float32)

    def encode(
        self, windows: np.ndarray, *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Encode windows to log-mel statistics.

        Args:
            windows: (N, L) float32 audio windows at ``sample_rate_hz``.
            batch_size: windows per librosa call.
            progress: optional callback(done, total).

        Returns:
            (N, 4 * n_mels) float32: [mean_t(M), std_t(M), mean_t(dM/dt), std_t(dM/dt)] per band,
            M the log10 mel power, dM/dt its central difference along time (per frame).
        """
        array = _check_windows(windows, self.n_fft, "mel encoder")
        total = array.shape[0]
        out = np.empty((total, self.embedding_dim), dtype=np.float32)
        for start in range(0, total, max(1, batch_size)):
            stop = min(total, start + max(1, batch_size))
            log_mel = self.log_mel(array[start:stop])  # (b, n_mels, T)
            if log_mel.shape[-1] > 1:
                delta = np.gradient(log_mel, axis=-1)
            else:
                delta = np.zeros_like(log_mel)
            out[start:stop] = np.concatenate(
                [log_mel.mean(-1), log_mel.std(-1), delta.mean(-1), delta.std(-1)], axis=-1
            )
            if progress is not None:
                progress(stop, total)
        return out


class HubertEncoder:
    """Frozen HuBERT: last hidden state mean-pooled over time (paper eqs. 9-10).

    Args:
        model: a transformers ``HubertModel``; it is put in eval mode and frozen.
        device: torch device to run on.
        bf16: run under bfloat16 autocast (1.7-2.5x faster on CPUs with BF16 support,
            about 1.5% relative error; fp32 stays the reference).
        normalize: standardize each window to zero mean and unit variance first (the model's
            ``do_normalize``; False for hubert-base-ls960, whose pretraining did not normalize).
        source: where the weights came from (recorded in outputs).
    """

    name = "hubert"

    def __init__(
        self,
        model: Any,
        *,
        device: str | torch.device = "cpu",
        bf16: bool = False,
        normalize: bool = False,
        source: str = "",
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.bf16 = bool(bf16)
        self.normalize = bool(normalize)
        self.source = source
        self.sample_rate_hz = SAMPLE_RATE_HZ
        self.embedding_dim = int(self.model.config.hidden_size)

    def encode(
        self, windows: np.ndarray, *, batch_size: int = 8, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """Encode windows with the frozen model.

        Args:
            windows: (N, L) float32 16 kHz audio windows, L >= 400.
            batch_size: windows per forward pass.
            progress: optional callback(done, total).

        Returns:
            (N, E) float32 time-mean of the last hidden state (E = 768 for HuBERT base).
        """
        import torch

        array = _check_windows(windows, HUBERT_MIN_SAMPLES, "hubert encoder")
        total = array.shape[0]
        out = np.empty((total, self.embedding_dim), dtype=np.float32)
        autocast = torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16
        )
        with torch.inference_mode(), autocast:
            for start in range(0, total, max(1, batch_size)):
                stop = min(total, start + max(1, batch_size))
                batch = torch.from_numpy(array[start:stop]).to(self.device)  # (b, L)
                if self.normalize:
                    mean = batch.mean(dim=1, keepdim=True)
                    var = batch.var(dim=1, unbiased=False, keepdim=True)
                    batch = (batch - mean) / torch.sqrt(var + 1e-7)
                hidden = self.model(input_values=batch).last_hidden_state  # (b, T', E)
                out[start:stop] = hidden.float().mean(dim=1).cpu().numpy()
                if progress is not None:
                    progress(stop, total)
        return out


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        (folder / name).is_file() for name in _WEIGHT_FILES
    )


def _find_in_hf_cache(repo_id: str, cache_dir: Path) -> Path | None:
    """Return the snapshot folder of ``repo_id`` in a Hugging Face cache, or None."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if _has_weights(pinned):
            return pinned
    candidates = sorted(
        (d for d in snapshots.iterdir() if _has_weights(d)),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    return candidates[0] if candidates else None


def _how_to_provide(repo_id: str) -> str:
    return (
        f"pass --hubert /path/to/hubert-base-ls960 (a folder with config.json and "
        f"model.safetensors or pytorch_model.bin), or download {repo_id} on a machine with network "
        f"and copy its Hugging Face cache here (nothing is downloaded at run time)"
    )


def resolve_hubert_dir(source: str | Path | None = None, *, cache_dir: Path | None = None) -> Path:
    """Find a local HuBERT folder without touching the network.

    Args:
        source: a folder holding ``config.json`` and ``model.safetensors`` or
            ``pytorch_model.bin``, or a hub id (``org/name``) looked up in the local Hugging Face
            cache only; None means ``facebook/hubert-base-ls960``.
        cache_dir: Hugging Face hub cache (default: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
            ``~/.cache/huggingface/hub``).

    Returns:
        The folder to load from.

    Raises:
        BackendUnavailable: one line naming what is missing and how to provide it.
    """
    source = DEFAULT_HUBERT if source is None else source
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BackendUnavailable(
                f"{path}: HuBERT weights must be a folder, not a file; "
                f"{_how_to_provide(DEFAULT_HUBERT)}"
            )
        if not (path / "config.json").is_file():
            raise BackendUnavailable(
                f"{path}: no config.json in this HuBERT folder; {_how_to_provide(DEFAULT_HUBERT)}"
            )
        if not _has_weights(path):
            raise BackendUnavailable(
                f"{path}: no model.safetensors or pytorch_model.bin in this HuBERT folder; "
                f"{_how_to_provide(DEFAULT_HUBERT)}"
            )
        return path
    text = str(source)
    if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", text) and not text.startswith("."):
        cache = Path(cache_dir) if cache_dir is not None else _hf_cache_dir()
        found = _find_in_hf_cache(text, cache)
        if found is None:
            raise BackendUnavailable(
                f"HuBERT weights not found: {text} is not in the local Hugging Face cache "
                f"({cache}); {_how_to_provide(text)}"
            )
        return found
    raise BackendUnavailable(
        f"{path}: HuBERT weights folder not found; {_how_to_provide(DEFAULT_HUBERT)}"
    )


def load_hubert(
    source: str | Path | None = None,
    *,
    device: str = "cpu",
    bf16: bool = False,
    cache_dir: Path | None = None,
) -> HubertEncoder:
    """Load a frozen HuBERT encoder from a local folder or the local Hugging Face cache.

    Args:
        source: folder or hub id (see :func:`resolve_hubert_dir`); None = hubert-base-ls960.
        device: torch device.
        bf16: bfloat16 autocast during :meth:`HubertEncoder.encode`.
        cache_dir: Hugging Face hub cache to search for hub ids.

    Returns:
        The frozen encoder.

    Raises:
        BackendUnavailable: the weights are missing or unreadable.
    """
    folder = resolve_hubert_dir(source, cache_dir=cache_dir)
    from transformers import HubertModel

    try:
        model = HubertModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(f"{folder}: cannot load HuBERT weights ({first})") from exc
    normalize = False
    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.is_file():
        try:
            normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize", False))
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"{preprocessor}: unreadable ({exc})") from exc
    return HubertEncoder(model, device=device, bf16=bf16, normalize=normalize, source=str(folder))


def random_hubert(
    *, seed: int = 0, device: str = "cpu", bf16: bool = False, **config_overrides: Any
) -> HubertEncoder:
    """A HuBERT encoder with random weights, for benchmarks and tests (no files needed).

    Args:
        seed: torch seed for the weight initialization.
        device: torch device.
        bf16: bfloat16 autocast.
        **config_overrides: ``HubertConfig`` fields; none gives the HuBERT-base size (94 M
            parameters, E = 768).

    Returns:
        The frozen encoder.
    """
    import torch
    from transformers import HubertConfig, HubertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HubertModel(HubertConfig(**config_overrides))
    return HubertEncoder(model, device=device, bf16=bf16, source=f"random(seed={seed})")


def build_mel(options: EncoderOptions) -> MelEncoder:
    """Registry builder of ``mel`` (no options used)."""
    return MelEncoder()


def build_hubert(options: EncoderOptions) -> HubertEncoder:
    """Registry builder of ``hubert``: local weights (``options.weights``), device, bf16."""
    return load_hubert(
        options.weights, device=options.device, bf16=options.bf16, cache_dir=options.cache_dir
    )


def make_encoder(
    name: str,
    *,
    hubert: str | Path | None = None,
    device: str = "cpu",
    bf16: bool = False,
    cache_dir: Path | None = None,
) -> AudioEncoder:
    """Build an encoder of the registry by name.

    Args:
        name: one of :data:`~sirem_cli.models.registry.ENCODER_NAMES`.
        hubert: weights folder or hub id (encoders that need weights).
        device: torch device.
        bf16: bfloat16 autocast.
        cache_dir: Hugging Face hub cache.

    Returns:
        The frozen encoder.
    """
    options = EncoderOptions(weights=hubert, device=device, bf16=bf16, cache_dir=cache_dir)
    return build_encoder(name, options)
