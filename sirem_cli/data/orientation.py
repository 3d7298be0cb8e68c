"""Find the raw-gridding -> upright transform and fold it into trajectory and k-space.

A plain adjoint NUFFT of raw USC data (``traj[:, :2]`` in radians, image axis 0 with kx,
``+i`` sign, grid centre at N // 2) gives an image G whose upright view is one of the eight
rotations/flips of G (for the USC files: ``upright = rot90(G)``, i.e. transpose then flipud).
Rather than rotating images downstream, :func:`fold_transform` changes the k-space so that the
plain adjoint of the new data *is* the transformed image, pixel-exact:

* transpose  <->  swap the two trajectory columns;
* flip of axis d (r -> N - 1 - r)  <->  negate traj[..., d] and multiply the samples by
  ``exp(-i traj[..., d])`` (the flip of an even grid mirrors about (N - 1) / 2, while the
  NUFFT centre is N / 2: the phase is that one-pixel shift);
* an integer shift by s pixels along d  <->  multiply by ``exp(-i s traj[..., d])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Transform:
    """Upright = shift(flip(transpose?(G))): transpose first, then flips, then an integer shift."""

    transpose: bool
    flip0: bool
    flip1: bool
    shift0: int = 0
    shift1: int = 0

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Apply to (..., N, N) arrays (the shift is circular)."""
        out = np.swapaxes(images, -1, -2) if self.transpose else images
        if self.flip0:
            out = np.flip(out, axis=-2)
        if self.flip1:
            out = np.flip(out, axis=-1)
        if self.shift0 or self.shift1:
            out = np.roll(out, (self.shift0, self.shift1), axis=(-2, -1))
        return out

    def describe(self) -> str:
        """A short human-readable description, e.g. ``transpose,flip0``."""
        parts = [
            name
            for name, on in (
                ("transpose", self.transpose),
                ("flip0", self.flip0),
                ("flip1", self.flip1),
            )
            if on
        ]
        if self.shift0 or self.shift1:
            parts.append(f"shift({self.shift0},{self.shift1})")
        return ",".join(parts) or "identity"


DIHEDRAL = tuple(
    Transform(t, f0, f1) for t in (False, True) for f0 in (False, True) for f1 in (False, True)
)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def find_transform(
    gridded: np.ndarray, reference: np.ndarray
) -> tuple[Transform, float, list[float]]:
    """Choose the transform mapping gridded images onto upright references.

    Args:
        gridded: (n, N, N) magnitude images of a plain adjoint of the raw data.
        reference: (n, N, N) upright reference frames at the same times.

    Returns:
        The best transform (dihedral part plus an integer shift in {-1, 0, 1}^2), its mean
        correlation, and the mean correlation of each of the 8 dihedral candidates.
    """
    scores = [
        float(np.mean([_corr(t.apply(g), r) for g, r in zip(gridded, reference, strict=True)]))
        for t in DIHEDRAL
    ]
    best = DIHEDRAL[int(np.argmax(scores))]
    shifted = []
    for s0 in (-1, 0, 1):
        for s1 in (-1, 0, 1):
            t = Transform(best.transpose, best.flip0, best.flip1, s0, s1)
            score = float(
                np.mean([_corr(t.apply(g), r) for g, r in zip(gridded, reference, strict=True)])
            )
            shifted.append((score, abs(s0) + abs(s1) == 0, t))
    score, _, chosen = max(shifted, key=lambda item: (item[0], item[1]))
    return chosen, score, scores


def fold_trajectory(traj: np.ndarray, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """The trajectory and k-space phase that make the plain adjoint yield ``transform(G)``.

    Args:
        traj: (..., 2) radians, raw image axes.
        transform: the raw -> upright transform.

    Returns:
        The new (..., 2) float32 trajectory in [-pi, pi) and the (...,) complex64 factor each
        sample of the k-space is multiplied by (a linear phase where the flip of an even-sized
        grid moves the centre by one pixel).
    """
    omega = np.asarray(traj, dtype=np.float64).copy()
    phase = np.zeros(omega.shape[:-1])
    if transform.transpose:
        omega = omega[..., ::-1].copy()
    for axis, flip in ((0, transform.flip0), (1, transform.flip1)):
        if flip:
            phase -= omega[..., axis]
            omega[..., axis] = -omega[..., axis]
    for axis, shift in ((0, transform.shift0), (1, transform.shift1)):
        if shift:
            phase -= shift * omega[..., axis]
    omega = np.where(omega >= np.pi, omega - 2 * np.pi, omega)
    return omega.astype(np.float32), np.exp(1j * phase).astype(np.complex64)


def fold_transform(
    traj: np.ndarray, kspace: np.ndarray, transform: Transform
) -> tuple[np.ndarray, np.ndarray]:
    """Change trajectory and k-space so that the plain adjoint yields ``transform(G)``.

    Args:
        traj: (A, S, 2) radians, raw image axes.
        kspace: (F, C, A, S) complex64 samples.
        transform: the raw -> upright transform.

    Returns:
        New (A, S, 2) float32 trajectory in [-pi, pi) and (F, C, A, S) complex64 k-space.
    """
    omega, factor = fold_trajectory(traj, transform)
    return omega, (kspace * factor).astype(np.complex64)
