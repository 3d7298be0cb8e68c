"""Data-consistent reconstruction with an image prior (PICCS-style), on the TV primal-dual solver.

Per utterance of F frames (each with its own interleaves), the solve is::

    x = argmin_x 1/2 ||W^(1/2)(A x - y)||^2 + mu/2 ||M^(1/2)(x - s (.) p)||^2
                 + lam_s TV_iso(x) + lam_t ||w (.) D_t x||_1

with A the SENSE-NUFFT of each frame's own arms, W the density compensation, p (F, H, W)
complex prior frames (e.g. from :func:`sirem_cli.models.speech_prior.prior_frames`),
s (F,) a per-frame complex scale, M (H, W) or (F, H, W) a non-negative pixel weight and
D_t the forward difference across frames, w (H, W) the temporal weight (1, or relaxed
where the prior frames move or the prior is unsure: :func:`motion_time_weight`). The prior
term is a quadratic with Hessian ``mu M`` (M diagonal), so the smooth part stays
``1/2 <x, N' x> - Re <x, b'> + c'`` with::

    N' = A^H W A + mu M,      b' = A^H W y + mu M (s (.) p),

and :func:`~sirem_cli.recon.solvers.pdhg_tv` solves it unchanged, one multiply-add per
iteration more than temporal TV; its Lipschitz constant is ``L' = L + mu max(M)``. The
iteration starts at the scaled prior ``s (.) p`` (a warm start; optional). With ``mu = 0``
the call *is* temporal TV (the same callable, b and L are passed through, zero start).

The prior enters as in prior-image constrained compressed sensing (Chen, Tang, Leng 2008,
"PICCS", Med. Phys. 35(2):660-663), here as a weighted quadratic rather than an l1 term: a
Gaussian prior image with per-pixel precision ``mu M`` (M from the prior network's predicted
variance, :func:`sirem_cli.models.speech_prior.precision_weight`, or from a static map,
:func:`prior_weight`), which keeps the problem "smooth + TV" for the existing solver; where
the prior is wrong the data term still decides. The temporal finite-difference regularizer
is that of the USC real-time
speech reconstructions (Lingala et al. 2016, "Recommendations for real-time speech MRI",
JMRI 43:28-44; Lingala et al. 2017, "A fast and flexible MRI system for the study of
dynamic vocal tract shaping", MRM 77:112-125).

Scales. ``mu`` is *relative*: the weight in the objective is ``mu_abs = mu * L`` with L the
largest eigenvalue of ``A^H W A`` (the ``lipschitz`` argument), so mu is dimensionless and
independent of how the k-space was scaled, like the baselines' relative lambdas (whose
absolute weights are ``lam * max |A^H W y|``; the caller converts them, see
:func:`sirem_cli.recon.baselines.solve`). The scale s is the complex least-squares fit of
the prior to the data (:func:`data_fit_scale`): per frame,
``s_t = argmin_s ||W^(1/2)(A (s p_t) - y_t)||^2 = <p_t, b_t> / <p_t, N p_t>``, or pooled
over a window of frames or the whole utterance (the default: a 2-arm frame's own fit is
noisy and makes the prior flicker), so a prior known only up to a complex factor (a
magnitude from a network, the phase of the time-averaged image) costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sirem_cli.errors import ShapeError
from sirem_cli.recon.solvers import NormalFn, ProgressFn, grad_time, pdhg_tv

#: Default floor of the prior weight ``M = 1 - (1 - floor) w``: where the static
#: explained-by-audio map w is 1 (moving articulators), the prior keeps 10 % of its weight.
DEFAULT_WEIGHT_FLOOR = 0.1


@dataclass
class PriorSolveResult:
    """What :func:`prior_solve` returns.

    Attributes:
        x: (F, H, W) complex solution.
        scale: (F,) complex per-frame scale s used for the prior.
        mu_abs: the prior weight in objective units (``mu * L``).
        lipschitz: the Lipschitz constant of the combined smooth term, ``L + mu_abs max M``.
        iters: iterations run.
        objective: the full objective after each iteration (empty unless tracked).
    """

    x: torch.Tensor
    scale: torch.Tensor
    mu_abs: float
    lipschitz: float
    iters: int
    objective: list[float] = field(default_factory=list)


def prior_weight(static_map: torch.Tensor, floor: float = DEFAULT_WEIGHT_FLOOR) -> torch.Tensor:
    """The prior's pixel weight ``M = 1 - (1 - floor) w``.

    Args:
        static_map: (H, W) real map w in [0, 1] (e.g. the mean of the training frames'
            explained-by-audio maps: 1 on the moving articulators).
        floor: weight kept where w = 1, in [0, 1].

    Returns:
        (H, W) float tensor in [floor, 1].

    Raises:
        ShapeError: not a real 2D map, values outside [0, 1], or a floor outside [0, 1].
    """
    if static_map.ndim != 2 or static_map.is_complex():
        raise ShapeError(
            f"static map: expected a real (H, W) tensor, got {tuple(static_map.shape)}"
        )
    if not 0.0 <= floor <= 1.0:
        raise ShapeError(f"floor: expected a value in [0, 1], got {floor}")
    w = static_map.to(torch.float32)
    if not bool(torch.isfinite(w).all()) or float(w.min()) < 0 or float(w.max()) > 1:
        raise ShapeError("static map: values must be finite and in [0, 1]")
    return 1.0 - (1.0 - floor) * w


def motion_map(prior: torch.Tensor) -> torch.Tensor:
    """Where the prior frames move: ``m(r) = mean_t |p_{t+1}(r) - p_t(r)| / max |p|``.

    Args:
        prior: (F, H, W) complex or real prior frames.

    Returns:
        (H, W) real map >= 0; all zero for a prior that does not change in time (a network
        without audio, x_bar) or a single frame.
    """
    if not isinstance(prior, torch.Tensor) or prior.ndim != 3:
        shape = tuple(getattr(prior, "shape", ()))
        raise ShapeError(f"prior: expected (F, H, W) frames, got {shape}")
    mag = prior.abs()
    peak = float(mag.max()) if mag.numel() else 0.0
    if prior.shape[0] < 2 or peak <= 0:
        return torch.zeros(prior.shape[-2:], dtype=mag.dtype, device=prior.device)
    return grad_time(prior).abs().mean(dim=0) / peak


def uncertainty_map(weight: torch.Tensor) -> torch.Tensor:
    """Where the prior is unsure: ``u(r) = mean_t max(0, 1 - M_t(r))``.

    Args:
        weight: the prior's pixel weight M, (H, W) or (F, H, W), real >= 0 (e.g. the
            precision of the network's predicted variance, 1 where it is most confident).

    Returns:
        (H, W) real map in [0, 1]; all zero for M = 1 everywhere.
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim not in (2, 3) or weight.is_complex():
        shape = tuple(getattr(weight, "shape", ()))
        raise ShapeError(f"weight: expected a real (H, W) or (F, H, W) tensor, got {shape}")
    unsure = (1.0 - weight).clamp_min(0.0)
    return unsure.mean(dim=0) if unsure.ndim == 3 else unsure


def motion_time_weight(
    prior: torch.Tensor,
    motion: float,
    *,
    weight: torch.Tensor | None = None,
    uncertainty: float = 0.0,
) -> torch.Tensor | None:
    """The per-pixel weight of temporal TV, relaxed where the prior says the tissue moves:
    ``w(r) = 1 / (1 + m(r) / motion + u(r) / uncertainty)`` with m the :func:`motion_map`
    of the prior frames and u the :func:`uncertainty_map` of their weight M (a term whose
    strength is 0 is left out; None when both are).

    Temporal TV at one weight everywhere trades the blur of moving articulators against
    the noise of static tissue; the speech prior's predicted frames say, for this
    utterance, where the vocal tract moves, so the penalty on temporal change is relaxed
    there and kept elsewhere. ``motion`` is the map value (a mean frame-to-frame change,
    relative to the prior's peak) at which the weight halves; where the prior is static
    (m = 0) the weight is 1, so a prior that does not change in time leaves temporal TV as
    it is. A network that predicts no motion (one without audio) still says where it is
    *unsure* (low precision M, where speech moves the tissue on average): ``uncertainty``
    relaxes temporal TV there, the weight halving where the mean ``1 - M`` reaches it.
    """
    for name, value in (("motion", motion), ("uncertainty", uncertainty)):
        if not (math.isfinite(value) and value >= 0):
            raise ShapeError(f"{name}: expected a finite number >= 0, got {value}")
    if uncertainty > 0 and weight is None:
        uncertainty = 0.0  # M = 1 everywhere: nothing is unsure
    if motion == 0 and uncertainty == 0:
        return None
    relax = torch.zeros(prior.shape[-2:], dtype=prior.real.dtype, device=prior.device)
    if motion > 0:
        relax = relax + motion_map(prior) / motion
    if uncertainty > 0:
        relax = relax + uncertainty_map(weight).to(relax) / uncertainty
    return 1.0 / (1.0 + relax)


def _frame_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a_t, b_t> = sum conj(a_t) b_t per frame: (F, H, W) x (F, H, W) -> (F,) complex."""
    return torch.sum(a.conj() * b, dim=(-2, -1))


def data_fit_scale(
    normal: NormalFn, b: torch.Tensor, prior: torch.Tensor, *, window: int | None = 1
) -> torch.Tensor:
    """Complex least-squares scale of the prior to the data, per frame or over frames.

    ``s = sum_t' <A p_t', W y_t'> / sum_t' <A p_t', W A p_t'>
        = sum_t' <p_t', b_t'> / sum_t' <p_t', N p_t'>``

    over the frames t' of a window centred on t: the minimizer over complex s of
    ``sum_t' ||W^(1/2)(A (s p_t') - y_t')||^2`` (N = A^H W A is Hermitian PSD, so the
    denominator is real and >= 0). ``window=1`` fits each frame alone; with two arms per
    frame that estimate is noisy and makes the prior flicker, so a longer window (or
    ``None``: one scale for the whole utterance) is usually better. A window whose prior
    the data cannot see (zero denominator) gets s = 0.

    Args:
        normal: x (F, H, W) -> A^H W A x.
        b: (F, H, W) complex, A^H W y.
        prior: (F, H, W) complex prior frames p.
        window: odd number of frames in the centred moving window (truncated at the ends),
            or None for all frames.

    Returns:
        (F,) complex scale, the dtype of b.
    """
    _check_frames(b, "b")
    _check_frames(prior, "prior")
    if prior.shape != b.shape:
        raise ShapeError(f"prior: expected shape {tuple(b.shape)}, got {tuple(prior.shape)}")
    if window is not None and (window < 1 or window % 2 == 0):
        raise ShapeError(f"window: expected an odd number of frames >= 1 or None, got {window}")
    prior = prior.to(b.dtype)
    num = _frame_dot(prior, b)  # (F,)
    den = _frame_dot(prior, normal(prior)).real  # (F,)
    n_frames = b.shape[0]
    if window is None:
        num, den = num.sum().expand(n_frames), den.sum().expand(n_frames)
    elif window > 1:
        half = window // 2
        pad_num = torch.cat([num.new_zeros(1), torch.cumsum(num, 0)])  # (F + 1,)
        pad_den = torch.cat([den.new_zeros(1), torch.cumsum(den, 0)])
        idx = torch.arange(n_frames, device=b.device)
        lo = (idx - half).clamp_min(0)
        hi = (idx + half + 1).clamp_max(n_frames)
        num, den = pad_num[hi] - pad_num[lo], pad_den[hi] - pad_den[lo]
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def combined_operator(
    normal: NormalFn, b: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, mu_abs: float
) -> tuple[NormalFn, torch.Tensor]:
    """``N' = N + mu M`` and ``b' = b + mu M target`` for the quadratic prior term.

    Args:
        normal: x -> A^H W A x.
        b: (F, H, W) complex A^H W y.
        target: (F, H, W) complex, the scaled prior ``s (.) p``.
        weight: M, (H, W) or (F, H, W) real, non-negative.
        mu_abs: the prior weight in objective units (>= 0).

    Returns:
        The callable N' and the tensor b'. For ``mu_abs = 0`` the inputs themselves.
    """
    if mu_abs == 0.0:
        return normal, b
    mw = (mu_abs * weight).to(device=b.device, dtype=b.real.dtype)

    def combined(x: torch.Tensor) -> torch.Tensor:
        out = normal(x)
        return out.addcmul_(x, mw) if out is not x else out + mw * x

    return combined, b + mw * target.to(b.dtype)


def prior_solve(
    normal: NormalFn,
    b: torch.Tensor,
    prior: torch.Tensor,
    *,
    mu: float,
    lam_spatial: float,
    lam_time: float,
    lipschitz: float,
    iters: int = 100,
    weight: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    scale_window: int | None = None,
    warm_start: bool = True,
    balance: float = 1.0,
    data_const: float = 0.0,
    track_objective: bool = False,
    progress: ProgressFn | None = None,
    motion: float = 0.0,
    uncertainty: float = 0.0,
) -> PriorSolveResult:
    """Temporal-TV reconstruction pulled towards a per-frame prior image.

    Minimizes the objective of the module notes with
    :func:`~sirem_cli.recon.solvers.pdhg_tv` on ``N' = N + mu_abs M``,
    ``b' = b + mu_abs M (s (.) p)``.

    Args:
        normal: x (F, H, W) -> A^H W A x (e.g. a SenseOp's Toeplitz ``normal``, or one that
            dispatches frames to the operators of their interleaves).
        b: (F, H, W) complex, A^H W y.
        prior: (F, H, W) complex prior frames p.
        mu: relative prior weight (>= 0); ``mu_abs = mu * lipschitz``. 0 gives exactly
            ``pdhg_tv(normal, b, lam_spatial=..., lam_time=..., lipschitz=...)``.
        lam_spatial: isotropic spatial TV weight in objective units (>= 0).
        lam_time: temporal finite-difference weight in objective units (>= 0).
        lipschitz: L >= the largest eigenvalue of A^H W A.
        iters: iterations.
        weight: M, (H, W) or (F, H, W) real in [0, inf) (None: 1 everywhere); see
            :func:`prior_weight`.
        scale: (F,) complex per-frame scale s (None: :func:`data_fit_scale` with
            ``scale_window``, one extra normal-operator application).
        scale_window: the window of the fitted scale (None: one scale for all frames; 1:
            each frame alone).
        warm_start: with mu > 0, start the iteration at the scaled prior ``s (.) p``
            rather than at zero (at a fixed, small number of iterations this matters as
            much as the prior term itself).
        balance: the solver's dual/primal step balance.
        data_const: ``1/2 ||W^(1/2) y||^2`` for the reported objective.
        track_objective: record the full objective (data + prior + TV) every iteration.
        progress: called with the iteration number.
        motion: with mu > 0, relax temporal TV where the prior moves
            (:func:`motion_time_weight`; 0: one weight everywhere).
        uncertainty: with mu > 0, relax temporal TV where the prior's weight M is low
            (:func:`motion_time_weight`; 0: off).

    Returns:
        :class:`PriorSolveResult`.

    Raises:
        ShapeError: shapes, dtypes or parameters that do not fit.
    """
    _check_frames(b, "b")
    _check_frames(prior, "prior")
    if prior.shape != b.shape:
        raise ShapeError(f"prior: expected shape {tuple(b.shape)}, got {tuple(prior.shape)}")
    if not (math.isfinite(mu) and mu >= 0):
        raise ShapeError(f"mu: expected a finite number >= 0, got {mu}")
    if not (math.isfinite(lipschitz) and lipschitz > 0):
        raise ShapeError(f"lipschitz: expected a positive number, got {lipschitz}")
    n_frames = b.shape[0]
    real = b.real.dtype
    if weight is None:
        weight = torch.ones(b.shape[-2:], dtype=real, device=b.device)
    weight = weight.to(device=b.device, dtype=real)
    if weight.shape not in (b.shape[-2:], b.shape) or weight.is_complex():
        raise ShapeError(
            f"weight: expected a real (H, W) or (F, H, W) tensor, got {tuple(weight.shape)}"
        )
    if not bool(torch.isfinite(weight).all()) or float(weight.min()) < 0:
        raise ShapeError("weight: values must be finite and >= 0")
    prior = prior.to(device=b.device, dtype=b.dtype)
    if scale is None:
        if mu > 0:
            scale = data_fit_scale(normal, b, prior, window=scale_window)
        else:
            scale = torch.ones(n_frames, dtype=b.dtype)
    scale = torch.as_tensor(scale).to(device=b.device, dtype=b.dtype).reshape(-1)
    if scale.shape[0] != n_frames:
        raise ShapeError(f"scale: expected {n_frames} values, got {scale.shape[0]}")
    mu_abs = float(mu) * float(lipschitz)
    target = scale[:, None, None] * prior  # (F, H, W)
    normal_c, b_c = combined_operator(normal, b, target, weight, mu_abs)
    lip_c = float(lipschitz) + mu_abs * float(weight.max())
    const = data_const
    if track_objective and mu_abs > 0:
        const += 0.5 * mu_abs * float((weight * target.abs().square()).sum())
    res = pdhg_tv(
        normal_c,
        b_c,
        lam_spatial=lam_spatial,
        lam_time=lam_time,
        lipschitz=lip_c,
        iters=iters,
        balance=balance,
        data_const=const,
        track_objective=track_objective,
        progress=progress,
        x0=target if (warm_start and mu_abs > 0) else None,
        time_weight=(
            motion_time_weight(prior, motion, weight=weight, uncertainty=uncertainty)
            if mu_abs > 0
            else None
        ),
    )
    return PriorSolveResult(
        x=res.x,
        scale=scale,
        mu_abs=mu_abs,
        lipschitz=lip_c,
        iters=res.iters,
        objective=res.objective,
    )


def _check_frames(t: torch.Tensor, what: str) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != 3 or not t.is_complex():
        shape = tuple(getattr(t, "shape", ()))
        raise ShapeError(f"{what}: expected a complex (F, H, W) tensor, got {shape}")
