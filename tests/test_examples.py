"""The scale-out examples: the SLURM array that prepares one subject per task and the
multi-node torchrun training script, run locally (dry run, and one node on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "examples" / "slurm_prepare.sh"
TORCHRUN = REPO / "examples" / "torchrun_train.sh"


def run(script: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(
        ["bash", str(script), *map(str, args)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def usc_tree(tmp_path: Path) -> Path:
    """File names in the USC layout (prepare is not run: the dry run only prints)."""
    root = tmp_path / "usc75"
    for subject, utterances in (("sub013", 2), ("sub009", 1), ("sub022", 1)):
        folder = root / subject / "2drt" / "raw"
        folder.mkdir(parents=True)
        for u in range(utterances):
            (folder / f"{subject}_2drt_0{u + 1}_vcv1_r1_raw.h5").touch()
    (root / ".hidden").mkdir()
    (root / ".hidden" / "sub999_2drt_01_vcv1_r1_raw.h5").touch()
    return root


def test_slurm_array_task_prepares_its_subject(usc_tree, tmp_path):
    listing = run(SLURM, "--list", usc_tree)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == ["0", "sub009", "1", "sub013", "2", "sub022"]
    out = tmp_path / "prepared"
    annot = tmp_path / "annot16"
    annot.mkdir()
    done = run(
        SLURM, usc_tree, out, annot, SLURM_ARRAY_TASK_ID="1", SIREM="echo sirem",
        PREPARE_ARGS="--coil-window 20",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "sirem", "prepare", str(usc_tree), f"{out}/sub013.h5", "--subject", "sub013",
        "--annot", str(annot), "--coil-window", "20", "--overwrite",
    ]  # fmt: skip
    # an existing subject file is skipped, unless OVERWRITE=1
    (out / "sub013.h5").touch()
    again = run(SLURM, usc_tree, out, SLURM_ARRAY_TASK_ID="1", SIREM="echo sirem")
    assert again.returncode == 0 and again.stdout == "" and "skipped" in again.stderr
    forced = run(SLURM, usc_tree, out, SLURM_ARRAY_TASK_ID="1", SIREM="echo sirem", OVERWRITE="1")
    assert forced.stdout.split()[:2] == ["sirem", "prepare"]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "not an array task: submit with sbatch --array=0-2"),
        ({"SLURM_ARRAY_TASK_ID": "3"}, "task 3: "),
        ({"SLURM_ARRAY_TASK_ID": "x"}, "task x: "),
    ],
)
def test_slurm_script_refuses_a_bad_task_in_one_line(usc_tree, tmp_path, env, needle):
    done = run(SLURM, usc_tree, tmp_path / "out", SIREM="echo sirem", **env)
    assert done.returncode == 2 and needle in done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_torchrun_script_multi_node_command(tmp_path):
    slurm = {"SLURM_JOB_NUM_NODES": "4", "SLURM_JOB_ID": "77", "MASTER_ADDR": "node01"}
    done = run(
        TORCHRUN, "model.pt", "a.h5", "b.h5", "--", "--encoder", "hubert",
        DRY_RUN="1", NPROC_PER_NODE="4", DEVICE="cuda", PYTHON="python", **slurm,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "srun", "--nodes", "4", "--ntasks-per-node", "1",
        "python", "-m", "torch.distributed.run", "--nnodes", "4", "--rdzv_backend", "c10d",
        "--rdzv_endpoint", "node01:29500", "--rdzv_id", "77", "--nproc_per_node", "4",
        "-m", "sirem_cli", "train", "a.h5", "b.h5", "--out", "model.pt", "--device", "cuda",
        "--encoder", "hubert",
    ]  # fmt: skip
    # several nodes and no rendezvous host: one clear line
    lost = run(TORCHRUN, "m.pt", "a.h5", DRY_RUN="1", NNODES="2")
    assert lost.returncode == 2 and "MASTER_ADDR" in lost.stderr
    missing = run(TORCHRUN, "m.pt", tmp_path / "none.h5", NNODES="1")
    assert missing.returncode == 2 and "none.h5: no such file" in missing.stderr


@pytest.mark.slow
def test_torchrun_script_trains_on_one_cpu_node(prepared_file, tmp_path):
    """One node, one process, gloo: the script's launch really trains (1 epoch, tiny corpus;
    about 10 s of CPU for launcher and worker together)."""
    prepared = tmp_path / "prepared.h5"  # a private copy: training caches embeddings in it
    prepared.write_bytes(prepared_file.read_bytes())
    out = tmp_path / "ddp.pt"
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    done = run(
        TORCHRUN, out, prepared, "--", "--encoder", "mel", "--epochs", "1",
        NNODES="1", NPROC_PER_NODE="1", DEVICE="cpu", PYTHON=sys.executable,
        PYTHONPATH=python_path, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    from sirem_cli.training.checkpoint import read_checkpoint

    assert read_checkpoint(out).encoder == "mel"
