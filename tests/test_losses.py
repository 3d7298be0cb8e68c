"""Each loss term against a hand computation (paper eqs. 17-21)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.training.losses import (
    LossWeights,
    budget_loss,
    mask_loss,
    psf_loss,
    psnr,
    recon_loss,
    sirem_loss,
)

A = 13


def test_psf_of_a_single_arm_is_flat():
    # IDFT of a delta is 1/A at every frequency: |.|^2 = 1/A^2 everywhere
    p = torch.zeros(A)
    p[4] = 1.0
    assert psf_loss(p).item() == pytest.approx(1 / 169, rel=1e-6)
    assert psf_loss(p, exclude_dc=True).item() == pytest.approx(1 / 169, rel=1e-6)


def test_psf_of_uniform_weights_is_all_dc():
    # IDFT of a constant c is [c, 0, ..., 0]: mean |.|^2 = c^2 / A, and 0 without DC
    p = torch.full((A,), 0.5)
    assert psf_loss(p).item() == pytest.approx(0.25 / 13, rel=1e-6)
    assert psf_loss(p, exclude_dc=True).item() == pytest.approx(0.0, abs=1e-12)
    # "ortho": the DC term is c sqrt(A), so the mean is c^2 A / A = c^2
    assert psf_loss(p, norm="ortho").item() == pytest.approx(0.25, rel=1e-6)


def test_psf_matches_explicit_dft_sum():
    rng = np.random.default_rng(0)
    p = rng.random(A)
    n = np.arange(A)
    idft = np.array([(p * np.exp(2j * np.pi * k * n / A)).sum() / A for k in range(A)])
    expected = np.mean(np.abs(idft) ** 2)
    got = psf_loss(torch.tensor(p, dtype=torch.float64)).item()
    assert got == pytest.approx(expected, rel=1e-12)
    # Parseval: the literal term is an energy penalty sum(p^2) / A^2
    assert got == pytest.approx((p**2).sum() / A**2, rel=1e-12)
    expected_no_dc = np.mean(np.abs(idft[1:]) ** 2)
    assert psf_loss(torch.tensor(p), exclude_dc=True).item() == pytest.approx(expected_no_dc)


def test_psf_gradient_is_2p_over_a_squared():
    p = torch.rand(A, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p.requires_grad_(True)
    psf_loss(p).backward()
    torch.testing.assert_close(p.grad, 2 * p.detach() / A**2)


def test_budget_hand_values():
    assert budget_loss(torch.full((A,), 0.5), 2).item() == pytest.approx(4.5**2 + 0.5)
    two = torch.zeros(A)
    two[:2] = 1
    assert budget_loss(two, 2).item() == pytest.approx(2 / 13)
    assert budget_loss(torch.zeros(A), 3).item() == pytest.approx(9.0)


def test_mask_hand_values():
    # 1 - w = 1 on a 4x4 grid: FFT2 is 16 at DC and 0 elsewhere -> mean |.|^2 = 256 / 16
    assert mask_loss(torch.zeros(4, 4)).item() == pytest.approx(16.0)
    assert mask_loss(torch.ones(3, 5)).item() == pytest.approx(0.0)
    # 1 - w = a delta: |FFT2| = 1 everywhere -> 1 (unnormalized); 1/16 with "ortho"
    w = torch.ones(4, 4)
    w[1, 2] = 0.0
    assert mask_loss(w).item() == pytest.approx(1.0)
    assert mask_loss(w, norm="ortho").item() == pytest.approx(1 / 16)
    # a batch of maps averages the per-frame values
    batch = torch.stack([torch.zeros(4, 4), w])
    assert mask_loss(batch).item() == pytest.approx((16.0 + 1.0) / 2)
    with pytest.raises(InputError):
        mask_loss(w, norm="unitary")


def test_mask_matches_explicit_dft_for_random_map():
    rng = np.random.default_rng(2)
    w = rng.random((3, 5))
    rows, cols = np.arange(3), np.arange(5)
    total = 0.0
    for u in range(3):
        for v in range(5):
            basis = np.exp(-2j * np.pi * (u * rows[:, None] / 3 + v * cols[None] / 5))
            total += abs(((1 - w) * basis).sum()) ** 2
    assert mask_loss(torch.tensor(w)).item() == pytest.approx(total / 15, rel=1e-10)


def test_recon_and_total_loss_hand_values():
    recon = torch.full((2, 4, 4), 0.5)
    target = torch.zeros(2, 4, 4)
    assert recon_loss(recon, target).item() == pytest.approx(0.25)
    p = torch.full((A,), 0.5)
    w = torch.zeros(4, 4)
    terms = sirem_loss(recon, target, p, w, budget_k=2)
    expected = 0.25 + 0.1 * (0.25 / 13) + 0.01 * (4.5**2 + 0.5) + 0.01 * 16.0
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)
    assert terms.mse.item() == pytest.approx(0.25)
    assert terms.mask.item() == pytest.approx(16.0)
    custom = sirem_loss(recon, target, p, w, weights=LossWeights(psf=0, budget=1, mask=0))
    assert custom.total.item() == pytest.approx(0.25 + 20.75, rel=1e-6)
    with pytest.raises(ShapeError):
        recon_loss(recon, target[:1])


def test_psnr_known_values():
    target = torch.zeros(2, 3, 3)
    recon = torch.full((2, 3, 3), 0.1)  # MSE 0.01 -> 20 dB
    recon[1] = 0.01  # MSE 1e-4 -> 40 dB
    torch.testing.assert_close(psnr(recon, target), torch.tensor([20.0, 40.0]))
    assert math.isinf(psnr(target, target)[0].item())
    assert psnr(recon * 2, target, data_range=2.0)[0].item() == pytest.approx(20.0, rel=1e-5)
