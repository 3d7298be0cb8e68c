"""The SENSE-NUFFT operator A = F S, its Toeplitz normal operator, and frames of N arms.

Three operators (:class:`~sirem_cli.linop.LinearOp`), composed as in the maths:

* :class:`CoilOp` S: an image x (..., H, W) to coil images (..., C, H, W), ``x * S_c``;
  adjoint ``sum_c conj(S_c) y_c``.
* :class:`SenseOp` A = F S for one trajectory of K points: (..., H, W) -> (..., C, K).
* :class:`FrameSenseOp`: the operator of a whole utterance whose frame t acquires its own
  N interleaves ``arms[t]`` of an interleaf table (I, S, 2): (F, H, W) -> (F, C, N, S).
  Frames that share an interleaf set share one :class:`SenseOp` (plans and Toeplitz
  kernels are made once per set; with 13-arm frames there is one set).

The data weighting W (the density compensation) is a separate diagonal operator
(:class:`~sirem_cli.linop.DiagOp`, :meth:`FrameSenseOp.weighting`). The solvers use the
normal operator ``A^H W A``, which has a cheap exact form (:class:`ToeplitzNormalOp`,
Toeplitz embedding): for one coil, ``(F^H W F x)[r] = sum_r' p(r - r') x[r']`` with the
point-spread function ``p(d) = sum_k w_k exp(+i k.d)``, d in (-H, H) x (-W, W). p is one
type-1 NUFFT of the weights onto the 2H x 2W grid; its FFT (real, as p is Hermitian) is
computed once per trajectory and weights, after which
``A^H W A x = sum_c conj(S_c) crop(IFFT(P_hat FFT(pad(S_c x))))`` costs two FFTs on the 2x
grid per coil-frame and no NUFFT.

NUFFT plans and Toeplitz kernels are shared across operators built for the same trajectory
(:func:`sirem_cli.nufft.shared_nufft`, :func:`toeplitz_kernel`): every USC utterance uses the
same interleaf table, so a command pays for them once, not once per utterance.

Everything runs in torch on the NUFFT's device; numpy inputs come back as numpy. Forward
and adjoint are differentiable (through :mod:`sirem_cli.nufft.autograd`) when the input
requires a gradient.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from sirem_cli.errors import ShapeError
from sirem_cli.imaging import is_torch
from sirem_cli.linop import DiagOp, LinearOp, check_trailing
from sirem_cli.nufft import NufftOp, shared_nufft
from sirem_cli.nufft.base import check_traj

_CDTYPES = {
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    torch.complex64: torch.complex64,
    torch.complex128: torch.complex128,
    np.complex64: torch.complex64,
    np.complex128: torch.complex128,
}


def complex_dtype(dtype: Any) -> torch.dtype:
    """torch complex64/complex128 from a name, numpy or torch dtype; ShapeError otherwise."""
    if dtype not in _CDTYPES:
        raise ShapeError(f"dtype: expected complex64 or complex128, got {dtype}")
    return _CDTYPES[dtype]


def real_dtype(cdtype: torch.dtype) -> torch.dtype:
    """float32 for complex64, float64 for complex128."""
    return torch.float32 if cdtype == torch.complex64 else torch.float64


def to_tensor(data: Any, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
    """A numpy array or tensor as a tensor of ``dtype`` on ``device`` (ShapeError if not numeric)."""
    if is_torch(data):
        if data.is_complex() or data.is_floating_point():
            return data.to(device=device, dtype=dtype)
        raise ShapeError(f"{what}: expected a floating point or complex tensor, got {data.dtype}")
    arr = np.asarray(data)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating)):
        raise ShapeError(f"{what}: expected a floating point or complex array, got {arr.dtype}")
    return torch.as_tensor(arr).to(device=device, dtype=dtype)


def _like(out: torch.Tensor, like: Any) -> Any:
    if is_torch(like):
        return out
    return out.detach().cpu().numpy()


def coil_combine(
    coil_images: torch.Tensor, smaps_conj: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_c smaps_conj[c] * coil_images[..., c, :, :].

    Args:
        coil_images: (..., C, H, W) complex.
        smaps_conj: (C, H, W) complex, the conjugated sensitivities.
        out: optional (..., H, W) tensor to write into.

    Returns:
        (..., H, W). (An explicit multiply-accumulate over coils: several times faster
        on the CPU than einsum or a broadcast product and sum; a broadcast product when a
        gradient is needed, since the in-place form is not differentiable.)
    """
    if coil_images.requires_grad or smaps_conj.requires_grad:
        return (coil_images * smaps_conj).sum(dim=-3)
    if out is None:
        out = coil_images[..., 0, :, :] * smaps_conj[0]
    else:
        torch.mul(coil_images[..., 0, :, :], smaps_conj[0], out=out)
    for c in range(1, smaps_conj.shape[0]):
        out.addcmul_(coil_images[..., c, :, :], smaps_conj[c])
    return out


class CoilOp(LinearOp):
    """S: multiplication by coil sensitivities, (..., H, W) -> (..., C, H, W).

    Args:
        smaps: (C, H, W) complex tensor (finite values).
    """

    def __init__(self, smaps: torch.Tensor) -> None:
        if smaps.ndim != 3 or min(smaps.shape) < 1 or not smaps.is_complex():
            raise ShapeError(f"smaps: expected complex (C, H, W), got {tuple(smaps.shape)}")
        if not torch.all(torch.isfinite(torch.view_as_real(smaps))):
            raise ShapeError("smaps: contains NaN or infinite values")
        self.smaps = smaps.contiguous()
        self.smaps_conj = smaps.conj().resolve_conj()
        self.ishape = tuple(int(n) for n in smaps.shape[1:])
        self.oshape = tuple(int(n) for n in smaps.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x, "image")
        return x.unsqueeze(-3) * self.smaps  # (..., C, H, W)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self.check_output(y, "coil images")
        return coil_combine(y, self.smaps_conj)  # (..., H, W)


def _nufft_forward(op: NufftOp, x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad:
        from sirem_cli.nufft.autograd import nufft_forward

        return nufft_forward(x, op)
    return op.forward(x)


def _nufft_adjoint(op: NufftOp, y: torch.Tensor) -> torch.Tensor:
    if y.requires_grad:
        from sirem_cli.nufft.autograd import nufft_adjoint

        return nufft_adjoint(y, op)
    return op.adjoint(y)


class SenseOp(LinearOp):
    """A = F S for one trajectory: (..., H, W) -> (..., C, K).

    Args:
        traj: (..., 2) float radians/pixel in [-pi, pi), flattened to K points.
        smaps: (C, H, W) complex coil sensitivities (or an existing :class:`CoilOp`).
        device: ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a torch.device.
        eps: NUFFT accuracy (None: 1e-4 for complex64, 1e-9 for complex128).
        n_threads: finufft threads (None: chosen per batch).
        dtype: computation dtype, ``torch.complex64`` (default) or ``torch.complex128``.
        nufft: an existing NufftOp for ``traj`` and (H, W) to use (then ``device``, ``eps``
            and ``n_threads`` are taken from it); by default a shared one
            (:func:`~sirem_cli.nufft.shared_nufft`).

    Attributes:
        nufft: F, the (H, W) NufftOp; coils: S, the :class:`CoilOp`.
    """

    def __init__(
        self,
        traj: Any,
        smaps: Any,
        *,
        device: Any = "cpu",
        eps: float | None = None,
        n_threads: int | None = None,
        dtype: Any = torch.complex64,
        nufft: NufftOp | None = None,
    ) -> None:
        self.dtype = complex_dtype(dtype)
        self.real_dtype = real_dtype(self.dtype)
        pts = check_traj(traj)
        if isinstance(smaps, CoilOp):
            im_shape = smaps.ishape
        else:
            shape = tuple(getattr(smaps, "shape", ()))
            if len(shape) != 3 or min(shape) < 1:
                raise ShapeError(f"smaps: expected shape (C, H, W), got {shape}")
            im_shape = (int(shape[1]), int(shape[2]))
        if nufft is None:
            nufft = shared_nufft(pts, im_shape, device=device, eps=eps, n_threads=n_threads)
        elif nufft.im_shape != im_shape or nufft.n_points != pts.shape[0]:
            raise ShapeError(
                f"nufft: built for K={nufft.n_points}, {nufft.im_shape}; "
                f"expected K={pts.shape[0]}, {im_shape}"
            )
        self.nufft = nufft
        self.traj = pts
        self.device = torch.device(nufft.device)
        if isinstance(smaps, CoilOp):
            self.coils = smaps
        else:
            self.coils = CoilOp(to_tensor(smaps, self.dtype, self.device, "smaps"))
        self.im_shape = im_shape
        self.ishape = im_shape
        self.oshape = (self.n_coils, self.n_points)

    @property
    def n_coils(self) -> int:
        """C."""
        return int(self.coils.smaps.shape[0])

    @property
    def n_points(self) -> int:
        """K samples per coil and frame."""
        return self.nufft.n_points

    @property
    def smaps(self) -> torch.Tensor:
        """(C, H, W) sensitivities."""
        return self.coils.smaps

    def _tensor(self, data: Any, tail: tuple[int, ...], what: str) -> torch.Tensor:
        check_trailing(data, tail, what)
        return to_tensor(data, self.dtype, self.device, what)

    def forward(self, image: Any) -> Any:
        """y = A x: (..., H, W) complex -> (..., C, K); numpy in, numpy out."""
        x = self._tensor(image, self.ishape, "image")
        return _like(_nufft_forward(self.nufft, self.coils.forward(x)), image)

    def adjoint(self, kspace: Any) -> Any:
        """x = A^H y: (..., C, K) -> (..., H, W) coil-combined; numpy in, numpy out."""
        y = self._tensor(kspace, self.oshape, "kspace")
        return _like(self._adjoint(y), kspace)

    def _adjoint(self, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """A^H (w y) for a tensor y (..., C, K) and optional real weights (..., 1, K)."""
        grad = y.requires_grad or self.coils.smaps_conj.requires_grad
        if grad or self.device.type != "cpu" or (weights is not None and weights.requires_grad):
            if weights is not None:
                y = y * weights
            return self.coils.adjoint(_nufft_adjoint(self.nufft, y))
        return self._adjoint_blocks(y, weights)

    def _adjoint_blocks(self, y: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """A^H (w y) on the CPU, block by block in the NUFFT's worker threads: each block of
        frames is weighted, transformed and coil-combined while it is in cache, so neither the
        weighted k-space nor the (..., C, H, W) coil images are ever allocated whole.
        (..., C, K) -> (..., H, W)."""
        lead, (h, w), n_coils, k = y.shape[:-2], self.im_shape, self.n_coils, self.n_points
        n = int(np.prod(lead, dtype=np.int64))
        out = torch.empty((n, h, w), dtype=self.dtype)
        if n == 0:
            return out.reshape(*lead, h, w)
        flat = y.detach().resolve_conj().resolve_neg().reshape(n * n_coils, k).contiguous()
        wts = None
        if weights is not None:
            wts = weights.detach().to(self.real_dtype).expand(*lead, 1, k).reshape(n, k)
            wts = wts.contiguous().numpy()
        smaps_conj = self.coils.smaps_conj

        def combine(lo: int, hi: int, images: np.ndarray) -> None:
            coils = torch.from_numpy(images).view(-1, n_coils, h, w)  # (frames, C, H, W)
            coil_combine(coils, smaps_conj, out=out[lo // n_coils : hi // n_coils])

        self.nufft.adjoint_blocks(flat.numpy(), combine, group=n_coils, weights=wts)
        return out.reshape(*lead, h, w)

    def toeplitz(self, weights: Any, *, fft_chunk: int = 4) -> ToeplitzNormalOp:
        """A^H W A for real non-negative data weights (K,) as a :class:`ToeplitzNormalOp`."""
        return ToeplitzNormalOp(self, weights, fft_chunk=fft_chunk)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(str((arr.shape, arr.dtype.str)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


_KERNELS: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_KERNELS_LOCK = threading.Lock()
_MAX_KERNELS = 64


def toeplitz_kernel(
    nufft: NufftOp, weights: np.ndarray, cdtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The FFT of the weighted point-spread function on the 2H x 2W grid, shared by trajectory.

    Built with one type-1 NUFFT of the weights (at the NUFFT's accuracy) and kept in a small
    cache keyed by the points, the weights, the grid, dtype and device.

    Args:
        nufft: the (H, W) NufftOp of the trajectory.
        weights: (K,) float64 data weights.
        cdtype: complex dtype of the computation.
        device: where the kernel lives.

    Returns:
        (2H, 2W, 2) real tensor (the kernel repeated for real and imaginary parts) with
        ``F^H W F x = crop(IFFT(P_hat FFT(pad x)))``.
    """
    h, w = nufft.im_shape
    key = (_digest(nufft.traj, weights), (h, w), str(cdtype), str(device), nufft.eps)
    with _KERNELS_LOCK:
        kernel = _KERNELS.get(key)
        if kernel is not None:
            _KERNELS.move_to_end(key)
            return kernel
    psf_op = shared_nufft(nufft.traj, (2 * h, 2 * w), device=device, eps=nufft.eps)
    psf = psf_op.adjoint(torch.as_tensor(weights, dtype=cdtype, device=device))  # (2H, 2W)
    # d = -H (row) and -W (column) never reach the cropped result; zero them so the
    # sequence is Hermitian and its FFT real.
    psf[0, :] = 0
    psf[:, 0] = 0
    psf = torch.fft.ifftshift(psf, dim=(-2, -1))  # index d mod 2H
    kernel = torch.fft.fft2(psf).real.unsqueeze(-1).repeat(1, 1, 2).contiguous()
    with _KERNELS_LOCK:
        _KERNELS[key] = kernel
        while len(_KERNELS) > _MAX_KERNELS:
            _KERNELS.popitem(last=False)
    return kernel


def _check_weights(weights: Any, n_points: int) -> np.ndarray:
    arr = np.asarray(weights.detach().cpu() if is_torch(weights) else weights)
    if np.iscomplexobj(arr) or arr.size != n_points:
        raise ShapeError(f"dcf: expected {n_points} real weights, got {arr.shape}")
    arr = arr.reshape(-1).astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ShapeError("dcf: weights must be finite and non-negative")
    return arr


class ToeplitzNormalOp(LinearOp):
    """A^H W A of a :class:`SenseOp` by Toeplitz embedding: (..., H, W) -> (..., H, W).

    Hermitian positive semi-definite; exact up to the accuracy of the one NUFFT that builds
    the kernel. :meth:`explicit` computes the same thing with a forward and an adjoint NUFFT.

    Args:
        sense: the SENSE operator A.
        weights: (K,) real non-negative data weights W (the DCF).
        fft_chunk: frames per block (bounds the temporary memory to about
            ``fft_chunk * C * 4 H W`` complex values).
    """

    def __init__(self, sense: SenseOp, weights: Any, *, fft_chunk: int = 4) -> None:
        self.sense = sense
        self.weights_np = _check_weights(weights, sense.n_points)
        self.weights = torch.as_tensor(self.weights_np, dtype=sense.real_dtype, device=sense.device)
        self.ishape = self.oshape = sense.ishape
        self.fft_chunk = max(1, int(fft_chunk))
        self._kernel: torch.Tensor | None = None
        self._kernel_scaled: torch.Tensor | None = None
        self._local = threading.local()  # per-thread scratch (the padded 2x grid, its FFT)

    def kernel(self) -> torch.Tensor:
        """The (2H, 2W, 2) real kernel (built on first use, shared by trajectory)."""
        if self._kernel is None:
            self._kernel = toeplitz_kernel(
                self.sense.nufft, self.weights_np, self.sense.dtype, self.sense.device
            )
        return self._kernel

    def forward(self, image: Any) -> Any:
        """A^H W A x for (..., H, W) complex; numpy in, numpy out."""
        x = self.sense._tensor(image, self.ishape, "image")
        lead = x.shape[:-2]
        flat = x.reshape(-1, *self.ishape)
        out = torch.empty_like(flat)
        kernel = self._scaled_kernel()
        for start in range(0, flat.shape[0], self.fft_chunk):
            stop = min(start + self.fft_chunk, flat.shape[0])
            self._block(flat[start:stop], out[start:stop], kernel)
        return _like(out.reshape(*lead, *self.ishape), image)

    adjoint = forward  # Hermitian

    def normal(self, image: Any) -> Any:
        """(A^H W A)^2 x (the operator's own normal)."""
        return self.forward(self.forward(image))

    def explicit(self, image: Any) -> Any:
        """A^H W A x by a forward and an adjoint NUFFT (the reference for the kernel)."""
        x = self.sense._tensor(image, self.ishape, "image")
        y = self.sense.forward(x) * self.weights
        return _like(self.sense.adjoint(y), image)

    def _block(self, x: torch.Tensor, out: torch.Tensor, kernel: torch.Tensor) -> None:
        """Toeplitz A^H W A for a block (B, H, W), written into ``out`` (B, H, W).

        Both FFTs run unnormalized into a per-thread buffer (the 1/(4HW) of the inverse is in
        ``kernel``), so no temporary is allocated: fresh multi-megabyte tensors cost page faults
        on every call, which doubled the time of this operator.
        """
        h, w = self.ishape
        pad, spec = self._buffers(x.shape[0])  # (B, C, 2H, 2W); pad is zero outside [:H, :W]
        torch.mul(x.unsqueeze(1), self.sense.smaps, out=pad[..., :h, :w])
        torch.fft.fft2(pad, norm="backward", out=spec)
        torch.view_as_real(spec).mul_(kernel)
        torch.fft.ifft2(spec, norm="forward", out=spec)
        coil_combine(spec[..., :h, :w], self.sense.coils.smaps_conj, out=out)

    def _scaled_kernel(self) -> torch.Tensor:
        """:meth:`kernel` divided by 4HW (the scale of the unnormalized inverse FFT)."""
        if self._kernel_scaled is None:
            h, w = self.ishape
            self._kernel_scaled = self.kernel() / (4 * h * w)
        return self._kernel_scaled

    def _buffers(self, n_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This thread's padded input and spectrum buffers, (n_block, C, 2H, 2W) each."""
        h, w = self.ishape
        bufs = getattr(self._local, "bufs", None)
        if bufs is None or bufs[0].shape[0] < n_block:
            shape = (n_block, self.sense.n_coils, 2 * h, 2 * w)
            kwargs = {"dtype": self.sense.dtype, "device": self.sense.device}
            bufs = (torch.zeros(shape, **kwargs), torch.empty(shape, **kwargs))
            self._local.bufs = bufs
        return bufs[0][:n_block], bufs[1][:n_block]


def arms_table(arms: Any, n_frames: int, n_interleaves: int) -> np.ndarray:
    """Validate a frame-to-interleaf index (F, N) (None: every frame acquires all I)."""
    if arms is None:
        return np.tile(np.arange(n_interleaves, dtype=np.int64), (n_frames, 1))
    table = np.asarray(arms.cpu() if is_torch(arms) else arms)
    if table.ndim != 2 or table.shape[0] != n_frames or table.shape[1] < 1:
        raise ShapeError(f"arms: expected (F, N) = ({n_frames}, N), got {table.shape}")
    if not np.issubdtype(table.dtype, np.integer):
        raise ShapeError(f"arms: expected integer interleaf indices, got {table.dtype}")
    if table.size and (table.min() < 0 or table.max() >= n_interleaves):
        raise ShapeError(f"arms: interleaf indices must lie in 0..{n_interleaves - 1}")
    return table.astype(np.int64)


class FrameSenseOp(LinearOp):
    """The SENSE operator of an utterance whose frame t acquires interleaves ``arms[t]``.

    ``(A x)_t = F_{arms[t]} S x_t``: (F, H, W) -> (F, C, N, S), N arms per frame of S samples.
    Frames are grouped by their (sorted) interleaf set; each set has one shared
    :class:`SenseOp` on the concatenated trajectory ``traj[set]``, so a utterance of 13-arm
    frames is one batched operator and one of 2-arm frames rotating through 13 interleaves
    uses 13 plans for any number of frames.

    Args:
        traj: (I, S, 2) float interleaf table, radians/pixel in [-pi, pi).
        smaps: (C, H, W) complex coil sensitivities.
        arms: (F, N) int interleaf indices of each frame (None: every frame acquires all I
            interleaves in table order; then F is taken from ``n_frames``).
        n_frames: F when ``arms`` is None.
        device, eps, n_threads, dtype: as :class:`SenseOp`.
    """

    def __init__(
        self,
        traj: Any,
        smaps: Any,
        arms: Any = None,
        *,
        n_frames: int | None = None,
        device: Any = "cpu",
        eps: float | None = None,
        n_threads: int | None = None,
        dtype: Any = torch.complex64,
        _coils: CoilOp | None = None,
        _sets: dict[tuple[int, ...], SenseOp] | None = None,
    ) -> None:
        table = np.asarray(traj.detach().cpu() if is_torch(traj) else traj)
        if table.ndim != 3 or table.shape[-1] != 2 or min(table.shape) < 1:
            raise ShapeError(f"traj: expected an interleaf table (I, S, 2), got {table.shape}")
        check_traj(table)
        self.traj = table
        self.n_interleaves, self.n_samples = int(table.shape[0]), int(table.shape[1])
        if arms is None and n_frames is None:
            raise ShapeError("FrameSenseOp: give arms (F, N) or n_frames")
        count = int(n_frames) if arms is None else int(np.shape(arms)[0])
        self.arms = arms_table(arms, count, self.n_interleaves)
        self.n_frames, self.n_arms = int(self.arms.shape[0]), int(self.arms.shape[1])
        self.dtype = complex_dtype(dtype)
        self._options = {"device": device, "eps": eps, "n_threads": n_threads}
        if _coils is None:
            shape = tuple(getattr(smaps, "shape", ()))
            if len(shape) != 3 or min(shape) < 1:
                raise ShapeError(f"smaps: expected shape (C, H, W), got {shape}")
            # The device comes from the first NUFFT (auto may fall back to the CPU).
            first = SenseOp(table[0], smaps, dtype=self.dtype, **self._options)
            _coils = first.coils
            self._options["device"] = first.device
        self.coils = _coils
        self.device = torch.device(self._options["device"])
        self._sets: dict[tuple[int, ...], SenseOp] = {} if _sets is None else _sets
        self._arm_ops: dict[int, SenseOp] = {}
        self.groups = self._group()
        self.im_shape = self.coils.ishape
        self.ishape = (self.n_frames, *self.im_shape)
        self.oshape = (self.n_frames, self.n_coils, self.n_arms, self.n_samples)

    @property
    def n_coils(self) -> int:
        """C."""
        return int(self.coils.smaps.shape[0])

    @property
    def notice(self) -> str | None:
        """The backend selection's one-line notice (a CUDA fallback), or None."""
        return next(iter(self._sets.values())).nufft.notice if self._sets else None

    def _set_op(self, key: tuple[int, ...]) -> SenseOp:
        op = self._sets.get(key)
        if op is None:
            op = SenseOp(self.traj[list(key)], self.coils, dtype=self.dtype, **self._options)
            self._sets[key] = op
        return op

    def _group(self) -> list[tuple[tuple[int, ...], np.ndarray, np.ndarray, SenseOp]]:
        """(set, frame indices, per-frame order of the set's arms, op) per interleaf set."""
        order = np.argsort(self.arms, axis=1, kind="stable")  # (F, N)
        sets = np.take_along_axis(self.arms, order, axis=1)
        if self.n_frames and np.all(sets == sets[:1]):  # one set: no gathers
            key = tuple(int(i) for i in sets[0])
            return [(key, np.arange(self.n_frames), order, self._set_op(key))]
        groups = []
        uniq, inverse = np.unique(sets, axis=0, return_inverse=True)
        for g, row in enumerate(uniq):
            idx = np.nonzero(inverse.reshape(-1) == g)[0]
            key = tuple(int(i) for i in row)
            groups.append((key, idx, order[idx], self._set_op(key)))
        return groups

    def frames(self, index: Any) -> FrameSenseOp:
        """The operator of a subset of frames (a slice or indices), sharing plans and maps."""
        sub = self.arms[index]
        return FrameSenseOp(
            self.traj,
            None,
            sub,
            dtype=self.dtype,
            _coils=self.coils,
            _sets=self._sets,
            **self._options,
        )

    # -- data layout ------------------------------------------------------------------
    def _sorted(self, y: torch.Tensor, order: np.ndarray) -> torch.Tensor:
        """(n, C, N, S) arms in acquisition slots -> the set's sorted order, (n, C, N*S)."""
        if np.all(order == np.arange(self.n_arms)):
            return y.reshape(*y.shape[:2], -1)
        index = torch.as_tensor(order, device=y.device)[:, None, :, None]  # (n, 1, N, 1)
        return torch.take_along_dim(y, index, dim=2).reshape(*y.shape[:2], -1)

    def _unsorted(self, k: torch.Tensor, order: np.ndarray) -> torch.Tensor:
        """Inverse of :meth:`_sorted`: (n, C, N*S) -> (n, C, N, S)."""
        k = k.reshape(*k.shape[:2], self.n_arms, self.n_samples)
        if np.all(order == np.arange(self.n_arms)):
            return k
        inverse = torch.as_tensor(np.argsort(order, axis=1), device=k.device)[:, None, :, None]
        return torch.take_along_dim(k, inverse, dim=2)

    def _tensor(self, data: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
        if tuple(getattr(data, "shape", ())) != shape:
            raise ShapeError(f"{what}: expected shape {shape}, got {tuple(np.shape(data))}")
        return to_tensor(data, self.dtype, self.device, what)

    # -- the operator -------------------------------------------------------------------
    def forward(self, image: Any) -> Any:
        """(F, H, W) -> (F, C, N, S) k-space of each frame's own arms."""
        x = self._tensor(image, self.ishape, "image")
        if len(self.groups) == 1:
            _, _, order, op = self.groups[0]
            return _like(self._unsorted(op.forward(x), order), image)
        out = x.new_zeros(self.oshape)
        for _, idx, order, op in self.groups:
            out[idx] = self._unsorted(op.forward(x[idx]), order)
        return _like(out, image)

    def adjoint(self, kspace: Any, weights: Any = None) -> Any:
        """(F, C, N, S) -> (F, H, W) coil-combined.

        With ``weights`` (the :class:`~sirem_cli.linop.DiagOp` of :meth:`weighting`, or its
        real (F, 1, N, S) weights) it is ``A^H (W y)``, computed without a weighted copy of y.
        """
        y = self._tensor(kspace, self.oshape, "kspace")
        w = None
        if weights is not None:
            w = weights.weights if isinstance(weights, DiagOp) else weights
            w = to_tensor(w, real_dtype(self.dtype), self.device, "weights")
            if w.ndim != 4 or w.shape[0] != self.n_frames or w.shape[2:] != y.shape[2:]:
                shape = (self.n_frames, 1, self.n_arms, self.n_samples)
                raise ShapeError(f"weights: expected {shape}, got {tuple(w.shape)}")
            w = w.expand(self.n_frames, 1, self.n_arms, self.n_samples)
        if len(self.groups) == 1:
            _, _, order, op = self.groups[0]
            ws = None if w is None else self._sorted(w, order)
            return _like(op._adjoint(self._sorted(y, order), ws), kspace)
        out = y.new_zeros(self.ishape)
        for _, idx, order, op in self.groups:
            ws = None if w is None else self._sorted(w[idx], order)
            out[idx] = op._adjoint(self._sorted(y[idx], order), ws)
        return _like(out, kspace)

    def arm_adjoint(self, kspace: Any) -> Any:
        """Per-arm coil-combined images ``B[t, j] = sum_c conj(S_c) F_{arms[t, j]}^H y[t, c, j]``.

        The adjoint of the per-arm operator (their sum over j is :meth:`adjoint`): (F, C, N, S)
        -> (F, N, H, W). One batched adjoint per interleaf over every frame that acquired it.
        """
        y = self._tensor(kspace, self.oshape, "kspace")
        out = y.new_zeros((self.n_frames, self.n_arms, *self.im_shape))
        for interleaf in np.unique(self.arms):
            op = self._arm_ops.get(int(interleaf))
            if op is None:
                op = SenseOp(
                    self.traj[int(interleaf)], self.coils, dtype=self.dtype, **self._options
                )
                self._arm_ops[int(interleaf)] = op
            frames, slots = np.nonzero(self.arms == interleaf)
            if frames.size == self.n_frames and np.all(slots == slots[0]):
                out[:, int(slots[0])] = op.adjoint(y[:, :, int(slots[0])])
                continue
            ft = torch.as_tensor(frames, device=y.device)
            st = torch.as_tensor(slots, device=y.device)
            out[ft, st] = op.adjoint(y[ft, :, st])
        return _like(out, kspace)

    def weighting(self, dcf: Any) -> DiagOp:
        """W: the density compensation of each frame's arms as a diagonal operator on
        (F, C, N, S) (weights stored (F, 1, N, S) and broadcast over coils)."""
        table = _check_dcf(dcf, self.n_interleaves, self.n_samples)
        weights = torch.as_tensor(table, dtype=real_dtype(self.dtype), device=self.device)
        per_frame = weights[torch.as_tensor(self.arms, device=self.device)]  # (F, N, S)
        op = DiagOp(per_frame.unsqueeze(1))
        op.ishape = op.oshape = self.oshape
        return op

    def normal_op(self, dcf: Any, *, fft_chunk: int = 4) -> FrameNormalOp:
        """A^H W A (block diagonal over frames) by Toeplitz embedding."""
        return FrameNormalOp(self, _check_dcf(dcf, self.n_interleaves, self.n_samples), fft_chunk)


def _check_dcf(dcf: Any, n_interleaves: int, n_samples: int) -> np.ndarray:
    arr = np.asarray(dcf.detach().cpu() if is_torch(dcf) else dcf)
    if arr.shape != (n_interleaves, n_samples) or np.iscomplexobj(arr):
        raise ShapeError(
            f"dcf: expected real ({n_interleaves}, {n_samples}) weights, got {arr.dtype} {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ShapeError("dcf: weights must be finite and non-negative")
    return arr


class FrameNormalOp(LinearOp):
    """A^H W A of a :class:`FrameSenseOp`: (F, H, W) -> (F, H, W), one Toeplitz kernel per
    interleaf set. :meth:`frames` restricts it to a block of frames (worker threads)."""

    def __init__(self, sense: FrameSenseOp, dcf: np.ndarray, fft_chunk: int = 4) -> None:
        self.sense = sense
        self.dcf = dcf
        self.fft_chunk = fft_chunk
        self.ishape = self.oshape = sense.ishape
        self._ops = {
            key: op.toeplitz(dcf[list(key)].reshape(-1), fft_chunk=fft_chunk)
            for key, _, _, op in sense.groups
        }

    def forward(self, image: Any) -> Any:
        x = self.sense._tensor(image, self.ishape, "image")
        if len(self.sense.groups) == 1:
            return _like(self._ops[self.sense.groups[0][0]].forward(x), image)
        out = torch.empty_like(x)
        for key, idx, _, _ in self.sense.groups:
            out[idx] = self._ops[key].forward(x[idx])
        return _like(out, image)

    adjoint = forward

    def normal(self, image: Any) -> Any:
        return self.forward(self.forward(image))

    def explicit(self, image: Any) -> Any:
        """The same by NUFFTs: A^H (W (A x))."""
        return self.sense.adjoint(self.sense.weighting(self.dcf).forward(self.sense.forward(image)))

    def prepare(self) -> None:
        """Build every kernel now (before worker threads use the operator)."""
        for op in self._ops.values():
            op.kernel()

    def frames(self, index: Any) -> FrameNormalOp:
        """The normal operator of a subset of frames, sharing kernels."""
        sub = FrameNormalOp.__new__(FrameNormalOp)
        sub.sense = self.sense.frames(index)
        sub.dcf, sub.fft_chunk = self.dcf, self.fft_chunk
        sub.ishape = sub.oshape = sub.sense.ishape
        sub._ops = {key: self._ops[key] for key, _, _, _ in sub.sense.groups}
        return sub

    def max_eigenvalue(self, *, iters: int = 30, seed: int = 0) -> float:
        """Largest eigenvalue over frames (the largest over interleaf sets), by power iteration."""
        from sirem_cli.linop import power_iteration

        return max(
            power_iteration(
                op.forward,
                (1, *op.ishape),
                dtype=self.sense.dtype,
                device=self.sense.device,
                iters=iters,
                seed=seed,
            )
            for op in self._ops.values()
        )
