"""Differentiable NUFFTs: torch.autograd.Function pair around a NufftOp.

Both transforms are C-linear, so with PyTorch's convention for complex gradients the
vector-Jacobian product of ``y = A x`` is ``A^H g``: the backward of the forward NUFFT
is the adjoint and the backward of the adjoint is the forward. Gradients therefore
reach anything upstream of the k-space, e.g. real per-sample (arm) weights ``p`` in
``image = adjoint(p * dcf * kspace)``.

The transforms themselves are not twice differentiable through this Function (the
backward runs outside autograd), which is all training needs.
"""

from __future__ import annotations

from typing import Any

import torch

from sirem_cli.nufft.base import NufftOp


class NufftForward(torch.autograd.Function):
    """``kspace = op.forward(image)``; backward: ``grad_image = op.adjoint(grad_kspace)``."""

    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, op: NufftOp) -> torch.Tensor:
        ctx.op = op
        return op.forward(image)

    @staticmethod
    def backward(ctx: Any, grad_kspace: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        return ctx.op.adjoint(grad_kspace), None


class NufftAdjoint(torch.autograd.Function):
    """``image = op.adjoint(kspace)``; backward: ``grad_kspace = op.forward(grad_image)``."""

    @staticmethod
    def forward(ctx: Any, kspace: torch.Tensor, op: NufftOp) -> torch.Tensor:
        ctx.op = op
        return op.adjoint(kspace)

    @staticmethod
    def backward(ctx: Any, grad_image: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        return ctx.op.forward(grad_image), None


def nufft_forward(image: torch.Tensor, op: NufftOp) -> torch.Tensor:
    """Differentiable forward NUFFT: (..., H, W) complex tensor -> (..., K)."""
    if not torch.is_complex(image):
        image = image.to(torch.complex128 if image.dtype == torch.float64 else torch.complex64)
    return NufftForward.apply(image, op)


def nufft_adjoint(kspace: torch.Tensor, op: NufftOp) -> torch.Tensor:
    """Differentiable adjoint NUFFT: (..., K) complex tensor -> (..., H, W)."""
    if not torch.is_complex(kspace):
        kspace = kspace.to(torch.complex128 if kspace.dtype == torch.float64 else torch.complex64)
    return NufftAdjoint.apply(kspace, op)
