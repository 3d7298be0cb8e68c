"""The CUDA paths against their CPU twins: the network, training and `sirem reconstruct`.

Run on a GPU machine with ``pytest -m cuda``; without a usable cufinufft every test here skips
with the probe's reason (the backend selection and fallback are tested in test_nufft.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sirem_cli.models.sirem_net import ModelConfig, SiremNet
from sirem_cli.mri.sense import FrameSenseOp

pytestmark = pytest.mark.cuda

A, S, C, H, W = 13, 40, 4, 24, 24


def _problem(seed: int = 0) -> dict[str, torch.Tensor | np.ndarray]:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    return {
        "traj": rng.uniform(-np.pi, np.pi, size=(A, S, 2)),
        "emb": torch.randn(3, 8, generator=gen),
        "kspace": torch.randn(3, C, A, S, dtype=torch.complex64, generator=gen),
        "dcf": torch.rand(A, S, generator=gen) + 0.1,
        "smaps": torch.randn(C, H, W, dtype=torch.complex64, generator=gen),
        "probe": torch.rand(3, H, W, generator=gen),
    }


def _run_net(net: SiremNet, prob: dict, device: str) -> dict[str, torch.Tensor]:
    """forward_kspace through the differentiable SENSE adjoint on ``device``; values and
    gradients on the CPU."""
    net = copy.deepcopy(net).to(device)
    sense = FrameSenseOp(prob["traj"], prob["smaps"], n_frames=3, device=device, eps=1e-6)
    nufft = sense.groups[0][3].nufft
    assert nufft.backend == ("cufinufft" if device == "cuda" else "finufft")
    emb, kspace, dcf = (prob[key].to(device) for key in ("emb", "kspace", "dcf"))
    out = net.forward_kspace(emb, kspace, sense, dcf)
    assert out.recon.device.type == device
    probe = prob["probe"].to(device)
    ((out.recon * probe).sum() + (out.x_mri * probe).sum()).backward()
    return {
        "recon": out.recon.detach().cpu(),
        "x_mri": out.x_mri.detach().cpu(),
        "logit_grad": net.arm_logits.grad.cpu(),
        "decoder_grad": next(net.decoder.parameters()).grad.cpu(),
    }


def test_network_on_cuda_matches_cpu_in_value_and_gradient(need_cuda):
    prob = _problem()
    torch.manual_seed(0)
    net = SiremNet(ModelConfig(embedding_dim=8, image_size=(H, W), decoder_hidden=(16, 32)))
    net.set_static_eba(torch.rand(H, W))
    with torch.no_grad():
        net.arm_logits.copy_(torch.linspace(-2, 2, A))
    net.eval()  # no dropout, so both devices compute the same function
    cpu, gpu = _run_net(net, prob, "cpu"), _run_net(net, prob, "cuda")
    for key in ("recon", "x_mri"):
        torch.testing.assert_close(gpu[key], cpu[key], atol=2e-5, rtol=0)
    for key in ("logit_grad", "decoder_grad"):
        torch.testing.assert_close(gpu[key], cpu[key], atol=1e-5, rtol=1e-3)
    assert cpu["logit_grad"].abs().max() > 1e-3  # the logits really get a gradient


def test_training_on_cuda_follows_the_cpu_run(need_cuda, tmp_path):
    from test_training import random_frames, small_config  # the CPU training tests' problem

    from sirem_cli.training.loop import train

    data = random_frames(24, 1)
    config = small_config(epochs=3, val_every=1, dropout=0.0)
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = config.replace(device=device)
        runs[device] = train(cfg, data, data, out_path=tmp_path / f"{device}.pt")
    assert next(runs["cuda"].model.parameters()).device.type == "cuda"
    cpu_loss = [r["loss"] for r in runs["cpu"].records]
    gpu_loss = [r["loss"] for r in runs["cuda"].records]
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-3)
    np.testing.assert_allclose(runs["cuda"].arm_weights, runs["cpu"].arm_weights, atol=1e-4)
    assert gpu_loss[-1] < gpu_loss[0]


def test_reconstruct_on_cuda_matches_cpu(need_cuda, prepared_file, tmp_path):
    """`sirem reconstruct --device cuda` writes the CPU's images, and says it used cufinufft."""
    from sirem_cli.api.audio import ModelRunConfig
    from sirem_cli.api.reconstruct import run_reconstruct
    from sirem_cli.io.prepared import ReconSet
    from sirem_cli.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = SiremNet(ModelConfig(embedding_dim=256, image_size=(84, 84), encoder="mel"))
    with torch.no_grad():
        net.arm_logits.copy_(torch.linspace(-2, 2, A))
    ckpt = save_checkpoint(tmp_path / "m.pt", net)
    images, backends = {}, {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.h5"
        result = run_reconstruct(
            ckpt, [prepared_file], out, ModelRunConfig(encoder="mel", device=device), split="all"
        )
        backends[device] = result.backend
        images[device] = dict(ReconSet(out).iter_frames())
    assert backends == {"cpu": "finufft", "cuda": "cufinufft"}
    assert images["cpu"].keys() == images["cuda"].keys() and images["cpu"]
    for prefix, frames in images["cpu"].items():
        np.testing.assert_allclose(images["cuda"][prefix], frames, atol=1e-3)
