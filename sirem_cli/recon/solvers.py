"""Iterative solvers for the regularized SENSE baselines, batched over frames.

Every solver minimizes ``f(x) + g(x)`` over a stack of frames x (F, H, W) complex with
the data term ``f(x) = 1/2 ||W^(1/2) (A x - y)||^2``, whose gradient
``A^H W A x - A^H W y`` uses the Toeplitz normal operator of
:class:`~sirem_cli.mri.sense.SenseOp` (no NUFFT inside the loop). Solvers take
callables, not classes: ``normal(x) -> A^H W A x`` and ``b = A^H W y``; the constant
``c = 1/2 ||W^(1/2) y||^2`` only shifts the reported objective.

* :func:`fista_wavelet`: ``g = lam ||Psi x||_1``, Psi an orthogonal Daubechies wavelet
  (pywt conventions, ``mode='periodization'``, full depth), FISTA (Beck & Teboulle 2009)
  with step 1/L; the ``wavelet`` method adds random cycle spinning (as BART's ``pics -R W``)
  and averages the last half of the iterates.
* :func:`pdhg_tv`: ``g = lam_s TV_iso(x) + lam_t ||D_t x||_1`` (isotropic spatial total
  variation per frame and/or the l1 norm of the temporal finite difference across
  frames), by the primal-dual method of Condat (2013) / Vu (2013): a Chambolle-Pock
  iteration whose primal step is an explicit gradient step on f.

L is the largest eigenvalue of A^H W A (:func:`sirem_cli.linop.power_iteration`, computed
once per operator). The regularizers' linear maps are :class:`~sirem_cli.linop.LinearOp`s too
(:class:`FiniteDiff2DOp`, :class:`FiniteDiffTimeOp`, :class:`WaveletOp`), checked with the
other operators in ``tests/test_operators.py``. Every method of
:mod:`sirem_cli.recon.registry` has an entry point here with one common signature
(:func:`wavelet_solver`, :func:`tv_solver`, :func:`ttv_solver`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sirem_cli.errors import ShapeError
from sirem_cli.linop import LinearOp

NormalFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int], None]


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes:
        x: (F, H, W) complex solution.
        objective: the objective after each iteration (empty unless tracked).
        iters: iterations run.
        lipschitz: the L used for the steps.
    """

    x: torch.Tensor
    objective: list[float] = field(default_factory=list)
    iters: int = 0
    lipschitz: float = 0.0


# -- wavelets -----------------------------------------------------------------------------
def _dwt_matrices(n: int, wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    """One periodized DWT level of length n as matrices (exactly pywt's).

    Returns:
        analysis (2c, n): rows = [lowpass; highpass] coefficients, c = ceil(n / 2);
        synthesis (n, 2c): pywt.idwt cropped to n (a left inverse of the analysis; the
        transpose of an orthogonal analysis when n is even).
    """
    import pywt

    eye = np.eye(n)
    lo, hi = pywt.dwt(eye, wavelet, mode="periodization", axis=0)
    analysis = np.concatenate([lo, hi], axis=0)
    c = lo.shape[0]
    eye2 = np.eye(2 * c)
    synthesis = pywt.idwt(eye2[:c], eye2[c:], wavelet, mode="periodization", axis=0)[:n]
    return analysis, synthesis


class Wavelet2D:
    """Batched 2D discrete wavelet transform (pywt ``wavedec2``, periodization) in torch.

    Each level is a pair of small dense matrix products ``Y = A_h X A_w^T`` on the
    current lowpass band, so a whole utterance is transformed by a few GEMMs. The
    coefficients of a level are kept as one array ``Y_j`` of shape (B, 2c_h, 2c_w)
    whose top-left (c_h, c_w) block is the lowpass band that the next level
    decomposes; ``Y_j[..., c_h:, :c_w]``, ``[..., :c_h, c_w:]`` and ``[..., c_h:, c_w:]``
    equal pywt's detail bands (cH, cV, cD) of that level. For even band sizes the
    transform is orthogonal; an odd size (84 -> 42 -> 21 at the 3rd db4 level) adds
    one coefficient per axis and the synthesis is pywt's left inverse.

    Args:
        im_shape: (H, W).
        wavelet: pywt wavelet name (default ``"db4"``).
        level: number of levels; None is full depth, ``pywt.dwt_max_level``.
        device: torch device.
        dtype: real dtype of the matrices (float32 or float64).
    """

    def __init__(
        self,
        im_shape: tuple[int, int],
        wavelet: str = "db4",
        level: int | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        import pywt

        h, w = (int(n) for n in im_shape)
        try:
            filt = pywt.Wavelet(wavelet).dec_len
        except ValueError:
            raise ShapeError(f"wavelet: unknown pywt wavelet {wavelet!r}") from None
        max_level = pywt.dwt_max_level(min(h, w), filt)
        if level is None:
            level = max_level
        if not 1 <= level <= max(1, max_level):
            raise ShapeError(f"level: expected 1..{max(1, max_level)} for {h}x{w}, got {level}")
        self.im_shape = (h, w)
        self.wavelet = wavelet
        self.level = int(level)
        self._mats: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.band_shapes: list[tuple[int, int]] = []
        for _ in range(self.level):
            ah, sh = _dwt_matrices(h, wavelet)
            aw, sw = _dwt_matrices(w, wavelet)
            mats = [torch.as_tensor(m, dtype=dtype, device=device) for m in (ah, sh, aw, sw)]
            self._mats.append((mats[0], mats[1], mats[2].T.contiguous(), mats[3].T.contiguous()))
            self.band_shapes.append((ah.shape[0] // 2, aw.shape[0] // 2))
            h, w = self.band_shapes[-1]

    @staticmethod
    def _apply(left: torch.Tensor, x: torch.Tensor, right_t: torch.Tensor) -> torch.Tensor:
        """left @ x @ right_t for a real batch x (B, n, m)."""
        y = torch.matmul(x.reshape(-1, x.shape[-1]), right_t).reshape(*x.shape[:-1], -1)
        return torch.matmul(left, y)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Analysis of a real batch (B, H, W) -> per-level arrays [Y_1, ..., Y_level].

        Complex images are handled as a real batch of real and imaginary parts
        (:func:`complex_to_real`).
        """
        coeffs = []
        band = x
        for (ah, _, aw_t, _), (ch, cw) in zip(self._mats, self.band_shapes, strict=True):
            y = self._apply(ah, band, aw_t)
            coeffs.append(y)
            band = y[..., :ch, :cw]
        return coeffs

    def inverse(self, coeffs: list[torch.Tensor]) -> torch.Tensor:
        """Synthesis: per-level arrays -> real batch (B, H, W). Modifies ``coeffs``."""
        band = None
        for j in range(self.level - 1, -1, -1):
            _, sh, _, sw_t = self._mats[j]
            y = coeffs[j]
            if band is not None:
                ch, cw = self.band_shapes[j]
                y[..., :ch, :cw] = band
            band = self._apply(sh, y, sw_t)
        assert band is not None
        return band

    def detail_masks(self) -> list[torch.Tensor]:
        """Per level, a bool mask of the entries that are coefficients (not a lowpass
        band decomposed further); the last level is all coefficients."""
        masks = []
        for j, (ch, cw) in enumerate(self.band_shapes):
            mask = torch.ones((2 * ch, 2 * cw), dtype=torch.bool, device=self._mats[j][0].device)
            if j < self.level - 1:
                mask[:ch, :cw] = False
            masks.append(mask)
        return masks


def complex_to_real(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) complex -> (2B, H, W) real: real parts then imaginary parts."""
    return torch.cat([x.real, x.imag], dim=0)


def real_to_complex(x: torch.Tensor) -> torch.Tensor:
    """(2B, H, W) real -> (B, H, W) complex (inverse of :func:`complex_to_real`)."""
    b = x.shape[0] // 2
    return torch.complex(x[:b], x[b:])


def _complex_magnitude(y: torch.Tensor) -> torch.Tensor:
    b = y.shape[0] // 2
    return torch.hypot(y[:b], y[b:])


def _soft_threshold_(coeffs: list[torch.Tensor], tau: float) -> None:
    """Complex soft thresholding in place on real-stacked coefficient arrays."""
    for y in coeffs:
        pair = y.view(2, y.shape[0] // 2, *y.shape[1:])  # (re/im, B, n, m)
        scale = torch.hypot(pair[0], pair[1]).clamp_min_(1e-30)
        scale.reciprocal_().mul_(-tau).add_(1).clamp_min_(0)  # max(1 - tau / |y|, 0)
        pair.mul_(scale)


def wavelet_l1(psi: Wavelet2D, x: torch.Tensor, *, shift_invariant: bool = False) -> torch.Tensor:
    """||Psi x||_1 per frame of a complex batch (F, H, W) -> (F,) real.

    ``shift_invariant``: the mean over every circular shift (0..2^level - 1 per axis) of
    ``||Psi S x||_1``, the regularizer that FISTA with cycle spinning works on.
    """
    if shift_invariant:
        span = 2**psi.level
        total = sum(
            wavelet_l1(psi, torch.roll(x, (sy, sx), dims=(-2, -1)))
            for sy in range(span)
            for sx in range(span)
        )
        return total / span**2
    coeffs = psi.forward(complex_to_real(x))
    total = torch.zeros(x.shape[0], dtype=coeffs[0].dtype, device=x.device)
    for y, mask in zip(coeffs, psi.detail_masks(), strict=True):
        total += (_complex_magnitude(y) * mask).sum(dim=(-2, -1))
    return total


def _data_term(x: torch.Tensor, nx: torch.Tensor, b: torch.Tensor, const: float) -> float:
    """1/2 <x, N x> - Re <x, b> + c, the data term for a known N x."""
    quad = 0.5 * torch.vdot(x.reshape(-1), nx.reshape(-1)).real
    lin = torch.vdot(x.reshape(-1), b.reshape(-1)).real
    return float(quad - lin) + const


def fista_wavelet(
    normal: NormalFn,
    b: torch.Tensor,
    lam: float,
    *,
    lipschitz: float,
    iters: int = 100,
    wavelet: str = "db4",
    level: int | None = None,
    cycle_spin: bool = False,
    seed: int = 0,
    data_const: float = 0.0,
    track_objective: bool = False,
    progress: ProgressFn | None = None,
) -> SolverResult:
    """FISTA for ``min_x 1/2 ||W^(1/2)(A x - y)||^2 + lam ||Psi x||_1``.

    With ``cycle_spin`` each iteration thresholds the wavelet coefficients of the image
    circularly shifted by a random (dy, dx) in [0, 2^level)^2 and shifts back, as BART's
    ``pics -R W`` does: the regularizer becomes shift invariant on average (the mean of
    ``||Psi S x||_1`` over shifts), which removes the blocky artefacts of a decimated
    wavelet. The iteration is then a stochastic proximal-gradient method, so the result is
    the mean of the last ``ceil(iters / 2)`` iterates (Polyak-Ruppert averaging), which
    removes the jitter the shifts leave in single iterates. The shifts come from ``seed``:
    the result is deterministic and the same for any split of the frames into blocks.

    Args:
        normal: x (F, H, W) -> A^H W A x.
        b: (F, H, W) complex, A^H W y.
        lam: regularization weight in the units of the objective (> 0).
        lipschitz: L >= the largest eigenvalue of A^H W A; the step is 1/L.
        iters: iterations.
        wavelet, level: the transform (default full-depth db4).
        cycle_spin: random shifts and tail averaging (see above); False is plain FISTA.
        seed: the shifts' random seed.
        data_const: 1/2 ||W^(1/2) y||^2, added to the reported objective.
        track_objective: evaluate the objective of the current iterate after every iteration
            (one extra normal-operator application each; with ``cycle_spin`` the
            regularizer is the shift-invariant one, 4^level wavelet transforms).
        progress: called with the iteration number (1-based) after each iteration.

    Returns:
        :class:`SolverResult`.
    """
    if b.ndim != 3 or not b.is_complex():
        raise ShapeError(f"b: expected a complex (F, H, W) tensor, got {tuple(b.shape)} {b.dtype}")
    real = b.real.dtype
    psi = Wavelet2D(tuple(b.shape[-2:]), wavelet, level, device=b.device, dtype=real)
    step = 1.0 / lipschitz
    x = torch.zeros_like(b)
    z = x.clone()
    t = 1.0
    rng = np.random.default_rng(seed) if cycle_spin else None
    span = 2**psi.level
    first_averaged = iters // 2  # iterates first_averaged..iters-1 (ceil(iters / 2) of them)
    total: torch.Tensor | None = None
    result = SolverResult(x=x, lipschitz=lipschitz)
    for it in range(iters):
        grad = normal(z) - b  # (normal may return its input: never update it in place)
        v = torch.add(z, grad, alpha=-step)
        if rng is not None:
            dy, dx = (int(d) for d in rng.integers(0, span, size=2))
            v = torch.roll(v, (dy, dx), dims=(-2, -1))
        coeffs = psi.forward(complex_to_real(v))
        _soft_threshold_(coeffs, step * lam)
        x_new = real_to_complex(psi.inverse(coeffs))
        if rng is not None:
            x_new = torch.roll(x_new, (-dy, -dx), dims=(-2, -1))
            if it >= first_averaged:
                total = x_new.clone() if total is None else total.add_(x_new)
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        z = torch.add(x_new, x_new - x, alpha=(t - 1) / t_new)
        x, t = x_new, t_new
        if track_objective:
            reg = wavelet_l1(psi, x, shift_invariant=cycle_spin)
            obj = _data_term(x, normal(x), b, data_const) + lam * float(reg.sum())
            result.objective.append(obj)
        if progress is not None:
            progress(it + 1)
    result.x = x if total is None else total / (iters - first_averaged)
    result.iters = iters
    return result


# -- total variation ----------------------------------------------------------------------
def grad2d(x: torch.Tensor) -> torch.Tensor:
    """Forward differences along rows and columns, zero at the far edge.

    (F, H, W) -> (2, F, H, W).
    """
    g = torch.zeros((2, *x.shape), dtype=x.dtype, device=x.device)
    g[0, :, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    g[1, :, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return g


def grad2d_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`grad2d` (minus the divergence): (2, F, H, W) -> (F, H, W)."""
    gr, gc = g[0], g[1]
    out = torch.zeros(gr.shape, dtype=g.dtype, device=g.device)
    out[:, :-1, :] -= gr[:, :-1, :]
    out[:, 1:, :] += gr[:, :-1, :]
    out[:, :, :-1] -= gc[:, :, :-1]
    out[:, :, 1:] += gc[:, :, :-1]
    return out


def _add_grad2d_(u: torch.Tensor, x: torch.Tensor, scale: float) -> None:
    """u += scale * grad2d(x) in place, u (2, F, H, W)."""
    u[0, :, :-1, :].add_(x[:, 1:, :] - x[:, :-1, :], alpha=scale)
    u[1, :, :, :-1].add_(x[:, :, 1:] - x[:, :, :-1], alpha=scale)


def _add_grad2d_adjoint_(out: torch.Tensor, g: torch.Tensor) -> None:
    """out += grad2d_adjoint(g) in place, out (F, H, W)."""
    out[:, :-1, :] -= g[0, :, :-1, :]
    out[:, 1:, :] += g[0, :, :-1, :]
    out[:, :, :-1] -= g[1, :, :, :-1]
    out[:, :, 1:] += g[1, :, :, :-1]


def _abs2(z: torch.Tensor) -> torch.Tensor:
    """|z|^2 of a complex tensor without the square root."""
    return torch.view_as_real(z).square().sum(dim=-1)


def grad_time(x: torch.Tensor) -> torch.Tensor:
    """Forward difference across frames: (F, H, W) -> (F - 1, H, W)."""
    return x[1:] - x[:-1]


def grad_time_adjoint(g: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Adjoint of :func:`grad_time`: (F - 1, H, W) -> (F, H, W)."""
    out = torch.zeros((n_frames, *g.shape[1:]), dtype=g.dtype, device=g.device)
    out[:-1] -= g
    out[1:] += g
    return out


def tv_iso(x: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation per frame: sum_r sqrt(|d_r x|^2 + |d_c x|^2) -> (F,)."""
    g = grad2d(x)
    return torch.sqrt((g.abs() ** 2).sum(dim=0)).sum(dim=(-2, -1))


def tv_time(x: torch.Tensor) -> torch.Tensor:
    """sum |x[f+1] - x[f]| over frames and pixels (a scalar tensor)."""
    return grad_time(x).abs().sum()


def pdhg_tv(
    normal: NormalFn,
    b: torch.Tensor,
    *,
    lam_spatial: float,
    lam_time: float = 0.0,
    lipschitz: float,
    iters: int = 100,
    balance: float = 1.0,
    data_const: float = 0.0,
    track_objective: bool = False,
    progress: ProgressFn | None = None,
    x0: torch.Tensor | None = None,
    time_weight: torch.Tensor | None = None,
) -> SolverResult:
    """Condat-Vu primal-dual for ``f(x) + lam_s TV_iso(x) + lam_t ||w (.) D_t x||_1``.

    Iteration (K = [grad2d; grad_time], dual u in the product of the two l_inf balls)::

        x+ = x - tau (A^H W A x - b + K^H u)
        u+ = proj_{|u_s| <= lam_s, |u_t| <= lam_t}(u + sigma K (2 x+ - x))

    with ``tau = 0.99 / (L/2 + sigma ||K||^2)``, ``sigma ||K||^2 = balance * L / 2``,
    ``||K||^2 <= 8 [spatial] + 4 [temporal]``, which satisfies the convergence
    condition ``1/tau - sigma ||K||^2 >= L/2``.

    Args:
        normal: x (F, H, W) -> A^H W A x.
        b: (F, H, W) complex, A^H W y.
        lam_spatial: isotropic TV weight (>= 0), objective units.
        lam_time: temporal finite-difference weight (>= 0).
        lipschitz: L >= the largest eigenvalue of A^H W A.
        iters: iterations.
        balance: ratio of dual to primal step scale (1 is a good default).
        data_const: 1/2 ||W^(1/2) y||^2 for the reported objective.
        track_objective: evaluate the objective after every iteration.
        progress: called with the iteration number after each iteration.
        x0: (F, H, W) starting point (None: zeros); the dual variables start at zero.
        time_weight: w, real > 0, (H, W) or (F - 1, H, W): a per-pixel weight of the
            temporal differences (None: 1; the dual's bound becomes ``lam_t w``).

    Returns:
        :class:`SolverResult`.
    """
    if b.ndim != 3 or not b.is_complex():
        raise ShapeError(f"b: expected a complex (F, H, W) tensor, got {tuple(b.shape)} {b.dtype}")
    if x0 is not None and tuple(x0.shape) != tuple(b.shape):
        raise ShapeError(f"x0: expected shape {tuple(b.shape)}, got {tuple(x0.shape)}")
    if lam_spatial < 0 or lam_time < 0 or lam_spatial + lam_time <= 0:
        raise ShapeError("pdhg_tv: needs lam_spatial >= 0, lam_time >= 0, and one of them > 0")
    n_frames = b.shape[0]
    use_s = lam_spatial > 0
    use_t = lam_time > 0 and n_frames > 1
    norm_k2 = (8.0 if use_s else 0.0) + (4.0 if use_t else 0.0)
    if norm_k2 == 0.0:  # temporal term only, on a single frame: nothing to regularize
        norm_k2 = 4.0
    sigma = balance * lipschitz / 2 / norm_k2
    tau = 0.99 / (lipschitz / 2 + sigma * norm_k2)
    x = torch.zeros_like(b) if x0 is None else x0.to(device=b.device, dtype=b.dtype).clone()
    u_s = torch.zeros((2, *b.shape), dtype=b.dtype, device=b.device) if use_s else None
    u_t = (
        torch.zeros((n_frames - 1, *b.shape[1:]), dtype=b.dtype, device=b.device) if use_t else None
    )
    t_bound: float | torch.Tensor = lam_time
    if time_weight is not None:
        t_bound = _time_bound(time_weight, lam_time, b)
    result = SolverResult(x=x, lipschitz=lipschitz)
    for it in range(iters):
        direction = normal(x) - b
        if u_s is not None:
            _add_grad2d_adjoint_(direction, u_s)
        if u_t is not None:
            direction[:-1] -= u_t
            direction[1:] += u_t
        x_new = torch.add(x, direction, alpha=-tau)
        x_bar = 2 * x_new - x
        if u_s is not None:
            _add_grad2d_(u_s, x_bar, sigma)
            shrink = _abs2(u_s).sum(dim=0).sqrt_().div_(lam_spatial).clamp_min_(1.0)
            u_s /= shrink
        if u_t is not None:
            u_t.add_(x_bar[1:] - x_bar[:-1], alpha=sigma)
            u_t /= _abs2(u_t).sqrt_().div_(t_bound).clamp_min_(1.0)
        x = x_new
        if track_objective:
            obj = _data_term(x, normal(x), b, data_const)
            if lam_spatial > 0:
                obj += lam_spatial * float(tv_iso(x).sum())
            if lam_time > 0 and n_frames > 1:
                if time_weight is None:
                    obj += lam_time * float(tv_time(x))
                else:
                    obj += float((grad_time(x).abs() * t_bound).sum())
            result.objective.append(obj)
        if progress is not None:
            progress(it + 1)
    result.x = x
    result.iters = iters
    return result


def _time_bound(weight: torch.Tensor, lam_time: float, b: torch.Tensor) -> torch.Tensor:
    """lam_t * w as a real tensor broadcasting over the F - 1 temporal differences."""
    w = torch.as_tensor(weight)
    if w.is_complex() or w.shape not in (b.shape[-2:], (b.shape[0] - 1, *b.shape[-2:])):
        raise ShapeError(
            f"time_weight: expected a real (H, W) or (F - 1, H, W) tensor, got {tuple(w.shape)}"
        )
    w = w.to(device=b.device, dtype=b.real.dtype)
    if not bool(torch.isfinite(w).all()) or float(w.min()) <= 0:
        raise ShapeError("time_weight: values must be finite and > 0")
    return lam_time * w


# -- the regularizers' linear maps as operators ---------------------------------------------
class FiniteDiff2DOp(LinearOp):
    """Spatial forward differences :func:`grad2d`: (F, H, W) -> (2, F, H, W)."""

    def __init__(self, n_frames: int, im_shape: tuple[int, int]) -> None:
        self.ishape = (int(n_frames), *im_shape)
        self.oshape = (2, *self.ishape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return grad2d(x)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        self.check_output(g)
        return grad2d_adjoint(g)


class FiniteDiffTimeOp(LinearOp):
    """Temporal forward difference :func:`grad_time`: (F, H, W) -> (F - 1, H, W)."""

    def __init__(self, n_frames: int, im_shape: tuple[int, int]) -> None:
        self.ishape = (int(n_frames), *im_shape)
        self.oshape = (int(n_frames) - 1, *im_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return grad_time(x)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        self.check_output(g)
        return grad_time_adjoint(g, self.ishape[0])


class WaveletOp(LinearOp):
    """Psi: complex images (..., H, W) -> their 2D wavelet coefficients (..., M).

    The analysis of :class:`Wavelet2D` (pywt ``wavedec2``, periodization); the M outputs are
    the detail bands of every level and the last lowpass band, level by level, so the operator
    is complex-linear and ``adjoint`` is its exact transpose (the synthesis equals it only
    where every band size is even, where the transform is orthogonal).
    """

    def __init__(
        self,
        im_shape: tuple[int, int],
        wavelet: str = "db4",
        level: int | None = None,
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.psi = Wavelet2D(im_shape, wavelet, level, dtype=dtype)
        self.ishape = tuple(int(n) for n in im_shape)
        self._masks = self.psi.detail_masks()
        self.oshape = (int(sum(int(m.sum()) for m in self._masks)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        flat = x.reshape(-1, *self.ishape)
        coeffs = self.psi.forward(complex_to_real(flat))
        real = torch.cat([c[:, m] for c, m in zip(coeffs, self._masks, strict=True)], dim=1)
        n = flat.shape[0]
        return torch.complex(real[:n], real[n:]).reshape(*x.shape[:-2], -1)  # (..., M)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self.check_output(y)
        flat = y.reshape(-1, self.oshape[0])
        real = torch.cat([flat.real, flat.imag], dim=0)  # (2B, M)
        grads, start = [], 0
        for mask in self._masks:
            g = real.new_zeros((real.shape[0], *mask.shape))
            size = int(mask.sum())
            g[:, mask] = real[:, start : start + size]
            grads.append(g)
            start += size
        band = None
        for j in range(self.psi.level - 1, -1, -1):
            ah, _, aw_t, _ = self.psi._mats[j]
            g = grads[j]
            if band is not None:
                ch, cw = self.psi.band_shapes[j]
                g[:, :ch, :cw] += band
            band = Wavelet2D._apply(ah.T, g, aw_t.T)  # transpose of one analysis level
        assert band is not None
        return real_to_complex(band).reshape(*y.shape[:-1], *self.ishape)


# -- entry points of the registry's methods (one signature) ---------------------------------
def wavelet_solver(
    normal: NormalFn,
    b: torch.Tensor,
    *,
    lam: float,
    lam_spatial: float = 0.0,
    lipschitz: float,
    iters: int,
    data_const: float = 0.0,
    track_objective: bool = False,
    progress: ProgressFn | None = None,
) -> SolverResult:
    """``wavelet``: :func:`fista_wavelet` with weight ``lam`` and cycle spinning
    (``lam_spatial`` unused)."""
    return fista_wavelet(
        normal,
        b,
        lam,
        lipschitz=lipschitz,
        iters=iters,
        cycle_spin=True,
        data_const=data_const,
        track_objective=track_objective,
        progress=progress,
    )


def tv_solver(
    normal: NormalFn,
    b: torch.Tensor,
    *,
    lam: float,
    lam_spatial: float = 0.0,
    lipschitz: float,
    iters: int,
    data_const: float = 0.0,
    track_objective: bool = False,
    progress: ProgressFn | None = None,
) -> SolverResult:
    """``tv``: :func:`pdhg_tv` with spatial weight ``lam`` (``lam_spatial`` unused)."""
    return pdhg_tv(
        normal,
        b,
        lam_spatial=lam,
        lipschitz=lipschitz,
        iters=iters,
        data_const=data_const,
        track_objective=track_objective,
        progress=progress,
    )


def ttv_solver(
    normal: NormalFn,
    b: torch.Tensor,
    *,
    lam: float,
    lam_spatial: float = 0.0,
    lipschitz: float,
    iters: int,
    data_const: float = 0.0,
    track_objective: bool = False,
    progress: ProgressFn | None = None,
) -> SolverResult:
    """``ttv``: :func:`pdhg_tv` with temporal weight ``lam`` and spatial weight ``lam_spatial``."""
    return pdhg_tv(
        normal,
        b,
        lam_spatial=lam_spatial,
        lam_time=lam,
        lipschitz=lipschitz,
        iters=iters,
        data_const=data_const,
        track_objective=track_objective,
        progress=progress,
    )
