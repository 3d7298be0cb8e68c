"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

:class:`Runtime` describes the process (rank, world size, device) and is what the training loop
sees; a single process is ``Runtime()``. :func:`init_runtime` reads torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and initializes the
process group: ``gloo`` on the CPU, ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).
The model is wrapped in DistributedDataParallel, the training frames are sharded with a
DistributedSampler (same permutation on every rank for a seed and epoch), validation frames are
split into contiguous blocks and their sums all-reduced, and only rank 0 writes checkpoints and
logs.

There is no second command line: ``sirem train`` itself joins the run when torchrun starts it::

    torchrun --nproc_per_node=2 --standalone -m sirem_cli train prepared.h5 --out model.pt

(``examples/`` has a multi-node script). This module does not import the training loop.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from torch import Tensor, nn

from sirem_cli.errors import BackendUnavailable, InputError


@dataclasses.dataclass
class Runtime:
    """Where this process stands in a (possibly) distributed run.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        distributed: True when a process group is initialized.
        device: the torch device this process computes on, or None to resolve it from the
            training configuration.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    def all_reduce_sum(self, values: Tensor) -> Tensor:
        """Sum a tensor over all processes (in place); identity in a single process."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def barrier(self) -> None:
        """Wait for every process; no-op in a single process."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """Wrap the model in DistributedDataParallel when distributed."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device is not None and self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def train_indices(self, n_frames: int, *, epoch: int, seed: int) -> np.ndarray:
        """This rank's shuffled training frame indices for an epoch (DistributedSampler).

        Every rank gets ceil(N / world_size) indices (the sampler pads by repeating frames), so
        all ranks take the same number of steps. With one process this is a seeded permutation
        of range(N), depending only on (seed, epoch).

        Returns:
            (ceil(N / world_size),) int64 indices.
        """
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(
            range(n_frames),  # type: ignore[arg-type]
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64)

    def eval_indices(self, n_frames: int) -> np.ndarray:
        """This rank's contiguous block of validation frame indices (no padding)."""
        return np.array_split(np.arange(n_frames, dtype=np.int64), self.world_size)[self.rank]


def resolve_device(spec: str, runtime: Runtime | None = None) -> torch.device:
    """Resolve "auto", "cpu", "cuda" or "cuda:N" to a torch device.

    Args:
        spec: the device option.
        runtime: when it carries a device (distributed CUDA runs), that device wins.

    Returns:
        The device.

    Raises:
        BackendUnavailable: CUDA was asked for and is not available.
    """
    if runtime is not None and runtime.device is not None:
        return runtime.device
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {spec!r} requested but CUDA is not available")
    return device


def init_runtime(device: str = "auto") -> Runtime:
    """Initialize the process group from torchrun's environment variables.

    Without ``WORLD_SIZE`` > 1 in the environment this returns a single-process runtime.

    Args:
        device: "auto", "cpu" or "cuda": with CUDA each process takes ``cuda:LOCAL_RANK`` and
            the ``nccl`` backend, otherwise ``gloo`` on the CPU.

    Returns:
        The runtime of this process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Runtime(device=resolve_device(device))
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device!r} requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        run_device = torch.device("cuda", local_rank)
    else:
        run_device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        distributed=True,
        device=run_device,
    )


def shutdown_runtime(runtime: Runtime) -> None:
    """Destroy the process group if this runtime created one."""
    if runtime.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
