"""Reconstructions as watchable media: MP4 with the utterance's audio, GIF, PNG strip.

Uses the ffmpeg executable shipped inside the ``imageio-ffmpeg`` wheel
(``imageio_ffmpeg.get_ffmpeg_exe()``), so no system ffmpeg is needed. Frames (F, H, W) in
[0, 1] are upscaled (nearest or bilinear) to a watchable size with even dimensions (H.264 in
yuv420p needs them), piped to ffmpeg as 8-bit grayscale at the reconstruction's frame rate,
and, for MP4, muxed with the audio written to a temporary WAV. The video lasts exactly
F / frame_rate seconds; the audio is cut or zero-padded to that duration, starting at
``audio_offset_s`` (the audio time of the start of frame 0, see :func:`audio_offset_s`).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from sirem_cli.errors import BackendUnavailable, InputError, OutputError, ShapeError
from sirem_cli.io.atomic import atomic_path

__all__ = [
    "MediaInfo",
    "audio_offset_s",
    "ffmpeg_exe",
    "fit_audio",
    "probe_media",
    "to_uint8_frames",
    "write_gif",
    "write_mp4",
    "write_png_strip",
]

#: Default longest side of exported frames, pixels (84 x 84 frames become 504 x 504).
DEFAULT_SIZE = 512


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable shipped with imageio-ffmpeg.

    Raises:
        BackendUnavailable: imageio-ffmpeg is not installed or has no binary.
    """
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise BackendUnavailable(
            "video export needs imageio-ffmpeg: pip install imageio-ffmpeg"
        ) from exc
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise BackendUnavailable(f"imageio-ffmpeg has no ffmpeg binary here ({exc})") from exc


def audio_offset_s(frame_time: np.ndarray, frame_rate_hz: float) -> float:
    """Audio time (s) at which frame 0 starts: its centre minus half a frame.

    Args:
        frame_time: (F,) frame centres in seconds from the scan start (the prepared file's
            ``frame_time``; the audio's sample 0 is the scan start).
        frame_rate_hz: frames per second.
    """
    t = np.asarray(frame_time, dtype=np.float64)
    if t.size == 0:
        raise ShapeError("frame_time is empty")
    return float(t[0] - 0.5 / frame_rate_hz)


def fit_audio(
    audio: np.ndarray, sample_rate_hz: float, duration_s: float, offset_s: float = 0.0
) -> np.ndarray:
    """The audio of [offset_s, offset_s + duration_s), zero-padded where it has no samples.

    Args:
        audio: (L,) waveform (or (L, channels): channel 0 is used).
        sample_rate_hz: samples per second.
        duration_s: length of the result, seconds.
        offset_s: start time in the waveform, seconds (may be negative).

    Returns:
        (round(duration_s * sample_rate_hz),) float32.
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, 0]
    if a.ndim != 1:
        raise ShapeError(f"audio must be (L,) or (L, channels), got {a.shape}")
    n = round(duration_s * sample_rate_hz)
    start = round(offset_s * sample_rate_hz)
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(start, 0), min(start + n, a.shape[0])
    if hi > lo:
        out[lo - start : hi - start] = a[lo:hi]
    return out


def to_uint8_frames(
    frames: np.ndarray,
    *,
    scale: int | None = None,
    size: int = DEFAULT_SIZE,
    interpolation: str = "nearest",
    even: bool = True,
) -> np.ndarray:
    """Upscale (F, H, W) frames in [0, 1] to 8-bit grayscale.

    Args:
        frames: (F, H, W) float frames in [0, 1] (clipped).
        scale: integer upscaling factor; None picks round(size / max(H, W)), at least 1.
        size: target longest side when ``scale`` is None.
        interpolation: ``"nearest"`` (pixel blocks) or ``"bilinear"``.
        even: pad one replicated row/column where a side is odd.

    Returns:
        (F, H', W') uint8.
    """
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim != 3 or min(f.shape) == 0:
        raise ShapeError(f"frames must be a non-empty (F, H, W) array, got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ShapeError("frames contain NaN or inf")
    h, w = f.shape[1:]
    s = scale if scale is not None else max(1, round(size / max(h, w)))
    if s < 1:
        raise ShapeError(f"scale must be >= 1, got {s}")
    if interpolation == "nearest":
        up = np.repeat(np.repeat(f, s, axis=1), s, axis=2)
    elif interpolation == "bilinear":
        from scipy import ndimage

        up = ndimage.zoom(f, (1, s, s), order=1, mode="nearest", grid_mode=True)
    else:
        raise InputError(f"unknown interpolation {interpolation!r}; use nearest or bilinear")
    if even:
        ph, pw = up.shape[1] % 2, up.shape[2] % 2
        if ph or pw:
            up = np.pad(up, ((0, 0), (0, ph), (0, pw)), mode="edge")
    return np.round(np.clip(up, 0.0, 1.0) * 255.0).astype(np.uint8)


def _rate(frame_rate_hz: float) -> str:
    if not (frame_rate_hz > 0 and np.isfinite(frame_rate_hz)):
        raise ShapeError(f"frame rate must be positive, got {frame_rate_hz}")
    r = Fraction(frame_rate_hz).limit_denominator(100000)
    return f"{r.numerator}/{r.denominator}"


def _run_ffmpeg(args: list[str], out: Path, stdin: bytes | None = None) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    except OSError as exc:
        raise BackendUnavailable(f"cannot run ffmpeg ({exc})") from exc
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise OutputError(f"{out}: ffmpeg failed ({lines[-1] if lines else proc.returncode})")


def _raw_input(frames_u8: np.ndarray, frame_rate_hz: float) -> list[str]:
    _, h, w = frames_u8.shape
    return ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-framerate",
            _rate(frame_rate_hz), "-i", "pipe:0"]  # fmt: skip


def write_mp4(
    frames: np.ndarray,
    frame_rate_hz: float,
    out: Path | str,
    *,
    audio: np.ndarray | None = None,
    sample_rate_hz: float = 16000.0,
    audio_offset: float = 0.0,
    scale: int | None = None,
    size: int = DEFAULT_SIZE,
    interpolation: str = "nearest",
    crf: int = 18,
    overwrite: bool = True,
) -> Path:
    """Write an H.264 MP4 of the frames, with the audio muxed in sync (AAC).

    Args:
        frames: (F, H, W) float frames in [0, 1].
        frame_rate_hz: frames per second (e.g. 1 / (13 x 6.004 ms) = 12.81 for USC).
        out: output .mp4 path.
        audio: (L,) waveform, or None for a silent video.
        sample_rate_hz: audio sample rate.
        audio_offset: audio time (s) of the start of frame 0 (:func:`audio_offset_s`).
        scale: integer upscaling factor (None: from ``size``).
        size: target longest side when ``scale`` is None.
        interpolation: ``"nearest"`` or ``"bilinear"``.
        crf: x264 quality (lower is better; 18 is visually lossless).
        overwrite: replace an existing file.

    Returns:
        ``out``. The video stream has F frames lasting F / frame_rate_hz seconds; the audio
        stream has the same duration.
    """
    u8 = to_uint8_frames(frames, scale=scale, size=size, interpolation=interpolation)
    out = Path(out)
    duration = u8.shape[0] / frame_rate_hz
    with atomic_path(out, overwrite=overwrite) as tmp, tempfile.TemporaryDirectory() as td:
        args = _raw_input(u8, frame_rate_hz)
        if audio is not None:
            import soundfile

            wav = Path(td) / "audio.wav"
            clip = fit_audio(audio, sample_rate_hz, duration, audio_offset)
            rate = round(sample_rate_hz)
            soundfile.write(wav, np.clip(clip, -1.0, 1.0), rate, subtype="PCM_16")
            args += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
                     "-c:a", "aac", "-b:a", "128k"]  # fmt: skip
        args += ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
                 "-movflags", "+faststart", "-f", "mp4", str(tmp)]  # fmt: skip
        _run_ffmpeg(args, out, stdin=u8.tobytes())
    return out


def write_gif(
    frames: np.ndarray,
    frame_rate_hz: float,
    out: Path | str,
    *,
    scale: int | None = None,
    size: int = 256,
    interpolation: str = "nearest",
    overwrite: bool = True,
) -> Path:
    """Write a looping grayscale GIF (no audio; GIF delays are multiples of 10 ms).

    Args:
        frames: (F, H, W) float frames in [0, 1].
        frame_rate_hz: frames per second.
        out: output .gif path.
        scale: integer upscaling factor (None: from ``size``).
        size: target longest side when ``scale`` is None.
        interpolation: ``"nearest"`` or ``"bilinear"``.
        overwrite: replace an existing file.
    """
    u8 = to_uint8_frames(frames, scale=scale, size=size, interpolation=interpolation, even=False)
    out = Path(out)
    with atomic_path(out, overwrite=overwrite) as tmp:
        args = [*_raw_input(u8, frame_rate_hz), "-loop", "0", "-f", "gif", str(tmp)]
        _run_ffmpeg(args, out, stdin=u8.tobytes())
    return out


def write_png_strip(
    frames: np.ndarray,
    out: Path | str,
    *,
    frame_indices: Sequence[int] | None = None,
    n_frames: int = 8,
    columns: int | None = None,
    scale: int = 2,
    gap: int = 2,
    interpolation: str = "nearest",
    overwrite: bool = True,
) -> Path:
    """Write selected frames side by side (wrapping after ``columns``) as one grayscale PNG.

    Args:
        frames: (F, H, W) float frames in [0, 1].
        out: output .png path.
        frame_indices: frames to show, in order; None: ``n_frames`` evenly spaced ones
            (first and last included).
        n_frames: number of frames when ``frame_indices`` is None.
        columns: frames per row (None: all in one row).
        scale: integer upscaling factor.
        gap: white pixels between frames.
        interpolation: ``"nearest"`` or ``"bilinear"``.
        overwrite: replace an existing file.

    Returns:
        ``out``; the image is rows x columns tiles of (H * scale, W * scale) pixels.
    """
    f = np.asarray(frames)
    if f.ndim != 3 or f.shape[0] == 0:
        raise ShapeError(f"frames must be a non-empty (F, H, W) array, got {f.shape}")
    if frame_indices is None:
        k = min(n_frames, f.shape[0])
        frame_indices = sorted({round(i) for i in np.linspace(0, f.shape[0] - 1, k)})
    idx = list(frame_indices)
    if not idx or min(idx) < 0 or max(idx) >= f.shape[0]:
        raise ShapeError(f"frame indices {idx} out of range for {f.shape[0]} frames")
    tiles = to_uint8_frames(f[idx], scale=scale, interpolation=interpolation, even=False)
    ncol = columns or len(idx)
    nrow = -(-len(idx) // ncol)
    th, tw = tiles.shape[1:]
    mosaic = np.full((nrow * th + (nrow - 1) * gap, ncol * tw + (ncol - 1) * gap), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncol)
        mosaic[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    out = Path(out)
    from matplotlib import image as mpimg

    with atomic_path(out, overwrite=overwrite) as tmp:
        # RGB uint8 is written as is (a colormap would requantize the gray levels).
        mpimg.imsave(tmp, np.repeat(mosaic[..., None], 3, axis=2), format="png")
    return out


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, measured by decoding it with the bundled ffmpeg.

    Attributes:
        video_frames: decoded video frames.
        video_duration_s: video duration, seconds.
        width: frame width, pixels.
        height: frame height, pixels.
        has_audio: whether an audio stream exists.
        audio_duration_s: decoded audio duration, seconds (None without audio).
        audio_sample_rate_hz: audio sample rate (None without audio).
    """

    video_frames: int
    video_duration_s: float
    width: int
    height: int
    has_audio: bool
    audio_duration_s: float | None
    audio_sample_rate_hz: int | None


def probe_media(path: Path | str) -> MediaInfo:
    """Decode a media file and report its streams (ffprobe is not shipped with imageio-ffmpeg).

    Video frames and duration come from ``imageio_ffmpeg.count_frames_and_secs``; the stream
    header (size, audio rate) from ``ffmpeg -i``; the audio duration from decoding the audio
    stream to 16-bit PCM and counting samples.

    Raises:
        InputError: the file is missing or ffmpeg cannot read it.
    """
    import imageio_ffmpeg

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    exe = ffmpeg_exe()
    head_cmd = [exe, "-hide_banner", "-nostdin", "-i", str(p)]
    head = subprocess.run(head_cmd, capture_output=True, check=False).stderr.decode(
        "utf-8", "replace"
    )
    video = re.search(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})", head)
    if video is None:
        raise InputError(f"{p}: no video stream found by ffmpeg")
    try:
        n_frames, secs = imageio_ffmpeg.count_frames_and_secs(str(p))
    except RuntimeError as exc:
        raise InputError(f"{p}: ffmpeg cannot decode it ({exc})") from exc
    audio = re.search(r"Stream #\S+.*?: Audio: .*?(\d+) Hz", head)
    a_dur = a_rate = None
    if audio is not None:
        a_rate = int(audio.group(1))
        pcm_cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(p),
                   "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-"]  # fmt: skip
        pcm = subprocess.run(pcm_cmd, capture_output=True, check=False)
        if pcm.returncode != 0:
            raise InputError(f"{p}: ffmpeg cannot decode the audio stream")
        a_dur = len(pcm.stdout) / 2 / a_rate
    return MediaInfo(
        video_frames=int(n_frames),
        video_duration_s=float(secs),
        width=int(video.group(1)),
        height=int(video.group(2)),
        has_audio=audio is not None,
        audio_duration_s=a_dur,
        audio_sample_rate_hz=a_rate,
    )
