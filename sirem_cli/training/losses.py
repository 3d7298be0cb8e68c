"""SIREM training objective (paper eqs. 17-21) and the validation PSNR.

L = MSE(x_hat, x) + alpha L_psf + beta L_budget + gamma L_mask, alpha = 0.1, beta = gamma = 0.01.

How we read the paper (it gives formulas, no code):

* Reconstruction (eq. 18 writes ||x_hat - x||_2^2): the mean squared error over pixels and batch,
  as ``method.md`` decides.
* L_psf (eq. 19) = mean_k |IDFT_A(p)_k|^2 over all A = 13 coefficients, the DC term included (the
  paper excludes nothing; ``exclude_dc=True`` drops it). The IDFT is ``torch.fft.ifft`` with its
  default ``norm="backward"`` (1/A on the inverse). By Parseval this equals sum(p^2) / A^2: it is an
  energy penalty on p; without DC it is sum(p^2)/A^2 - mean(p)^2 / A.
* L_budget (eq. 20) = (sum_i p_i - K)^2 + mean_i p_i, K = 2, on the soft p.
* L_mask (eq. 21) = mean over frames and frequencies of |FFT2(1 - w)|^2 with ``torch.fft.fft2``'s
  default ``norm="backward"`` (unnormalized forward): by Parseval sum_pixels (1 - w)^2 per frame.
  With a fixed map (``static``/``frame`` fusion) it has no gradient; it matters only for
  ``learned`` fusion, where ``norm="ortho"`` (= mean (1 - w)^2) may be the better scale.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor

from sirem_cli.errors import InputError, ShapeError

FFT_NORMS: tuple[str, ...] = ("backward", "ortho", "forward")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the regularizers (paper: alpha = 0.1, beta = 0.01, gamma = 0.01)."""

    psf: float = 0.1
    budget: float = 0.01
    mask: float = 0.01


class LossTerms(NamedTuple):
    """The weighted total and each unweighted term (scalar float32 tensors)."""

    total: Tensor
    mse: Tensor
    psf: Tensor
    budget: Tensor
    mask: Tensor


def _check_norm(norm: str) -> None:
    if norm not in FFT_NORMS:
        raise InputError(f"fft norm must be one of {', '.join(FFT_NORMS)}, got {norm!r}")


def recon_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error.

    Args:
        recon: (B, H, W) float32 reconstruction.
        target: (B, H, W) float32 reference.

    Returns:
        Scalar mean over all pixels and frames.
    """
    if recon.shape != target.shape:
        raise ShapeError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ")
    return torch.mean((recon - target) ** 2)


def psf_loss(p: Tensor, *, exclude_dc: bool = False, norm: str = "backward") -> Tensor:
    """Point-spread regularizer mean |IDFT(p)|^2 (paper eq. 19).

    Args:
        p: (A,) float32 soft arm weights.
        exclude_dc: average over the A - 1 non-zero frequencies only.
        norm: ``torch.fft.ifft`` normalization ("backward" = 1/A on the inverse).

    Returns:
        Scalar.
    """
    _check_norm(norm)
    if p.ndim != 1:
        raise ShapeError(f"p: expected (A,), got {tuple(p.shape)}")
    power = torch.fft.ifft(p, norm=norm).abs() ** 2  # (A,)
    if exclude_dc:
        power = power[1:]
    return power.mean()


def budget_loss(p: Tensor, k: float = 2.0) -> Tensor:
    """Arm budget (sum p - K)^2 + mean p (paper eq. 20).

    Args:
        p: (A,) float32 soft arm weights.
        k: target number of active arms K.

    Returns:
        Scalar.
    """
    if p.ndim != 1:
        raise ShapeError(f"p: expected (A,), got {tuple(p.shape)}")
    return (p.sum() - k) ** 2 + p.mean()


def mask_loss(w: Tensor, *, norm: str = "backward") -> Tensor:
    """Fourier energy of the complement of the fusion map, mean |FFT2(1 - w)|^2 (paper eq. 21).

    Args:
        w: (H, W) or (B, H, W) float32 map in [0, 1].
        norm: ``torch.fft.fft2`` normalization ("backward" = unnormalized forward).

    Returns:
        Scalar mean over frames and the H x W frequencies.
    """
    _check_norm(norm)
    if w.ndim not in (2, 3):
        raise ShapeError(f"w: expected (H, W) or (B, H, W), got {tuple(w.shape)}")
    spectrum = torch.fft.fft2(1.0 - w, norm=norm)  # (..., H, W) complex
    return (spectrum.abs() ** 2).mean()


def sirem_loss(
    recon: Tensor,
    target: Tensor,
    p: Tensor,
    w: Tensor,
    *,
    budget_k: float = 2.0,
    weights: LossWeights = LossWeights(),
    psf_exclude_dc: bool = False,
    fft_norm: str = "backward",
) -> LossTerms:
    """The full objective, eq. 17 averaged over the batch.

    Args:
        recon: (B, H, W) float32 fused reconstruction.
        target: (B, H, W) float32 reference in [0, 1].
        p: (A,) float32 soft arm weights sigmoid(l).
        w: (H, W) or (B, H, W) float32 fusion map.
        budget_k: K of the budget term.
        weights: alpha, beta, gamma.
        psf_exclude_dc: see :func:`psf_loss`.
        fft_norm: normalization of both Fourier transforms.

    Returns:
        :class:`LossTerms` (total = mse + alpha psf + beta budget + gamma mask).
    """
    mse = recon_loss(recon, target)
    psf = psf_loss(p, exclude_dc=psf_exclude_dc, norm=fft_norm)
    budget = budget_loss(p, budget_k)
    mask = mask_loss(w, norm=fft_norm)
    total = mse + weights.psf * psf + weights.budget * budget + weights.mask * mask
    return LossTerms(total, mse, psf, budget, mask)


def psnr(recon: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-frame peak signal-to-noise ratio.

    Args:
        recon: (B, H, W) float32.
        target: (B, H, W) float32.
        data_range: peak value (1 for [0, 1] images).

    Returns:
        (B,) float32 PSNR in dB, 10 log10(range^2 / MSE); an exact match gives +inf.
    """
    if recon.shape != target.shape or recon.ndim != 3:
        raise ShapeError(
            f"psnr: expected two (B, H, W) tensors, got {tuple(recon.shape)}, {tuple(target.shape)}"
        )
    mse = ((recon.float() - target.float()) ** 2).mean(dim=(-2, -1))  # (B,)
    return 10.0 * torch.log10(data_range**2 / mse)
