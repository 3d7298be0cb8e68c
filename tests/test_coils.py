"""Walsh coil maps and the rotation-averaged coil images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from sirem_cli.errors import ShapeError
from sirem_cli.mri.coils import gridded_coil_images, walsh_maps
from sirem_cli.mri.spiral import to_radians, vd_spiral
from sirem_cli.nufft import make_nufft
from sirem_cli.nufft._ndft import ndft_adjoint


def _true_maps(n_coils: int, n: int) -> np.ndarray:
    """Smooth complex maps (Gaussian magnitudes, linear phases), sum_c |S_c|^2 = 1."""
    rng = np.random.default_rng(10)
    yy, xx = np.mgrid[0:n, 0:n] / n - 0.5
    maps = []
    for c in range(n_coils):
        ang = 2 * np.pi * c / n_coils
        mag = np.exp(-((yy - 0.6 * np.sin(ang)) ** 2 + (xx - 0.6 * np.cos(ang)) ** 2) / 0.2)
        maps.append(mag * np.exp(1j * (rng.uniform(-3, 3) + 1.5 * rng.normal() * (xx + yy))))
    maps = np.asarray(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0))


def _object(n: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:n, 0:n] / n - 0.5
    support = (yy / 0.42) ** 2 + (xx / 0.36) ** 2 <= 1
    obj = support * (0.6 + 0.4 * ((yy + 0.1) ** 2 + xx**2 < 0.02))
    return obj.astype(float), support


def _referenced(maps: np.ndarray, ref: int) -> np.ndarray:
    return maps * np.exp(-1j * np.angle(maps[ref]))[None]


def _compare(est: np.ndarray, true: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Relative error and correlation inside the mask, after one common phase."""
    e, t = est[:, mask], true[:, mask]
    common = np.vdot(e, t)
    e = e * common / abs(common)
    corr = abs(np.vdot(e, t)) / (np.linalg.norm(e) * np.linalg.norm(t))
    return float(np.linalg.norm(e - t) / np.linalg.norm(t)), float(corr)


def test_walsh_recovers_smooth_maps_from_coil_images():
    n, n_coils = 48, 6
    true = _true_maps(n_coils, n)
    obj, support = _object(n)
    rng = np.random.default_rng(0)
    imgs = true * obj + 0.01 * (
        rng.standard_normal((n_coils, n, n)) + 1j * rng.standard_normal((n_coils, n, n))
    )
    est = walsh_maps(imgs, smoothing=5, ref_coil=0)
    assert est.shape == (n_coils, n, n) and est.dtype == np.complex64
    assert np.allclose((np.abs(est) ** 2).sum(0), 1, atol=1e-5)
    assert np.all(np.abs(est[0].imag) < 1e-6) and np.all(est[0].real >= 0)
    inner = binary_erosion(support, iterations=3)
    err, corr = _compare(est, _referenced(true, 0), inner)
    print(f"walsh from coil images: rel. error {err:.4f}, correlation {corr:.5f}")
    assert err < 0.05 and corr > 0.998  # measured 0.035 and 0.9994


def test_threshold_zeroes_the_background():
    n = 32
    obj, support = _object(n)
    imgs = _true_maps(4, n) * obj
    est = walsh_maps(imgs, smoothing=3, threshold=0.05)
    far = ~binary_dilation(support, iterations=3)  # beyond the 3x3 window
    assert np.all(est[:, far] == 0)
    assert np.allclose((np.abs(est[:, support]) ** 2).sum(0), 1, atol=1e-5)


def test_rotation_average_matches_the_exact_adjoint():
    rng = np.random.default_rng(1)
    traj_c, dcf = vd_spiral(3, 40, 16)
    traj = to_radians(traj_c)
    dcf = np.broadcast_to(dcf, (3, 40))
    ksp = rng.standard_normal((4, 2, 3, 40)) + 1j * rng.standard_normal((4, 2, 3, 40))
    got = gridded_coil_images(ksp.mean(0), traj, dcf, (16, 16))  # the rotation average
    expected = ndft_adjoint((ksp.mean(0) * dcf).reshape(2, -1), traj.reshape(-1, 2), (16, 16))
    assert got.shape == (2, 16, 16) and got.dtype == np.complex64
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-3


def test_end_to_end_from_spiral_kspace():
    """k-space of object x true maps -> rotation average -> Walsh ~ true maps."""
    n, n_coils = 40, 4
    true = _true_maps(n_coils, n)
    obj, support = _object(n)
    traj_c, dcf = vd_spiral(13, 300, n)
    traj = to_radians(traj_c)
    dcf = np.broadcast_to(dcf, traj.shape[:2])
    op = make_nufft(traj, (n, n), eps=1e-8)
    ksp = op.forward(true * obj).reshape(1, n_coils, *traj.shape[:2])
    ksp = np.repeat(ksp, 3, axis=0)
    imgs = gridded_coil_images(ksp.mean(0), traj, dcf, (n, n))
    est = walsh_maps(imgs, smoothing=5, ref_coil=0)
    inner = binary_erosion(support, iterations=3)
    err, corr = _compare(est, _referenced(true, 0), inner)
    print(f"walsh end to end: rel. error {err:.4f}, correlation {corr:.5f}")
    assert err < 0.06 and corr > 0.998  # measured 0.032 and 0.9995


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"coil_images": np.zeros((4, 4))}, "coil_images"),
        ({"coil_images": np.full((2, 4, 4), np.nan)}, "NaN"),
        ({"smoothing": 0}, "smoothing"),
        ({"threshold": 1.5}, "threshold"),
        ({"ref_coil": 5}, "ref_coil"),
    ],
)
def test_walsh_validation(kwargs, match):
    args = {"coil_images": np.ones((2, 4, 4), complex)} | kwargs
    with pytest.raises(ShapeError, match=match):
        walsh_maps(**args)


def test_gridded_coil_images_validation():
    with pytest.raises(ShapeError, match="kspace"):
        gridded_coil_images(np.zeros((3, 4)), np.zeros((3, 4, 2)), np.ones((3, 4)), (8, 8))
    with pytest.raises(ShapeError, match="traj"):
        gridded_coil_images(np.zeros((2, 3, 4)), np.zeros((3, 5, 2)), np.ones((3, 4)), (8, 8))
    with pytest.raises(ShapeError, match="dcf"):
        gridded_coil_images(np.zeros((2, 3, 4)), np.zeros((3, 4, 2)), np.ones((3, 5)), (8, 8))
