import numpy as np

from sirem_cli.mri.spiral import interleaf_order, to_radians, vd_spiral


def test_usc_spiral_shape_radius_and_rotation():
    traj, dcf = vd_spiral()
    assert traj.shape == (13, 630, 2) and dcf.shape == (630,)
    radius = np.hypot(traj[..., 0], traj[..., 1])
    assert np.isclose(radius.max(), 0.5) and np.allclose(radius[:, -1], 0.5)
    assert radius[0, 0] == 0.0
    # arm a is arm 0 rotated by 2 pi a / 13
    z = traj[..., 0] + 1j * traj[..., 1]
    assert np.allclose(z[5], z[0] * np.exp(2j * np.pi * 5 / 13))


def test_dcf_zero_at_centre_rises_to_one():
    _, dcf = vd_spiral()
    assert dcf[0] == 0.0 and np.isclose(dcf.max(), 1.0)
    assert dcf[-1] > 0.9
    assert np.all(dcf >= 0)


def test_thirteen_interleaves_meet_nyquist():
    """Along each arm and between neighbouring turns samples are closer than 1/84."""
    traj, _ = vd_spiral()
    step = np.abs(np.diff(traj[0, :, 0] + 1j * traj[0, :, 1]))
    assert step.max() < 1 / 84
    # radial gap between neighbouring arms (arm 0 and its rotation by 2 pi / 13)
    theta = np.unwrap(np.angle(traj[0, 1:, 0] + 1j * traj[0, 1:, 1]))
    radius = np.hypot(traj[0, 1:, 0], traj[0, 1:, 1])
    grid = np.linspace(theta[0], theta[-1] - 2 * np.pi / 13, 2000)
    gap = np.interp(grid + 2 * np.pi / 13, theta, radius) - np.interp(grid, theta, radius)
    assert gap.max() < 1.0 / 84 + 1e-9
    assert gap.min() > 0


def test_radians_wrap_and_interleaf_order():
    rad = to_radians(np.array([0.5, -0.5, 0.25]))
    assert np.allclose(rad, [-np.pi, -np.pi, np.pi / 2])
    order = interleaf_order()
    assert sorted(order.tolist()) == list(range(13))
    assert order[:4].tolist() == [12, 3, 10, 0]
    assert not np.array_equal(order, np.arange(13))
