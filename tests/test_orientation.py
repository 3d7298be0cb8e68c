import numpy as np
import pytest

from sirem_cli.data.orientation import DIHEDRAL, Transform, find_transform, fold_transform


def ndft_adjoint(kspace, omega, n):
    """image[r, c] = sum_k y_k exp(+i (w0 (r - n//2) + w1 (c - n//2))), written independently."""
    u = np.arange(n) - n // 2
    e0 = np.exp(1j * np.outer(omega[:, 0], u))  # (K, n)
    e1 = np.exp(1j * np.outer(omega[:, 1], u))
    return np.einsum("k,kr,kc->rc", kspace, e0, e1)


@pytest.mark.parametrize(
    "transform", [*DIHEDRAL, Transform(True, True, False, 1, -1)], ids=lambda t: t.describe()
)
def test_folding_gives_the_transformed_image_pixel_exact(transform):
    rng = np.random.default_rng(1)
    n = 12
    omega = rng.uniform(-np.pi, np.pi, (2, 40, 2))  # (A, S, 2)
    kspace = rng.standard_normal((1, 1, 2, 40)) + 1j * rng.standard_normal((1, 1, 2, 40))
    before = ndft_adjoint(kspace.reshape(-1), omega.reshape(-1, 2), n)
    new_traj, new_k = fold_transform(omega, kspace.astype(np.complex64), transform)
    assert new_traj.min() >= -np.pi and new_traj.max() < np.pi
    after = ndft_adjoint(
        new_k.reshape(-1).astype(np.complex128), new_traj.reshape(-1, 2).astype(np.float64), n
    )
    expected = transform.apply(before)
    if transform.shift0 or transform.shift1:  # a shift is exact away from the wrapped border
        after, expected = after[1:-1, 1:-1], expected[1:-1, 1:-1]
    np.testing.assert_allclose(after, expected, atol=1e-4 * np.abs(before).max())


def test_find_transform_recovers_rot90_and_rejects_the_others():
    rng = np.random.default_rng(0)
    upright = np.zeros((4, 16, 16))
    for img in upright:  # asymmetric blobs
        img[3:7, 2:5] = 1
        img[9:14, 8 + rng.integers(0, 3) : 12] = 0.6
    gridded = np.stack([np.rot90(u, k=-1) for u in upright])  # so that upright = rot90(gridded)
    chosen, score, scores = find_transform(gridded, upright)
    assert np.allclose(chosen.apply(gridded), upright)
    assert chosen.describe() == "transpose,flip0"
    assert score > 0.99 and sorted(scores)[-2] < 0.9
