"""Video export with the ffmpeg of imageio-ffmpeg: MP4 with audio, GIF, PNG strip."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.report import video

FRAME_RATE = 1.0 / (13 * 6.004e-3)  # USC: 13 arms of 6.004 ms, 12.81 frames/s
SR = 16000


def clip(n: int = 10, h: int = 21, w: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((n, h, w)).astype(np.float32)


def decoded_audio(path) -> np.ndarray:
    cmd = [video.ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"]  # fmt: skip
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768


def test_fit_audio_trims_pads_and_offsets():
    a = np.arange(1, 11, dtype=np.float32)  # 10 samples at 10 Hz: 1 s
    np.testing.assert_array_equal(video.fit_audio(a, 10, 0.5, 0.2), [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(video.fit_audio(a, 10, 0.4, -0.2), [0, 0, 1, 2])
    np.testing.assert_array_equal(video.fit_audio(a, 10, 0.4, 0.8), [9, 10, 0, 0])
    assert video.fit_audio(a, 10, 0.3, 5.0).tolist() == [0, 0, 0]
    stereo = np.stack([a, -a], axis=1)
    np.testing.assert_array_equal(video.fit_audio(stereo, 10, 0.2), [1, 2])
    # frame 0 of USC frames centred at 0.82 s starts half a frame earlier
    assert video.audio_offset_s(np.array([0.82, 0.90]), 12.5) == pytest.approx(0.78)


def test_upscaling_gives_even_uint8_frames():
    f = clip(2, 21, 30)
    up = video.to_uint8_frames(f, scale=3)
    assert up.dtype == np.uint8 and up.shape == (2, 64, 90)  # 63 padded to even
    np.testing.assert_array_equal(up[0, :3, :3], np.round(f[0, 0, 0] * 255))  # nearest blocks
    assert video.to_uint8_frames(np.zeros((1, 84, 84))).shape == (1, 504, 504)  # default size
    assert video.to_uint8_frames(f, scale=4, interpolation="bilinear").shape == (2, 84, 120)
    # bilinear, pixel-centre aligned: output centres at input x = -0.25, 0.25, 0.75, 1.25
    ramp = np.array([[[0.0, 1.0], [0.0, 1.0]]])
    bil = video.to_uint8_frames(ramp, scale=2, interpolation="bilinear")
    np.testing.assert_array_equal(bil[0], [[0, 64, 191, 255]] * 4)  # 0.25 * 255 = 63.75
    with pytest.raises(InputError):
        video.to_uint8_frames(f, interpolation="cubic")
    with pytest.raises(ShapeError):
        video.to_uint8_frames(f[0])


def test_mp4_frame_count_duration_and_audio_in_sync(tmp_path):
    frames = clip(10)
    n = 10
    duration = n / FRAME_RATE
    offset = 0.25
    # silence, then a tone burst that starts 0.40 s into the video
    t = np.arange(int(3 * SR)) / SR
    audio = np.where(t >= offset + 0.40, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
    out = video.write_mp4(
        frames, FRAME_RATE, tmp_path / "u.mp4", audio=audio, sample_rate_hz=SR,
        audio_offset=offset, scale=4,
    )  # fmt: skip
    info = video.probe_media(out)
    assert info.video_frames == n
    assert info.video_duration_s == pytest.approx(duration, abs=0.02)
    assert (info.width, info.height) == (120, 84)
    assert info.has_audio and info.audio_sample_rate_hz == SR
    assert info.audio_duration_s == pytest.approx(duration, abs=0.005)
    pcm = decoded_audio(out)
    onset = np.argmax(np.abs(pcm) > 0.1) / SR
    assert onset == pytest.approx(0.40, abs=0.01)


def test_mp4_without_audio_and_odd_size(tmp_path):
    out = video.write_mp4(clip(4, 15, 17), 10.0, tmp_path / "s.mp4", scale=1)
    info = video.probe_media(out)
    assert info.video_frames == 4 and not info.has_audio and info.audio_duration_s is None
    assert (info.width, info.height) == (18, 16)


def test_gif_and_png_strip(tmp_path):
    frames = clip(6)
    gif = video.write_gif(frames, FRAME_RATE, tmp_path / "u.gif", scale=2)
    info = video.probe_media(gif)
    assert info.video_frames == 6 and (info.width, info.height) == (60, 42)
    import matplotlib.image as mpimg

    png = video.write_png_strip(frames, tmp_path / "u.png", n_frames=4, columns=2, scale=2, gap=3)
    img = mpimg.imread(png)
    assert img.shape[:2] == (2 * 42 + 3, 2 * 60 + 3)
    # the first tile is frame 0, upscaled by 2 (nearest)
    np.testing.assert_allclose(img[0:42:2, 0:60:2, 0], np.round(frames[0] * 255) / 255, atol=1e-6)
    assert np.all(img[42:45, :, :3] == 1.0)  # the white gap
    with pytest.raises(ShapeError):
        video.write_png_strip(frames, tmp_path / "bad.png", frame_indices=[7])


def test_probe_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        video.probe_media(tmp_path / "none.mp4")
