"""Distortion metrics, VIF, the registry and array-level evaluation (no network weights)."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, signal
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.metrics import image, registry, vif
from sirem_cli.metrics.evaluate import (
    EvalResult,
    evaluate_sequences,
    results_from_json,
    results_to_csv,
    results_to_json,
)
from sirem_cli.report.outputs import write_results


def smooth_frames(seed: int, f: int = 3, h: int = 84, w: int = 84) -> np.ndarray:
    """MRI-like frames: smoothed noise normalized to exactly [0, 1] per frame."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((f, h, w)), sigma=(0, 2, 2))
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return (x - lo) / (hi - lo)


def noisy(y: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(y + sigma * rng.standard_normal(y.shape), 0, 1)


# --- identities ---------------------------------------------------------------------------


def test_identities_on_identical_frames():
    y = smooth_frames(0)
    np.testing.assert_allclose(image.ssim(y, y), 1.0, atol=1e-12)
    np.testing.assert_array_equal(image.mse(y, y), 0.0)
    np.testing.assert_array_equal(image.nmse(y, y), 0.0)
    np.testing.assert_array_equal(image.nrmse(y, y), 0.0)
    np.testing.assert_array_equal(image.hfen(y, y), 0.0)
    np.testing.assert_allclose(vif.vifp(y, y), 1.0, atol=1e-8)
    # PSNR: inf when uncapped, the documented 100 dB cap otherwise.
    assert np.all(np.isinf(image.psnr(y, y, cap_db=None)))
    np.testing.assert_array_equal(image.psnr(y, y), registry.PSNR_CAP_DB)
    assert registry.PSNR_CAP_DB == 100.0


def test_identical_all_zero_frames_are_perfect_not_undefined():
    z = np.zeros((2, 16, 16))
    assert np.all(image.nmse(z, z) == 0) and np.all(image.nrmse(z, z) == 0)
    assert np.all(image.hfen(z, z) == 0)
    # different recon against an all-zero target: undefined, reported as NaN
    assert np.all(np.isnan(image.nmse(z + 0.1, z)))
    assert np.all(np.isnan(image.nrmse(z + 0.1, z)))


def test_shapes_single_frame_and_errors():
    y = smooth_frames(1, f=2)
    assert image.ssim(y[0], y[0]).shape == ()
    assert image.psnr(y, y).shape == (2,)
    assert vif.vifp(y[0], y[0]).shape == ()
    with pytest.raises(ShapeError):
        image.mse(y, y[:1])
    with pytest.raises(ShapeError):
        image.mse(y[0, 0], y[0, 0])
    with pytest.raises(ShapeError):
        image.mse(y.astype(complex), y)


# --- known values -------------------------------------------------------------------------


def test_least_squares_scaled_metrics_of_an_exact_multiple_are_perfect():
    y = smooth_frames(40)
    for c in (0.3, 0.8, 1.7):
        x = c * y
        np.testing.assert_allclose(image.ls_scale(x, y), 1 / c, rtol=1e-12)
        np.testing.assert_array_equal(image.psnr_ls(x, y), registry.PSNR_CAP_DB)
        np.testing.assert_allclose(image.ssim_ls(x, y), 1.0, atol=1e-12)
        assert np.all(image.psnr(x, y) < 40)  # the max-normalized metric does see the scale
    # a different scale per frame is undone frame by frame
    x = y * np.array([0.5, 1.0, 2.0])[:, None, None]
    np.testing.assert_array_equal(image.psnr_ls(x, y), registry.PSNR_CAP_DB)
    assert image.psnr_ls(x[0], y[0]).shape == ()


def test_least_squares_scale_minimizes_the_error_and_matches_scikit_image():
    from scipy.optimize import minimize_scalar

    y = smooth_frames(41)
    x = np.clip(0.7 * noisy(y, 0.05, 42) + 0.05, 0, 1)
    a = image.ls_scale(x, y)
    for k in range(y.shape[0]):
        best = minimize_scalar(lambda s, k=k: np.sum((s * x[k] - y[k]) ** 2), bracket=(0.1, 3.0))
        np.testing.assert_allclose(a[k], best.x, rtol=1e-6)
        ax = a[k] * x[k]
        np.testing.assert_allclose(
            image.psnr_ls(x, y)[k], peak_signal_noise_ratio(y[k], ax, data_range=1), rtol=1e-12
        )
        ref_s = structural_similarity(
            ax, y[k], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1
        )
        np.testing.assert_allclose(image.ssim_ls(x, y)[k], ref_s, rtol=1e-10, atol=1e-12)
    # a = 1 is a candidate, so the scaled PSNR is never below the plain one
    assert np.all(image.psnr_ls(x, y) >= image.psnr(x, y))
    # an all-zero frame: a = 0, the same score as the zero frame itself
    z = np.zeros_like(y)
    np.testing.assert_array_equal(image.ls_scale(z, y), 0.0)
    np.testing.assert_allclose(image.psnr_ls(z, y), image.psnr(z, y))


def test_least_squares_scale_removes_the_cost_of_a_streak_setting_the_maximum():
    """One bright pixel sets the frame's maximum; max normalization then darkens the whole
    frame, which the least-squares scale undoes (the image error is one pixel)."""
    y = smooth_frames(43)
    x = y.copy()
    x[:, 40, 40] = 1.6
    x /= x.max(axis=(1, 2), keepdims=True)  # per-frame max normalization, as the pipeline does
    gain = image.psnr_ls(x, y) - image.psnr(x, y)
    assert np.all(gain > 3.0)
    assert np.all(image.ssim_ls(x, y) > image.ssim(x, y))


def test_known_values_constant_offset():
    y = 0.2 + 0.6 * smooth_frames(2)  # range 0.6, values in [0.2, 0.8]
    x = y + 0.1
    np.testing.assert_allclose(image.mse(x, y), 0.01, rtol=1e-12)
    np.testing.assert_allclose(image.psnr(x, y), 20.0, rtol=1e-12)
    np.testing.assert_allclose(image.nrmse(x, y), 0.1 / 0.6, rtol=1e-12)
    np.testing.assert_allclose(image.nmse(x, y), 0.01 * y[0].size / np.sum(y**2, axis=(1, 2)))
    # scaling: x = 1.5 y  ->  NMSE = 0.25
    np.testing.assert_allclose(image.nmse(1.5 * y, y), 0.25, rtol=1e-12)


def test_nrmse_equals_ten_to_minus_psnr_over_20_on_unit_range_frames():
    y = smooth_frames(3)
    x = noisy(y, 0.07, 4)
    np.testing.assert_allclose(image.nrmse(x, y), 10 ** (-image.psnr(x, y) / 20), rtol=1e-12)


def test_psnr_and_ssim_agree_with_scikit_image():
    y = smooth_frames(5)
    for x in (noisy(y, 0.05, 6), ndimage.gaussian_filter(y, (0, 1.2, 1.2)), smooth_frames(7)):
        ours_s = image.ssim(x, y)
        ours_p = image.psnr(x, y)
        for k in range(y.shape[0]):
            ref_s = structural_similarity(
                x[k],
                y[k],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            np.testing.assert_allclose(ours_s[k], ref_s, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(ours_p[k], peak_signal_noise_ratio(y[k], x[k], data_range=1))


def test_log_kernel_matches_matlab_fspecial_log():
    # MATLAB documentation: fspecial('log') (hsize 5, sigma 0.5), printed to 4 decimals.
    matlab = np.array(
        [
            [0.0448, 0.0468, 0.0564, 0.0468, 0.0448],
            [0.0468, 0.3167, 0.7146, 0.3167, 0.0468],
            [0.0564, 0.7146, -4.9048, 0.7146, 0.0564],
            [0.0468, 0.3167, 0.7146, 0.3167, 0.0468],
            [0.0448, 0.0468, 0.0564, 0.0468, 0.0448],
        ]
    )
    np.testing.assert_allclose(image.log_kernel(5, 0.5), matlab, atol=6e-5)
    k = image.log_kernel(15, 1.5)
    assert k.shape == (15, 15)
    assert abs(k.sum()) < 1e-14
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    assert k[7, 7] == k.min() < 0


def test_hfen_known_values():
    y = smooth_frames(8)
    # LoG is linear: LoG(2y) - LoG(y) = LoG(y); LoG(0) = 0.
    np.testing.assert_allclose(image.hfen(2 * y, y), 1.0, rtol=1e-12)
    np.testing.assert_allclose(image.hfen(np.zeros_like(y), y), 1.0, rtol=1e-12)
    # the zero-sum kernel ignores a constant offset: HFEN(y + c, y) = 0
    np.testing.assert_allclose(image.hfen(y + 0.3, y), 0.0, atol=1e-12)
    assert np.all(image.hfen(noisy(y, 0.05, 9), y) > 0)


# --- VIF against an independent, loop-based transliteration of vifp_mscale.m ---------------


def _fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    half = (n - 1) // 2
    g = np.array(
        [[math.exp(-(i * i + j * j) / (2 * sigma * sigma)) for j in range(-half, half + 1)]
         for i in range(-half, half + 1)]
    )  # fmt: skip
    g[g < np.finfo(float).eps * g.max()] = 0
    return g / g.sum()


def _vifp_reference(ref: np.ndarray, dist: np.ndarray) -> float:
    """Sheikh & Bovik's vifp_mscale.m, one frame, 2-D convolutions, 0..255 scale."""
    sigma_nsq = 2.0
    ref = ref.astype(float) * 255
    dist = dist.astype(float) * 255
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _fspecial_gaussian(n, n / 5)
        rot = np.rot90(win, 2)  # filter2 = correlation = convolution with the rotated window
        if scale > 1:
            ref = signal.convolve2d(ref, rot, mode="valid")[::2, ::2]
            dist = signal.convolve2d(dist, rot, mode="valid")[::2, ::2]
        mu1 = signal.convolve2d(ref, rot, mode="valid")
        mu2 = signal.convolve2d(dist, rot, mode="valid")
        s1 = signal.convolve2d(ref * ref, rot, mode="valid") - mu1 * mu1
        s2 = signal.convolve2d(dist * dist, rot, mode="valid") - mu2 * mu2
        s12 = signal.convolve2d(ref * dist, rot, mode="valid") - mu1 * mu2
        total_num = total_den = 0.0
        for a, b, c in zip(s1.ravel(), s2.ravel(), s12.ravel(), strict=True):
            a, b = max(a, 0.0), max(b, 0.0)
            g = c / (a + 1e-10)
            sv = b - g * c
            if a < 1e-10:
                g, sv, a = 0.0, b, 0.0
            if b < 1e-10:
                g, sv = 0.0, 0.0
            if g < 0:
                sv, g = b, 0.0
            sv = max(sv, 1e-10)
            total_num += math.log10(1 + g * g * a / (sv + sigma_nsq))
            total_den += math.log10(1 + a / sigma_nsq)
        num += total_num
        den += total_den
    return num / den


def test_vif_matches_independent_reference_implementation():
    y = smooth_frames(10, f=1, h=48, w=52)[0]
    y[:6] = 0.0  # a flat (zero) band like the MRI background
    cases = [
        noisy(y, 0.02, 11),
        noisy(y, 0.1, 12),
        ndimage.gaussian_filter(y, 1.5),
        0.5 * y,
        smooth_frames(13, f=1, h=48, w=52)[0],
    ]
    ours = vif.vifp(np.stack(cases), np.stack([y] * len(cases)))
    for k, x in enumerate(cases):
        np.testing.assert_allclose(ours[k], _vifp_reference(y, x), rtol=1e-9)
    # more noise, less information
    assert ours[0] > ours[1] > 0
    assert 0 <= ours[4] < 0.2


def test_vif_needs_large_enough_frames():
    with pytest.raises(ShapeError):
        vif.vifp(np.zeros((20, 20)), np.zeros((20, 20)))


# --- registry -----------------------------------------------------------------------------


def test_registry_names_flags_and_parsing():
    assert registry.METRIC_NAMES == (
        "ssim",
        "psnr",
        "ssim_ls",
        "psnr_ls",
        "mse",
        "nmse",
        "nrmse",
        "hfen",
        "vif",
        "lpips",
        "fid",
    )
    higher = {n for n, s in registry.METRICS.items() if s.higher_is_better}
    assert higher == {"ssim", "psnr", "ssim_ls", "psnr_ls", "vif"}
    assert registry.METRICS["psnr_ls"].label == "PSNR (LS)"
    assert registry.METRICS["ssim_ls"].label == "SSIM (LS)"
    # the default selection shows both normalizations; classic holds every weight-free metric
    assert {"ssim", "psnr", "ssim_ls", "psnr_ls"} <= set(registry.parse_metrics("paper"))
    assert {"ssim_ls", "psnr_ls"} <= set(registry.parse_metrics("classic"))
    assert {n for n, s in registry.METRICS.items() if s.scope == "set"} == {"fid"}
    assert {n for n, s in registry.METRICS.items() if s.needs_weights} == {"lpips", "fid"}
    assert registry.parse_metrics("PSNR, ssim") == ("ssim", "psnr")
    assert registry.parse_metrics(["vif", "psnr,vif"]) == ("psnr", "vif")
    assert registry.parse_metrics(None) == registry.METRIC_NAMES
    assert "lpips" not in registry.parse_metrics("classic")
    with pytest.raises(InputError, match="unknown metric 'bogus'"):
        registry.parse_metrics("ssim,bogus")
    with pytest.raises(InputError):
        registry.parse_metrics(" , ")


def test_registry_is_import_light():
    code = (
        "import sys, sirem_cli.metrics, sirem_cli.metrics.registry\n"
        "heavy = [m for m in ('numpy', 'scipy', 'torch', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == ""


# --- evaluation ---------------------------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty weights folder and an empty TORCH_HOME: LPIPS and FID are unavailable."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    empty = tmp_path / "weights"
    empty.mkdir()
    return empty


def test_evaluate_sequences_means_and_std_by_hand(no_weights):
    y1 = 0.2 + 0.6 * smooth_frames(20, f=2)
    y2 = 0.2 + 0.6 * smooth_frames(21, f=3)
    recons = {"u1": y1 + 0.1, "u2": y2 - 0.2}
    targets = {"u1": y1, "u2": y2, "unused": y2}
    res = evaluate_sequences(
        recons, targets, "mse,psnr,nrmse", method="m", target_name="t", weights_dir=no_weights
    )
    assert res.sequences == ("u1", "u2")
    assert res.n_frames == {"u1": 2, "u2": 3}
    np.testing.assert_allclose(res.per_sequence["u1"]["mse"], 0.01, rtol=1e-6)
    np.testing.assert_allclose(res.per_sequence["u2"]["mse"], 0.04, rtol=1e-6)
    np.testing.assert_allclose(res.summary["mse"].mean, 0.025, rtol=1e-6)
    np.testing.assert_allclose(res.summary["mse"].std, 0.03 / math.sqrt(2), rtol=1e-5)
    psnr2 = 10 * math.log10(1 / 0.04)
    np.testing.assert_allclose(res.summary["psnr"].mean, (20 + psnr2) / 2, rtol=1e-5)
    np.testing.assert_allclose(res.summary["nrmse"].mean, (0.1 + 0.2) / 2 / 0.6, rtol=1e-5)
    assert res.summary["mse"].n == 2
    assert res.unavailable == {}
    assert res.per_frame["u2"]["mse"].shape == (3,)


def test_evaluate_reports_the_least_squares_scaled_twins(no_weights):
    y = smooth_frames(23, f=2)
    res = evaluate_sequences(
        {"u": 0.5 * y}, {"u": y}, "paper", method="m", target_name="t", weights_dir=no_weights
    )
    assert res.summary["psnr_ls"].mean == registry.PSNR_CAP_DB  # a multiple of the target
    np.testing.assert_allclose(res.summary["ssim_ls"].mean, 1.0, atol=1e-12)
    np.testing.assert_allclose(res.summary["psnr"].mean, np.mean(image.psnr(0.5 * y, y)))


def test_evaluate_caps_psnr_and_skips_undefined_frames(no_weights):
    y = smooth_frames(22, f=3)
    x = y.copy()
    x[1] = np.clip(x[1] + 0.05, 0, 1)
    res = evaluate_sequences({"a": x}, {"a": y}, ["psnr"], weights_dir=no_weights)
    expected = (100.0 + float(image.psnr(x[1], y[1])) + 100.0) / 3
    np.testing.assert_allclose(res.summary["psnr"].mean, expected)
    assert math.isnan(res.summary["psnr"].std)  # one sequence: no spread
    # an all-zero target frame makes NMSE undefined on it: skipped and counted
    t = smooth_frames(23, f=3)
    t[2] = 0.0
    r = np.clip(t + 0.1, 0, 1)
    res = evaluate_sequences({"b": r}, {"b": t}, ["nmse"], weights_dir=no_weights)
    assert res.summary["nmse"].excluded_frames == 1
    np.testing.assert_allclose(res.per_sequence["b"]["nmse"], np.mean(image.nmse(r[:2], t[:2])))


def test_evaluate_reports_missing_weights_as_unavailable(no_weights):
    y = smooth_frames(24, f=2)
    res = evaluate_sequences(
        {"a": y}, {"a": y}, "ssim,lpips,fid", weights_dir=no_weights, method="m"
    )
    assert set(res.summary) == {"ssim"}  # no number at all for the unavailable ones
    assert set(res.unavailable) == {"lpips", "fid"}
    assert "alexnet-owt-7be5be79.pth" in res.unavailable["lpips"]
    assert "alex.pth" in res.unavailable["lpips"]
    assert "pt_inception-2015-12-05-6726825d.pth" in res.unavailable["fid"]
    assert str(no_weights) in res.unavailable["fid"]
    assert "\n" not in res.unavailable["fid"]
    assert math.isnan(res.value("lpips"))


def test_evaluate_input_errors(no_weights):
    y = smooth_frames(25, f=2)
    with pytest.raises(ShapeError, match="'b'"):
        evaluate_sequences({"b": y}, {"a": y}, "mse", weights_dir=no_weights)
    with pytest.raises(ShapeError, match="same shape"):
        evaluate_sequences({"a": y}, {"a": y[:1]}, "mse", weights_dir=no_weights)
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        evaluate_sequences({"a": y * 3}, {"a": y}, "mse", weights_dir=no_weights)
    with pytest.raises(ShapeError, match="finite"):
        evaluate_sequences({"a": y * np.nan}, {"a": y}, "mse", weights_dir=no_weights)


def test_results_json_csv_markdown_round_trip(tmp_path, no_weights):
    y = smooth_frames(26, f=2)
    results = [
        evaluate_sequences(
            {"u1": noisy(y, s, 1), "u2": noisy(y, s, 2)},
            {"u1": y, "u2": y},
            "ssim,psnr,lpips",
            method=m,
            target_name="reference",
            weights_dir=no_weights,
        )
        for m, s in (("sirem", 0.02), ("sirem-no-audio", 0.05))
    ]
    text = results_to_json(results, include_frames=True)
    json.loads(text)  # strict JSON (no NaN tokens)
    back = results_from_json(text)
    assert [r.method for r in back] == ["sirem", "sirem-no-audio"]
    for a, b in zip(results, back, strict=True):
        assert b.summary["ssim"].mean == pytest.approx(a.summary["ssim"].mean, rel=1e-15)
        assert b.unavailable == a.unavailable
        np.testing.assert_allclose(b.per_frame["u2"]["psnr"], a.per_frame["u2"]["psnr"])
    assert isinstance(back[0], EvalResult)

    rows = list(csv.DictReader(io.StringIO(results_to_csv(results))))
    assert len(rows) == 2 * (2 + 2)  # per method: 2 sequences + mean + std
    mean_row = next(r for r in rows if r["method"] == "sirem" and r["row"] == "mean")
    assert float(mean_row["psnr"]) == pytest.approx(results[0].summary["psnr"].mean, rel=1e-9)
    assert mean_row["lpips"] == ""  # unavailable: empty, not zero

    paths = write_results(results, tmp_path / "out")
    assert sorted(paths) == ["csv", "json", "md"]
    md = paths["md"].read_text()
    assert "Target: Reference (USC)" in md and "SIREM (w/o audio)" in md
    assert "better" in md  # table 2 (sirem vs sirem-no-audio) is included
    assert "alex.pth" in md  # the unavailable note


def test_metrics_never_import_the_report_package():
    """Imports run report -> metrics only (issue 12: no import cycle between the two)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "sirem_cli" / "metrics"
    offenders = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("sirem_cli.report")]
    assert offenders == []


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_all_finite_agrees_with_isfinite(kind, dtype):
    import torch

    from sirem_cli.imaging import all_finite

    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 5, 6)).astype(np.float32)
    if dtype == "complex64":
        base = (base + 1j * rng.standard_normal((4, 5, 6))).astype(np.complex64)
    big = np.full(8, np.finfo(np.float32).max / 2, dtype=np.float32).astype(dtype)
    cases = {"plain": base, "empty": base[:0], "overflowing sum": big}
    for bad in (np.nan, np.inf, -np.inf):
        arr = base.copy()
        arr[3, 4, 5] = bad
        cases[f"one {bad}"] = arr
    pair = base.copy()
    pair[0, 0, 0], pair[1, 1, 1] = np.inf, -np.inf  # sums to NaN
    cases["inf and -inf"] = pair
    for name, arr in cases.items():
        value = torch.from_numpy(arr) if kind == "torch" else arr
        assert all_finite(value) == bool(np.isfinite(arr).all()), name
