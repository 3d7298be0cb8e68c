"""SiremNet: decoder, arm weighting, MRI branch (two paths), fusion bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.models.decoder import AudioDecoder
from sirem_cli.models.sirem_net import (
    ModelConfig,
    SiremNet,
    fuse,
    mri_branch_from_arm_images,
    mri_branch_from_kspace,
    topk_straight_through,
)
from sirem_cli.mri.sense import FrameSenseOp

A = 13


@pytest.fixture
def mri_problem():
    """2 frames of all 13 interleaves (random points), 3 coils, a 10 x 12 image."""
    gen = torch.Generator().manual_seed(3)
    n_batch, n_coils, n_samples, height, width = 2, 3, 9, 10, 12
    traj = (torch.rand(A, n_samples, 2, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
    kspace = torch.randn(n_batch, n_coils, A, n_samples, dtype=torch.complex64, generator=gen)
    dcf = torch.rand(A, n_samples, generator=gen) + 0.1
    smaps = torch.randn(n_coils, height, width, dtype=torch.complex64, generator=gen)
    sense = FrameSenseOp(traj.numpy(), smaps, n_frames=n_batch, dtype=torch.complex128, eps=1e-12)
    return traj, kspace, dcf, smaps, (height, width), sense


def test_decoder_layers_and_shapes_follow_the_paper():
    decoder = AudioDecoder(32, (84, 84))
    kinds = [type(m) for m in decoder.net]
    assert kinds == [
        nn.Linear, nn.LayerNorm, nn.GELU, nn.Dropout,
        nn.Linear, nn.LayerNorm, nn.GELU, nn.Dropout,
        nn.Linear,
    ]  # fmt: skip
    assert (decoder.net[0].in_features, decoder.net[0].out_features) == (32, 1024)
    assert (decoder.net[4].in_features, decoder.net[4].out_features) == (1024, 2048)
    assert (decoder.net[8].in_features, decoder.net[8].out_features) == (2048, 84 * 84)
    torch.manual_seed(0)
    out = decoder(torch.randn(3, 32) * 50)
    assert out.shape == (3, 84, 84) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    small = AudioDecoder(5, (6, 7), hidden=(8,), dropout=0.0)
    assert small(torch.zeros(2, 5)).shape == (2, 6, 7)
    with pytest.raises(ShapeError):
        small(torch.zeros(2, 4))


def test_fusion_stays_in_unit_interval_proposition_1():
    gen = torch.Generator().manual_seed(1)
    x_a = torch.rand(64, 8, 8, generator=gen)
    x_m = torch.rand(64, 8, 8, generator=gen)
    w = torch.rand(64, 8, 8, generator=gen)
    # extreme values: the bound must hold with equality cases too
    x_a[0], x_m[0], w[0] = 1.0, 1.0, 0.3
    x_a[1], x_m[1], w[1] = 0.0, 0.0, 0.7
    fused = fuse(x_a, x_m, w)
    assert fused.min() >= 0 and fused.max() <= 1
    assert torch.equal(fuse(x_a, x_m, torch.ones(8, 8)), x_a)
    assert torch.equal(fuse(x_a, x_m, torch.zeros(8, 8)), x_m)
    assert torch.allclose(
        fused[5, 2, 3], w[5, 2, 3] * x_a[5, 2, 3] + (1 - w[5, 2, 3]) * x_m[5, 2, 3]
    )


@pytest.mark.parametrize("mode", ["static", "frame", "learned"])
def test_network_output_in_unit_interval_for_every_fusion_mode(mode):
    torch.manual_seed(0)
    config = ModelConfig(embedding_dim=6, image_size=(8, 8), decoder_hidden=(16,), eba_mode=mode)
    net = SiremNet(config)
    net.set_static_eba(torch.rand(8, 8))
    with torch.no_grad():
        net.arm_logits.copy_(torch.randn(A) * 3)
    arm_images = torch.randn(4, A, 8, 8, dtype=torch.complex64) * 100
    eba = torch.rand(4, 8, 8)
    out = net(torch.randn(4, 6) * 10, arm_images, eba)
    for image in (out.recon, out.x_audio, out.x_mri, out.w):
        assert image.shape == (4, 8, 8)
        assert image.min() >= 0 and image.max() <= 1
    if mode == "frame":
        assert torch.equal(out.w, eba)
    if mode == "static":
        assert torch.equal(out.w[2], net.static_eba)


def test_frame_mode_needs_eba_maps():
    net = SiremNet(
        ModelConfig(embedding_dim=4, image_size=(6, 6), decoder_hidden=(8,), eba_mode="frame")
    )
    with pytest.raises(InputError, match="eba"):
        net(torch.zeros(1, 4), torch.ones(1, A, 6, 6, dtype=torch.complex64))


def test_learned_head_starts_at_the_static_map():
    torch.manual_seed(0)
    net = SiremNet(
        ModelConfig(embedding_dim=4, image_size=(6, 6), decoder_hidden=(8,), eba_mode="learned")
    )
    prior = torch.rand(6, 6) * 0.9 + 0.05
    net.set_static_eba(prior)
    out = net(torch.randn(3, 4), torch.randn(3, A, 6, 6, dtype=torch.complex64))
    assert torch.allclose(out.w, prior.expand(3, 6, 6), atol=1e-6)
    assert sum(p.numel() for p in net.fusion_head.parameters()) > 0


def test_a_loss_on_the_learned_map_trains_only_the_head():
    """The head reads x_a and x_m as features: a loss on w alone (L_mask) must not reshape the
    decoder's image or the arm weights, while the reconstruction loss still reaches both."""
    torch.manual_seed(0)
    net = SiremNet(
        ModelConfig(embedding_dim=4, image_size=(6, 6), decoder_hidden=(8,), eba_mode="learned")
    )
    with torch.no_grad():  # a non-zero head, so w depends on its inputs
        for param in net.fusion_head.parameters():
            param.normal_(0, 0.3)
    arm_images = torch.randn(3, A, 6, 6, dtype=torch.complex64)
    out = net(torch.randn(3, 4), arm_images)
    (1 - out.w).pow(2).mean().backward()
    assert all(p.grad.abs().sum() > 0 for p in net.fusion_head.parameters())
    assert all(p.grad is None or not p.grad.any() for p in net.decoder.parameters())
    assert net.arm_logits.grad is None or not net.arm_logits.grad.any()
    net.zero_grad()
    net(torch.randn(3, 4), arm_images).recon.sum().backward()
    assert net.arm_logits.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in net.decoder.net[-1].parameters())


def test_mri_branch_matches_independent_numpy_sum(mri_problem):
    traj, kspace, dcf, smaps, (height, width), sense = mri_problem
    p = torch.rand(A, generator=torch.Generator().manual_seed(5))
    x_m = mri_branch_from_kspace(p, kspace, dcf.expand(2, -1, -1), sense.adjoint, eps=0.0)
    # explicit per-sample sum in numpy, double precision
    k = kspace.numpy().astype(np.complex128)
    weights = (p.numpy()[:, None] * dcf.numpy()).reshape(-1)
    rows = np.arange(height) - height // 2
    cols = np.arange(width) - width // 2
    t = traj.numpy().reshape(-1, 2)
    for b in range(k.shape[0]):
        combined = np.zeros((height, width), complex)
        for c in range(k.shape[1]):
            y = k[b, c].reshape(-1) * weights
            phase = (
                t[:, 0, None, None] * rows[None, :, None] + t[:, 1, None, None] * cols[None, None]
            )
            image = (y[:, None, None] * np.exp(1j * phase)).sum(0)
            combined += np.conj(smaps.numpy()[c]) * image
        expected = np.abs(combined) / np.abs(combined).max()
        np.testing.assert_allclose(x_m[b].numpy(), expected, atol=2e-5)
    assert torch.allclose(x_m.amax(dim=(-2, -1)), torch.ones(2, dtype=x_m.dtype))


def test_both_mri_paths_agree_in_value_and_gradient(mri_problem):
    _, kspace, dcf, _, (height, width), sense = mri_problem
    arm_images = sense.arm_adjoint(kspace * dcf.to(kspace.dtype)[None, None]).to(torch.complex64)
    assert arm_images.shape == (2, A, height, width)
    probe = torch.rand(2, height, width, generator=torch.Generator().manual_seed(9))
    grads, values = [], []
    for path in ("arm_images", "kspace"):
        logits = torch.linspace(-2, 2, A).requires_grad_(True)
        p = torch.sigmoid(logits)
        if path == "arm_images":
            x_m = mri_branch_from_arm_images(p, arm_images)
        else:
            x_m = mri_branch_from_kspace(p, kspace, dcf.expand(2, -1, -1), sense.adjoint)
        (x_m * probe).sum().backward()
        values.append(x_m.detach().float())
        grads.append(logits.grad.clone())
    torch.testing.assert_close(values[0], values[1], atol=2e-5, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-3)
    assert grads[0].abs().max() > 1e-3  # the logits really receive a gradient


def test_frames_of_two_arms_use_their_own_interleaf_weights():
    """With N = 2 each frame's image is p[arms[t]]-weighted; the two paths agree."""
    gen = torch.Generator().manual_seed(12)
    traj = (torch.rand(A, 7, 2, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi
    arms = np.array([[(2 * t) % A, (2 * t + 1) % A] for t in range(5)])
    smaps = torch.randn(2, 8, 9, dtype=torch.complex64, generator=gen)
    sense = FrameSenseOp(traj.numpy(), smaps, arms, dtype=torch.complex128, eps=1e-12)
    kspace = torch.randn(5, 2, 2, 7, dtype=torch.complex64, generator=gen)
    dcf = torch.rand(A, 7, generator=gen) + 0.1
    torch.manual_seed(0)
    net = SiremNet(ModelConfig(embedding_dim=4, image_size=(8, 9), decoder_hidden=(8,)))
    with torch.no_grad():
        net.arm_logits.copy_(torch.linspace(-2, 2, A))
    emb = torch.randn(5, 4)
    arms_t = torch.as_tensor(arms)
    weighted = kspace * dcf[arms_t][:, None].to(kspace.dtype)
    arm_images = sense.arm_adjoint(weighted).to(torch.complex64)
    out = net(emb, arm_images, arms=arms_t)
    out_k = net.forward_kspace(emb, kspace, sense, dcf)
    torch.testing.assert_close(out.x_mri, out_k.x_mri.float(), atol=2e-5, rtol=0)
    # frame 0 is the p[0], p[1] combination of its two arm images
    p = torch.sigmoid(net.arm_logits.detach())
    combined = (p[0] * arm_images[0, 0] + p[1] * arm_images[0, 1]).abs()
    torch.testing.assert_close(out.x_mri[0].detach(), combined / (combined.max() + 1e-8))


def test_arm_image_branch_gradient_is_exact():
    gen = torch.Generator().manual_seed(2)
    arm_images = torch.randn(2, A, 5, 5, dtype=torch.complex128, generator=gen)
    p = torch.rand(A, dtype=torch.float64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: mri_branch_from_arm_images(q, arm_images), (p,))


def test_mri_branch_is_per_frame_normalized_and_scale_free():
    gen = torch.Generator().manual_seed(4)
    arm_images = torch.randn(3, A, 7, 7, dtype=torch.complex64, generator=gen)
    arm_images[1] *= 1000
    p = torch.rand(A, generator=gen)
    x_m = mri_branch_from_arm_images(p, arm_images)
    torch.testing.assert_close(x_m.amax(dim=(-2, -1)), torch.ones(3))
    torch.testing.assert_close(mri_branch_from_arm_images(5 * p, arm_images), x_m)
    zero = mri_branch_from_arm_images(p, torch.zeros(1, A, 7, 7, dtype=torch.complex64))
    assert torch.equal(zero, torch.zeros(1, 7, 7))


def test_topk_straight_through_forward_hard_backward_soft():
    p = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2], requires_grad=True)
    mask = topk_straight_through(p, 2)
    assert mask.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (mask * g).sum().backward()
    assert torch.equal(p.grad, g)


def test_topk_model_uses_k_arms_and_passes_gradients():
    torch.manual_seed(0)
    config = ModelConfig(embedding_dim=4, image_size=(6, 6), decoder_hidden=(8,), arm_select="topk")
    net = SiremNet(config)
    with torch.no_grad():
        net.arm_logits.copy_(torch.linspace(-1, 1, A))
    p, p_used = net.arm_weights()
    assert torch.allclose(p, torch.sigmoid(net.arm_logits))
    assert p_used.sum().item() == 2 and set(p_used.tolist()) == {0.0, 1.0}
    assert p_used[-2:].tolist() == [1.0, 1.0]
    out = net(torch.randn(2, 4), torch.randn(2, A, 6, 6, dtype=torch.complex64))
    out.recon.sum().backward()
    assert net.arm_logits.grad is not None and net.arm_logits.grad.abs().sum() > 0


def test_no_audio_ignores_the_embedding():
    torch.manual_seed(0)
    arm_images = torch.randn(2, A, 6, 6, dtype=torch.complex64)
    emb1, emb2 = torch.randn(2, 4), torch.randn(2, 4)
    for no_audio in (False, True):
        net = SiremNet(
            ModelConfig(embedding_dim=4, image_size=(6, 6), decoder_hidden=(8,), no_audio=no_audio)
        )
        out1 = net.reconstruct(emb1, arm_images)
        out2 = net.reconstruct(emb2, arm_images)
        assert torch.equal(out1, out2) == no_audio


def test_reconstruct_from_kspace_matches_arm_images(mri_problem):
    _, kspace, dcf, _, (height, width), sense = mri_problem
    torch.manual_seed(0)
    net = SiremNet(ModelConfig(embedding_dim=4, image_size=(height, width), decoder_hidden=(8,)))
    net.set_static_eba(torch.rand(height, width))
    net.train()
    embeddings = torch.randn(2, 4)
    arm_images = sense.arm_adjoint(kspace * dcf.to(kspace.dtype)[None, None]).to(torch.complex64)
    recon = net.reconstruct(embeddings, arm_images)
    recon_k = net.reconstruct_kspace(embeddings, kspace, sense, dcf)
    assert net.training  # mode restored
    assert recon.shape == (2, height, width) and not recon.requires_grad
    assert recon.min() >= 0 and recon.max() <= 1
    torch.testing.assert_close(recon, recon_k.float(), atol=2e-5, rtol=0)


def test_config_rejects_bad_values():
    with pytest.raises(InputError):
        ModelConfig(embedding_dim=4, eba_mode="nope")
    with pytest.raises(InputError):
        ModelConfig(embedding_dim=4, arm_select="best")
    config = ModelConfig(embedding_dim=4, image_size=(6, 5), decoder_hidden=(8, 9))
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_decoder_prior_makes_the_untrained_output_the_prior_image():
    torch.manual_seed(0)
    decoder = AudioDecoder(8, (6, 5), hidden=(16, 32), dropout=0.0).eval()
    prior = torch.rand(6, 5) * 0.9 + 0.05
    decoder.set_output_prior(prior)
    out = decoder(torch.randn(4, 8))
    assert torch.allclose(out, prior.expand(4, 6, 5), atol=0.05)
    assert torch.all(out > 0) and torch.all(out < 1)
