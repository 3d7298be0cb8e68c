"""DistributedDataParallel on the CPU: two gloo processes launched by torchrun."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import torch

from sirem_cli.models.sirem_net import ModelConfig
from sirem_cli.training.checkpoint import read_checkpoint
from sirem_cli.training.config import TrainConfig
from sirem_cli.training.data import FrameData
from sirem_cli.training.loop import train

A = 13
SIZE = 8


def frames(n: int, seed: int) -> FrameData:
    gen = torch.Generator().manual_seed(seed)
    return FrameData(
        embeddings=torch.randn(n, 5, generator=gen),
        arm_images=torch.randn(n, A, SIZE, SIZE, dtype=torch.complex64, generator=gen),
        target=torch.rand(n, SIZE, SIZE, generator=gen),
        eba=torch.rand(n, SIZE, SIZE, generator=gen),
    )


def test_two_cpu_processes_train_like_one_with_the_double_batch(tmp_path):
    train_data, val_data = frames(16, 0), frames(6, 1)  # ddp_worker.py builds the same
    # dropout 0: with it, each rank would draw its own masks and the comparison would not hold
    config = TrainConfig(
        model=ModelConfig(
            image_size=(SIZE, SIZE), decoder_hidden=(16,), dropout=0.0, encoder="mel"
        ),
        epochs=2,
        batch_size=4,
        val_every=1,
        lr=1e-2,
        device="cpu",
    )
    repo = Path(__file__).resolve().parents[1]
    python_path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=python_path)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        str(repo / "tests" / "ddp_worker.py"), str(tmp_path), config.to_json(),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "ranks" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ranks" / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert not torch.equal(rank0["arm_logits"], torch.zeros(A))
    checkpoint = read_checkpoint(tmp_path / "ddp.pt", image_size=(SIZE, SIZE))
    assert checkpoint.info["epoch"] in (1, 2)
    assert (tmp_path / "log.json").is_file() and (tmp_path / "ddp.resume.pt").is_file()
    # gradients averaged over 2 ranks x 4 frames = one process with batches of 8 frames
    single = train(
        dataclasses.replace(config, batch_size=8),
        train_data,
        val_data,
        out_path=tmp_path / "one.pt",
    )
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(rank0[key], value, atol=1e-5, rtol=1e-4)
