"""SENSE-NUFFT operator for a batch of frames sharing one trajectory.

``A = NUFFT o S``: an image x (H, W) is weighted by each coil sensitivity S_c and
transformed to the K spiral samples of that coil, so A maps (F, H, W) to (F, C, K).
The data weighting W is the density compensation (``weights``, (K,)); the solvers use
the normal operator ``A^H W A`` and the weighted adjoint ``A^H W y``.

The normal operator has a cheap exact form (Toeplitz embedding): for one coil,
``(F^H W F x)[r] = sum_r' p(r - r') x[r']`` with the point-spread function
``p(d) = sum_k w_k exp(+i k.d)``, d in (-H, H) x (-W, W). p is one type-1 NUFFT of the
weights onto the 2H x 2W grid; its FFT (real, as p is Hermitian) is computed once per
trajectory, after which ``A^H W A x = sum_c conj(S_c) crop(IFFT(P_hat FFT(pad(S_c x))))``
costs two FFTs on the 2x grid per coil-frame and no NUFFT.

Everything runs in torch on the NUFFT's device; numpy inputs come back as numpy.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

from sirem_cli.errors import ShapeError
from sirem_cli.nufft import NufftOp, make_nufft
from sirem_cli.nufft.base import check_traj, is_torch

_CDTYPES = {
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    torch.complex64: torch.complex64,
    torch.complex128: torch.complex128,
    np.complex64: torch.complex64,
    np.complex128: torch.complex128,
}


def _real_dtype(cdtype: torch.dtype) -> torch.dtype:
    return torch.float32 if cdtype == torch.complex64 else torch.float64


def _to_tensor(data: Any, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
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
        on the CPU than einsum or a broadcast product and sum.)
    """
    if out is None:
        out = coil_images[..., 0, :, :] * smaps_conj[0]
    else:
        torch.mul(coil_images[..., 0, :, :], smaps_conj[0], out=out)
    for c in range(1, smaps_conj.shape[0]):
        out.addcmul_(coil_images[..., c, :, :], smaps_conj[c])
    return out


class SenseOp:
    """The SENSE-NUFFT operator A with data weights W (the DCF).

    Args:
        traj: (A, S, 2) or (K, 2) float radians/pixel in [-pi, pi).
        dcf: (A, S) or (K,) real non-negative density compensation: the data weights W.
        smaps: (C, H, W) complex coil sensitivities.
        device: ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a torch.device.
        eps: NUFFT accuracy (None: 1e-4 for complex64, 1e-9 for complex128).
        n_threads: finufft threads (None: chosen per batch).
        dtype: computation dtype, ``torch.complex64`` (default) or ``torch.complex128``.
        nufft: an existing NufftOp for ``traj`` and (H, W) to reuse (then ``device``,
            ``eps`` and ``n_threads`` are taken from it).
        fft_chunk: frames per block in the Toeplitz normal operator (bounds its
            temporary memory to about ``fft_chunk * C * 4 H W`` complex values).

    Attributes:
        nufft: the (H, W) NufftOp.
        smaps: (C, H, W) tensor of ``dtype``.
        weights: (K,) real tensor, the DCF.
        device: torch.device of every tensor.
    """

    def __init__(
        self,
        traj: Any,
        dcf: Any,
        smaps: Any,
        *,
        device: Any = "cpu",
        eps: float | None = None,
        n_threads: int | None = None,
        dtype: Any = torch.complex64,
        nufft: NufftOp | None = None,
        fft_chunk: int = 4,
    ) -> None:
        if dtype not in _CDTYPES:
            raise ShapeError(f"dtype: expected complex64 or complex128, got {dtype}")
        self.dtype = _CDTYPES[dtype]
        self.real_dtype = _real_dtype(self.dtype)
        pts = check_traj(traj)
        shape = tuple(getattr(smaps, "shape", ()))
        if len(shape) != 3 or min(shape) < 1:
            raise ShapeError(f"smaps: expected shape (C, H, W), got {shape}")
        self.im_shape = (int(shape[1]), int(shape[2]))
        if nufft is None:
            nufft = make_nufft(pts, self.im_shape, device=device, eps=eps, n_threads=n_threads)
        elif nufft.im_shape != self.im_shape or nufft.n_points != pts.shape[0]:
            raise ShapeError(
                f"nufft: built for K={nufft.n_points}, {nufft.im_shape}; "
                f"expected K={pts.shape[0]}, {self.im_shape}"
            )
        self.nufft = nufft
        self.traj = pts
        self.device = torch.device(nufft.device)
        self.smaps = _to_tensor(smaps, self.dtype, self.device, "smaps").contiguous()
        if not torch.all(torch.isfinite(torch.view_as_real(self.smaps))):
            raise ShapeError("smaps: contains NaN or infinite values")
        dcf_arr = np.asarray(dcf.detach().cpu() if is_torch(dcf) else dcf)
        if np.iscomplexobj(dcf_arr) or dcf_arr.size != pts.shape[0]:
            raise ShapeError(f"dcf: expected {pts.shape[0]} real weights, got {dcf_arr.shape}")
        dcf_arr = dcf_arr.reshape(-1).astype(np.float64)
        if not np.all(np.isfinite(dcf_arr)) or np.any(dcf_arr < 0):
            raise ShapeError("dcf: weights must be finite and non-negative")
        self.weights = torch.as_tensor(dcf_arr, dtype=self.real_dtype, device=self.device)
        self.fft_chunk = max(1, int(fft_chunk))
        self._kernel: torch.Tensor | None = None
        self._local = threading.local()  # per-thread scratch (the padded 2x grid)
        self._kernel_pairs: torch.Tensor | None = None
        self._smaps_conj = self.smaps.conj().resolve_conj()

    # -- shapes -----------------------------------------------------------------------
    @property
    def n_coils(self) -> int:
        """C."""
        return int(self.smaps.shape[0])

    @property
    def n_points(self) -> int:
        """K = A * S samples per coil and frame."""
        return self.nufft.n_points

    def _check(self, data: Any, tail: tuple[int, ...], what: str) -> torch.Tensor:
        shape = tuple(data.shape)
        if len(shape) < len(tail) or shape[-len(tail) :] != tail:
            raise ShapeError(
                f"{what}: expected shape (..., {', '.join(map(str, tail))}), got {shape}"
            )
        return _to_tensor(data, self.dtype, self.device, what)

    # -- operators --------------------------------------------------------------------
    def forward(self, image: Any) -> Any:
        """y = A x.

        Args:
            image: (..., H, W) complex (e.g. (F, H, W)).

        Returns:
            (..., C, K) k-space, the op's dtype; numpy if the input was numpy.
        """
        x = self._check(image, self.im_shape, "image")
        coil_images = x.unsqueeze(-3) * self.smaps  # (..., C, H, W)
        return _like(self.nufft.forward(coil_images), image)

    def adjoint(self, kspace: Any, *, weighted: bool = False) -> Any:
        """x = A^H y (or A^H W y with ``weighted=True``).

        Args:
            kspace: (..., C, K) complex.
            weighted: multiply by the data weights W first.

        Returns:
            (..., H, W) coil-combined image.
        """
        y = self._check(kspace, (self.n_coils, self.n_points), "kspace")
        if weighted:
            y = y * self.weights
        coil_images = self.nufft.adjoint(y)  # (..., C, H, W)
        return _like(coil_combine(coil_images, self._smaps_conj), kspace)

    def normal(self, image: Any, *, toeplitz: bool = True) -> Any:
        """A^H W A x, by Toeplitz embedding (default) or by explicit NUFFTs.

        Args:
            image: (..., H, W) complex.
            toeplitz: use the precomputed 2x-grid kernel (fast); False runs a forward
                and an adjoint NUFFT.

        Returns:
            (..., H, W).
        """
        x = self._check(image, self.im_shape, "image")
        if not toeplitz:
            y = self.nufft.forward(x.unsqueeze(-3) * self.smaps) * self.weights
            coil_images = self.nufft.adjoint(y)
            return _like(coil_combine(coil_images, self._smaps_conj), image)
        lead = x.shape[:-2]
        flat = x.reshape(-1, *self.im_shape)
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], self.fft_chunk):
            stop = min(start + self.fft_chunk, flat.shape[0])
            self._normal_block(flat[start:stop], out[start:stop])
        return _like(out.reshape(*lead, *self.im_shape), image)

    # -- Toeplitz -------------------------------------------------------------------
    def toeplitz_kernel(self) -> torch.Tensor:
        """The FFT of the weighted point-spread function on the 2H x 2W grid.

        Built once per operator with one type-1 NUFFT (at the op's accuracy, in
        complex128 for a complex128 op).

        Returns:
            (2H, 2W) real tensor P_hat with ``F^H W F x = crop(IFFT(P_hat FFT(pad x)))``.
        """
        if self._kernel is None:
            h, w = self.im_shape
            psf_op = make_nufft(
                self.traj,
                (2 * h, 2 * w),
                device=self.device,
                eps=self.nufft.eps,
                n_threads=self.nufft.n_threads,
            )
            psf = psf_op.adjoint(self.weights.to(self.dtype))  # (2H, 2W), d = -H .. H-1
            # d = -H (row) and -W (column) never reach the cropped result; zero them so
            # the sequence is Hermitian and its FFT real.
            psf[0, :] = 0
            psf[:, 0] = 0
            psf = torch.fft.ifftshift(psf, dim=(-2, -1))  # index d mod 2H
            self._kernel = torch.fft.fft2(psf).real.contiguous()
        return self._kernel

    def _normal_block(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Toeplitz A^H W A for a block (B, H, W), written into ``out`` (B, H, W)."""
        h, w = self.im_shape
        n_block = x.shape[0]
        pad = self._pad_buffer(n_block)  # (B, C, 2H, 2W), zero outside [:H, :W]
        torch.mul(x.unsqueeze(1), self.smaps, out=pad[..., :h, :w])
        spec = torch.fft.fft2(pad)
        torch.view_as_real(spec).mul_(self._toeplitz_pairs())
        conv = torch.fft.ifft2(spec)[..., :h, :w]  # (B, C, H, W)
        conv *= self._smaps_conj
        return torch.sum(conv, dim=1, out=out)

    def _toeplitz_pairs(self) -> torch.Tensor:
        """The kernel repeated for (real, imag): (2H, 2W, 2), built once."""
        if self._kernel_pairs is None:
            self._kernel_pairs = self.toeplitz_kernel().unsqueeze(-1).repeat(1, 1, 2).contiguous()
        return self._kernel_pairs

    def prepare_normal(self) -> None:
        """Build the Toeplitz kernel now (call before using :meth:`normal` from threads;
        each thread then keeps its own scratch buffer)."""
        self._toeplitz_pairs()

    def _pad_buffer(self, n_block: int) -> torch.Tensor:
        h, w = self.im_shape
        buf = getattr(self._local, "pad", None)
        if buf is None or buf.shape[0] < n_block:
            buf = torch.zeros(
                (n_block, self.n_coils, 2 * h, 2 * w), dtype=self.dtype, device=self.device
            )
            self._local.pad = buf
        return buf[:n_block]

    def max_eigenvalue(self, *, iters: int = 30, seed: int = 0) -> float:
        """Largest eigenvalue of A^H W A by power iteration (Toeplitz normal operator).

        Args:
            iters: power iterations.
            seed: random start.

        Returns:
            The estimate (a lower bound that converges from below), in the data's
            units squared.
        """
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((*self.im_shape, 2), generator=gen, dtype=self.real_dtype)
        x = torch.view_as_complex(x).to(self.device).unsqueeze(0)
        x = x / torch.linalg.vector_norm(x)
        lam = 0.0
        for _ in range(max(1, iters)):
            y = self.normal(x)
            lam = float(torch.linalg.vector_norm(y))
            if lam == 0.0:
                return 0.0
            x = y / lam
        return lam
