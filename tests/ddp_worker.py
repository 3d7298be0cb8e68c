"""One rank of tests/test_ddp.py, started by torchrun (not a command of the package).

    torchrun --nproc_per_node=2 tests/ddp_worker.py OUT_DIR CONFIG_JSON

Builds the test's frames from their seeds, trains through the library's DDP runtime and saves
this rank's final parameters as OUT_DIR/rank<N>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_ddp import frames

from sirem_cli.training.config import TrainConfig
from sirem_cli.training.distributed import init_runtime, shutdown_runtime
from sirem_cli.training.loop import train


def main() -> None:
    out_dir, config_json = Path(sys.argv[1]), sys.argv[2]
    config = TrainConfig.from_dict(__import__("json").loads(config_json))
    runtime = init_runtime(config.device)
    try:
        result = train(
            config,
            frames(16, 0),
            frames(6, 1),
            out_path=out_dir / "ddp.pt",
            log_json=out_dir / "log.json",
            runtime=runtime,
        )
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        (out_dir / "ranks").mkdir(exist_ok=True)
        torch.save(state, out_dir / "ranks" / f"rank{runtime.rank}.pt")
    finally:
        shutdown_runtime(runtime)


if __name__ == "__main__":
    main()
