"""Benchmarks of `sirem reconstruct` and `sirem train` against the acquisition rate.

* reconstruct ms/frame end to end (audio encoder + NUFFT + decoder) with the mel encoder and with
  a HuBERT-base-sized random-weight model (the same compute as the real one), and with cached
  embeddings; the reference is the acquisition rate, 12.8 fps = 78 ms per 13-arm frame.
* training seconds per epoch per 1000 frames (cached embeddings and arm images, batch 8), timed on
  the second of two epochs so start-up and checkpoint writing are reported apart.

Usage: python bench/bench_model.py [--out DIR] [--seconds 10] [--device cpu|cuda]

With ``--device cuda`` the encoder, NUFFT (cufinufft) and network run on the GPU and the
results go to bench_model_cuda.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _util import run_isolated, write_json
from rich.console import Console
from rich.table import Table

ACQ_MS = 13 * 6.004  # one 13-arm frame

SETUP = """
from pathlib import Path
from sirem_cli.api.synth import run_synth
from sirem_cli.synth.corpus import SynthConfig
from sirem_cli.api.prepare import run_prepare
from sirem_cli.data.prepare import PrepareConfig
run_synth(Path({tmp!r}) / "corpus", SynthConfig(subjects=1, utterances=1, seconds={seconds}), overwrite=True)
run_prepare(Path({tmp!r}) / "corpus", Path({tmp!r}) / "prepared.h5", PrepareConfig(), overwrite=True)
result = {{}}
"""

RECON = """
import os, shutil, time
from pathlib import Path
import h5py
from sirem_cli.models.sirem_net import ModelConfig, SiremNet
from sirem_cli.training.checkpoint import save_checkpoint
from sirem_cli.api.audio import ModelRunConfig
from sirem_cli.api.reconstruct import run_reconstruct
tmp = Path({tmp!r})
prepared = tmp / "prepared_{encoder}.h5"
shutil.copy(tmp / "prepared.h5", prepared)
cache = tmp / "embedding-cache-{encoder}"   # an empty embedding cache: the first run encodes
shutil.rmtree(cache, ignore_errors=True)
os.environ["SIREM_CACHE"] = str(cache)
hubert_dir = None
if {encoder!r} == "hubert":
    from sirem_cli.models.encoders import random_hubert
    enc = random_hubert(seed=0)
    hubert_dir = tmp / "hubert-base-random"
    if not hubert_dir.exists():
        enc.model.save_pretrained(hubert_dir)
    dim = 768
else:
    dim = 256
model = SiremNet(ModelConfig(embedding_dim=dim, image_size=(84, 84), encoder={encoder!r}))
ckpt = save_checkpoint(tmp / "m_{encoder}.pt", model)
run = ModelRunConfig(hubert=str(hubert_dir) if hubert_dir else None, device={device!r})
first = run_reconstruct(ckpt, [prepared], tmp / "r1_{encoder}.h5", run, split="all")
second = run_reconstruct(ckpt, [prepared], tmp / "r2_{encoder}.h5", run, split="all")
frames = sum(r[1] for r in first.rows)
result = dict(
    frames=frames,
    end_to_end_ms=sum(r[1] * r[2] for r in first.rows) / frames,
    cached_ms=sum(r[1] * r[3] for r in second.rows) / frames,
)
"""

TRAIN = """
import time
import numpy as np
import torch
from sirem_cli.training.config import TrainConfig
from sirem_cli.training.data import FrameData
from sirem_cli.training.loop import train
n = {frames}
rng = np.random.default_rng(0)
data = FrameData(
    embeddings=torch.from_numpy(rng.standard_normal((n, 768)).astype(np.float32)),
    arm_images=torch.from_numpy((rng.standard_normal((n, 13, 84, 84)) + 1j * rng.standard_normal((n, 13, 84, 84))).astype(np.complex64)),
    target=torch.from_numpy(rng.random((n, 84, 84)).astype(np.float32)),
    eba=torch.from_numpy(rng.random((n, 84, 84)).astype(np.float32)),
)
cfg = TrainConfig.build(epochs=2, encoder="hubert", device={device!r}, val_every=10)
t0 = time.perf_counter()
res = train(cfg, data, None, out_path=__import__("pathlib").Path({tmp!r}) / "train_bench.pt")
wall = time.perf_counter() - t0
epoch_s = res.records[-1]["seconds"]  # the second epoch: no start-up costs
result = dict(
    frames=n,
    s_per_epoch_per_1000=epoch_s * 1000 / n,
    fixed_s=wall - sum(r["seconds"] for r in res.records),
)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--train-frames", type=int, default=400)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_isolated(SETUP.format(tmp=tmp, seconds=args.seconds))
        for encoder in ("mel", "hubert"):
            results[encoder] = run_isolated(
                RECON.format(tmp=tmp, encoder=encoder, device=args.device)
            )
        results["train"] = run_isolated(
            TRAIN.format(tmp=tmp, frames=args.train_frames, device=args.device)
        )
    table = Table(
        title=f"sirem reconstruct / train on {args.device} "
        f"(acquisition: {ACQ_MS:.1f} ms per 13-arm frame)"
    )
    for col in ("case", "ms/frame", "frames/s", "vs acquisition"):
        table.add_column(col)
    for encoder in ("mel", "hubert"):
        for key, label in (("end_to_end_ms", "end to end"), ("cached_ms", "cached embeddings")):
            ms = results[encoder][key]
            table.add_row(
                f"{encoder}: {label}", f"{ms:.2f}", f"{1000 / ms:.0f}", f"{ACQ_MS / ms:.1f}x faster"
            )
    console = Console()
    console.print(table)
    console.print(
        f"training: {results['train']['s_per_epoch_per_1000']:.1f} s per epoch per 1000 frames "
        f"(batch 8, E = 768, 84 x 84; second epoch), plus {results['train']['fixed_s']:.1f} s "
        "of start-up and checkpoint writing"
    )
    results["device"] = args.device
    name = "bench_model.json" if args.device == "cpu" else "bench_model_cuda.json"
    write_json(args.out / name, results)


if __name__ == "__main__":
    main()
