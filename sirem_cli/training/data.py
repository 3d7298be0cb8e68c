"""Training frames in memory: cached embeddings, per-arm images, targets, fusion maps.

:class:`FrameData` is what the training loop iterates over; :mod:`sirem_cli.api.train` builds it
from prepared files (the audio encoder never runs during training, and the MRI branch costs an
einsum and no NUFFT).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sirem_cli.errors import InputError, ShapeError


def _shape(array: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in array.shape)


def _is_complex(array: Any) -> bool:
    dtype = array.dtype
    if isinstance(dtype, torch.dtype):
        return dtype.is_complex
    return np.issubdtype(np.dtype(dtype), np.complexfloating)


def _is_real_float(array: Any) -> bool:
    dtype = array.dtype
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point
    return np.issubdtype(np.dtype(dtype), np.floating)


def _take(array: Any, index: np.ndarray) -> Tensor:
    """Gather rows ``index`` from a tensor, numpy array or h5py dataset as a tensor."""
    if isinstance(array, Tensor):
        return array[torch.from_numpy(index)]
    unique, inverse = np.unique(index, return_inverse=True)
    rows = np.asarray(array[unique])  # h5py needs increasing, unique indices
    return torch.from_numpy(np.ascontiguousarray(rows[inverse]))


@dataclasses.dataclass
class FrameData:
    """Training or validation frames in memory (or any array supporting row indexing).

    Each field may be a torch tensor, a numpy array or an h5py dataset (read per batch).

    Attributes:
        embeddings: (N, E) float32 cached audio embeddings.
        arm_images: (N, A, H, W) complex64 per-arm coil-combined images
            B_a = sum_c conj(S_c) NUFFT^H(dcf_a * k_{c,a}) (A here: arms per frame).
        target: (N, H, W) float32 reference frames in [0, 1].
        eba: (N, H, W) float32 explained-by-audio maps in [0, 1], or None.
        arms: (N, A) int interleaf of each arm image, or None (every frame holds all
            interleaves in order).
    """

    embeddings: Any
    arm_images: Any
    target: Any
    eba: Any | None = None
    arms: Any | None = None

    def __post_init__(self) -> None:
        emb, arms, target = _shape(self.embeddings), _shape(self.arm_images), _shape(self.target)
        if len(emb) != 2 or not _is_real_float(self.embeddings):
            raise ShapeError(f"frame data: embeddings must be float (N, E), got {emb}")
        if len(arms) != 4 or not _is_complex(self.arm_images):
            raise ShapeError(f"frame data: arm_images must be complex (N, A, H, W), got {arms}")
        n_frames = emb[0]
        if (
            arms[0] != n_frames
            or target != (n_frames, *arms[2:])
            or not _is_real_float(self.target)
        ):
            raise ShapeError(
                f"frame data: expected target float (N, H, W) = {(n_frames, *arms[2:])} to match "
                f"embeddings {emb} and arm_images {arms}, got {target}"
            )
        if self.eba is not None and _shape(self.eba) != target:
            raise ShapeError(f"frame data: eba must be {target}, got {_shape(self.eba)}")
        if self.arms is not None and _shape(self.arms) != (n_frames, arms[1]):
            raise ShapeError(
                f"frame data: arms must be (N, A) = {(n_frames, arms[1])}, got {_shape(self.arms)}"
            )

    def __len__(self) -> int:
        return _shape(self.embeddings)[0]

    @property
    def embedding_dim(self) -> int:
        """E."""
        return _shape(self.embeddings)[1]

    @property
    def n_arms(self) -> int:
        """A."""
        return _shape(self.arm_images)[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        shape = _shape(self.arm_images)
        return shape[2], shape[3]

    def batch(
        self, index: np.ndarray, device: torch.device, *, with_eba: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Gather frames onto ``device``.

        Args:
            index: (b,) int64 frame indices.
            device: target device.
            with_eba: also return the eba maps (an error if there are none).

        Returns:
            embeddings (b, E) float32, arm_images (b, A, H, W) complex64, target (b, H, W)
            float32, eba (b, H, W) float32 or None, arms (b, A) int64 or None.
        """
        embeddings = _take(self.embeddings, index).to(device=device, dtype=torch.float32)
        arm_images = _take(self.arm_images, index).to(device=device, dtype=torch.complex64)
        target = _take(self.target, index).to(device=device, dtype=torch.float32)
        eba = None
        if with_eba:
            if self.eba is None:
                raise InputError("these frames have no explained-by-audio maps (eba)")
            eba = _take(self.eba, index).to(device=device, dtype=torch.float32)
        arms = None
        if self.arms is not None:
            arms = _take(self.arms, index).to(device=device, dtype=torch.long)
        return embeddings, arm_images, target, eba, arms

    def embedding_stats(self, chunk: int = 1024) -> tuple[Tensor, Tensor]:
        """(E,) mean and standard deviation of the embeddings over all frames."""
        total = torch.zeros(self.embedding_dim, dtype=torch.float64)
        square = torch.zeros(self.embedding_dim, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            rows = _take(self.embeddings, np.arange(start, min(len(self), start + chunk)))
            rows = rows.to(torch.float64)
            total += rows.sum(dim=0)
            square += (rows**2).sum(dim=0)
        mean = total / len(self)
        var = (square / len(self) - mean**2).clamp_min(0.0)
        return mean.to(torch.float32), var.sqrt().to(torch.float32)

    def mean_target(self, chunk: int = 256) -> Tensor:
        """(H, W) float32 mean target frame."""
        total = torch.zeros(self.image_size, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            index = np.arange(start, min(len(self), start + chunk))
            total += _take(self.target, index).to(torch.float64).sum(dim=0)
        return (total / len(self)).to(torch.float32)

    def mean_eba(self, chunk: int = 256) -> Tensor:
        """(H, W) float32 mean explained-by-audio map over all frames (the static map)."""
        if self.eba is None:
            raise InputError("these frames have no explained-by-audio maps (eba)")
        total = torch.zeros(self.image_size, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            index = np.arange(start, min(len(self), start + chunk))
            total += _take(self.eba, index).to(torch.float64).sum(dim=0)
        return (total / len(self)).to(torch.float32)

    @staticmethod
    def concat(parts: Sequence[FrameData]) -> FrameData:
        """Concatenate frame sets (e.g. one per prepared file) into one in-memory set."""
        if not parts:
            raise InputError("no frame data given")
        if len(parts) == 1:
            return parts[0]
        with_eba = all(part.eba is not None for part in parts)
        with_arms = any(part.arms is not None for part in parts)

        def cat(field: str) -> Tensor:
            return torch.cat([_take(getattr(p, field), np.arange(len(p))) for p in parts])

        return FrameData(
            embeddings=cat("embeddings"),
            arm_images=cat("arm_images"),
            target=cat("target"),
            eba=cat("eba") if with_eba else None,
            arms=torch.cat([_arms_of(p) for p in parts]) if with_arms else None,
        )


def _arms_of(part: FrameData) -> Tensor:
    """A part's arms, or every interleaf in order when it has none."""
    if part.arms is not None:
        return _take(part.arms, np.arange(len(part))).to(torch.long)
    return torch.arange(part.n_arms).expand(len(part), -1)
