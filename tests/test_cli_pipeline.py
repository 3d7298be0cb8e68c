"""The whole pipeline through the real CLI parser on the shared synthetic corpus."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from sirem_cli.cli import app
from sirem_cli.io.prepared import PreparedSet, ReconSet
from sirem_cli.nufft.backend import select_backend

runner = CliRunner()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory, prepared_file: Path) -> dict[str, Path]:
    """baseline (gridding) + train with and without audio + reconstruct, once for the module."""
    tmp = tmp_path_factory.mktemp("pipeline")
    prepared = tmp / "prepared.h5"  # a private copy, to check that nothing writes to it
    prepared.write_bytes(prepared_file.read_bytes())
    paths = {"prepared": prepared, "tmp": tmp, "prepared_sha": _sha256(prepared_file)}
    invoke("baseline", prepared, tmp / "gridding.h5", "--method", "gridding", "--split", "all")
    paths["gridding"] = tmp / "gridding.h5"
    for name, extra in (("sirem", []), ("sirem-no-audio", ["--no-audio"])):
        ckpt = tmp / f"{name}.pt"
        invoke(
            "train",
            prepared,
            "--encoder",
            "mel",
            "--epochs",
            "2",
            "--val-every",
            "1",
            "--device",
            "cpu",
            "--out",
            ckpt,
            *extra,
        )
        invoke(
            "reconstruct",
            "--ckpt",
            ckpt,
            prepared,
            tmp / f"{name}.h5",
            "--split",
            "all",
            "--device",
            "cpu",
        )
        paths[name] = tmp / f"{name}.h5"
        paths[f"{name}.pt"] = ckpt
    return paths


def test_baseline_writes_the_recon_format(work):
    rs = ReconSet(work["gridding"])
    assert rs.method == "gridding"
    frames = rs.read(rs.utterances[0].prefix)
    assert frames.dtype == np.float32 and frames.min() >= 0 and frames.max() == pytest.approx(1.0)
    assert rs.utterances[0].ms_per_frame > 0
    choice = select_backend("auto")  # the baseline ran with the default --device auto
    with h5py.File(work["gridding"], "r") as f:
        assert f.attrs["nufft_backend"] == choice.name and f.attrs["device"] == choice.device


def test_training_caches_embeddings_outside_the_prepared_file_and_logs(work):
    assert _sha256(work["prepared"]) == work["prepared_sha"]  # an input: never written
    with h5py.File(work["prepared"], "r") as f:
        sizes = {len(g["kspace"]) for g in f["utterances"].values()}
    entries = list((Path(os.environ["SIREM_CACHE"]) / "embeddings").glob("mel-*/*.npz"))
    assert len(entries) >= 3  # one per utterance
    assert {np.load(e)["embeddings"].shape[0] for e in entries} >= sizes
    log = json.loads(work["sirem.pt"].with_suffix(".log.json").read_text())
    assert len(log["records"]) == 2
    assert work["sirem.pt"].with_suffix(".log.csv").read_text().count("\n") >= 3


def test_reconstruct_single_branch(work):
    out = work["tmp"] / "mri-only.h5"
    invoke(
        "reconstruct",
        "--ckpt",
        work["sirem.pt"],
        work["prepared"],
        out,
        "--split",
        "all",
        "--device",
        "cpu",
        "--branch",
        "mri",
    )
    rs = ReconSet(out)
    assert rs.method == "sirem-mri"
    prefix = rs.utterances[0].prefix
    mri, fused = rs.read(prefix), ReconSet(work["sirem"]).read(prefix)
    assert mri.shape == fused.shape and 0 <= mri.min() and mri.max() <= 1
    assert not np.allclose(mri, fused)


def test_reconstruct_methods_and_timing(work):
    assert ReconSet(work["sirem"]).method == "sirem"
    assert ReconSet(work["sirem-no-audio"]).method == "sirem-no-audio"
    with h5py.File(work["sirem"], "r") as f:
        attrs = next(iter(f["utterances"].values())).attrs
        assert attrs["ms_per_frame"] >= attrs["ms_per_frame_cached"] > 0


def test_evaluate_report_and_export(work):
    tmp = work["tmp"]
    result = invoke(
        "evaluate",
        work["sirem"],
        work["sirem-no-audio"],
        work["gridding"],
        "--target",
        "truth",
        "--target",
        "reference",
        "--prepared",
        work["prepared"],
        "--metrics",
        "classic",
        "--out",
        tmp / "metrics",
    )
    assert "SSIM (LS)" in result.output and "PSNR (LS)" in result.output
    metrics = json.loads((tmp / "metrics" / "metrics.json").read_text())
    assert isinstance(metrics, dict | list)
    for name in ("metrics.csv", "metrics.md"):
        assert (tmp / "metrics" / name).stat().st_size > 0
    # --out writes the figures by default, each with its labels sidecar
    for name in ("figure2.png", "figure3.png"):
        assert (tmp / "metrics" / name).stat().st_size > 1000
    fig2 = json.loads((tmp / "metrics" / "figure2.labels.json").read_text())
    assert fig2["target"] == "truth" and "|SIREM − Ground truth|" in fig2["row_labels"]
    fig3 = json.loads((tmp / "metrics" / "figure3.labels.json").read_text())
    assert fig3["yscale"] == "log" and fig3["warmup_excluded"]
    # the real-time line at the data's own rate (13-arm frames: 12.8 fps), from the prepared file
    data_lines = [d["ms_per_frame"] for d in fig3["lines"] if d["kind"] == "data"]
    assert data_lines == [pytest.approx(13 * 6.004, rel=1e-3)]
    prefix = ReconSet(work["sirem"]).utterances[0].prefix
    invoke(
        "export",
        work["sirem"],
        tmp / "clip.mp4",
        "--prepared",
        work["prepared"],
        "--utterance",
        prefix,
    )
    from sirem_cli.report.video import probe_media

    info = probe_media(tmp / "clip.mp4")
    n_frames = ReconSet(work["sirem"]).utterances[0].n_frames
    assert info.video_frames == n_frames and info.has_audio
    assert info.audio_duration_s == pytest.approx(n_frames * 13 * 6.004e-3, abs=0.03)


def test_runtime_series_frame_rate_and_order_from_the_files(work, tmp_path):
    """Figure 3 reads the data's frame rate from the recon file, else from its source prepared
    file, and orders the utterances as the command reconstructed them (warm-up first)."""
    from sirem_cli.api.evaluate import runtime_series
    from sirem_cli.io.prepared import PreparedSet

    dataset = PreparedSet([work["prepared"]])
    order = [u.prefix for u in dataset.utterances]
    rate13 = 1 / (13 * 6.004e-3)
    (series,) = runtime_series([work["gridding"]], None)  # via the file's source attribute
    assert set(series.frame_rate_hz) == set(order)
    assert all(r == pytest.approx(rate13, rel=1e-3) for r in series.frame_rate_hz.values())
    with h5py.File(work["gridding"], "r") as f:
        ms = {p: float(g.attrs["ms_per_frame"]) for p, g in f["utterances"].items()}
    assert series.ms_per_frame == [ms[p] for p in order]
    # a recon file's own frame_rate_hz wins; without it and without a readable source: none
    own = tmp_path / "own.h5"
    own.write_bytes(work["gridding"].read_bytes())
    with h5py.File(own, "r+") as f:
        for g in f["utterances"].values():
            g.attrs["frame_rate_hz"] = 83.28
        f.attrs["source"] = json.dumps([str(tmp_path / "moved.h5")])
    (series,) = runtime_series([own], None)
    assert set(series.frame_rate_hz.values()) == {83.28}
    with h5py.File(own, "r+") as f:
        for g in f["utterances"].values():
            del g.attrs["frame_rate_hz"]
    assert runtime_series([own], None)[0].frame_rate_hz == {}
    assert set(runtime_series([own], dataset)[0].frame_rate_hz) == set(order)  # --prepared


def test_evaluate_names_rows_after_files_and_keeps_the_report_option(work, tmp_path):
    copy = tmp_path / "gridding_copy.h5"
    copy.write_bytes(work["gridding"].read_bytes())  # the same method in a second file
    result = invoke(
        "evaluate",
        work["gridding"],
        copy,
        "--target",
        "truth",
        "--prepared",
        work["prepared"],
        "--metrics",
        "psnr,psnr_ls",
        "--out",
        tmp_path / "metrics",
        "--no-figures",
        "--report",
        tmp_path / "report",
    )
    assert "Gridding (gridding.h5)" in result.output
    assert "Gridding (gridding_copy.h5)" in result.output
    methods = [
        r["method"]
        for r in json.loads((tmp_path / "metrics" / "metrics.json").read_text())["results"]
    ]
    assert methods == ["gridding (gridding.h5)", "gridding (gridding_copy.h5)"]
    assert not (tmp_path / "metrics" / "figure2.png").exists()  # --no-figures
    # --report (older scripts): tables.md there; --no-figures holds for it too
    assert "Gridding (gridding_copy.h5)" in (tmp_path / "report" / "tables.md").read_text()
    assert not (tmp_path / "report" / "figure2.png").exists()
    invoke(
        "evaluate",
        work["gridding"],
        copy,
        "--target",
        "truth",
        "--prepared",
        work["prepared"],
        "--metrics",
        "psnr",
        "--report",
        tmp_path / "report2",
    )
    fig3 = json.loads((tmp_path / "report2" / "figure3.labels.json").read_text())
    assert fig3["tick_labels"] == ["Gridding (gridding.h5)", "Gridding (gridding_copy.h5)"]
    result = runner.invoke(app, ["evaluate", str(copy), str(copy), "--target", "truth"])
    assert result.exit_code == 2 and "given twice" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["baseline", "{prepared}", "{tmp}/x.h5", "--method", "magic"], "'magic' is not one of"),
        (["baseline", "{prepared}", "{tmp}/x.h5", "--method", "wavelet", "--lam", "-1"], "--lam"),
        (["baseline", "{prepared}", "{tmp}/x.h5", "--method", "tv", "--iters", "0"], "--iters"),
        (["baseline", "{tmp}/missing.h5", "{tmp}/x.h5"], "no such file"),
        (
            ["baseline", "{prepared}", "{tmp}/x.h5", "--method", "wavelet", "--lam-spatial", "0.1"],
            "--lam-spatial",
        ),
        (["evaluate", "{gridding}", "--metrics", "sharpness"], "sharpness"),
        (["evaluate", "{prepared}"], "not a sirem-recon file"),
        (["reconstruct", "--ckpt", "{prepared}", "{prepared}", "{tmp}/x.h5"], "prepared.h5"),
    ],
)
def test_bad_input_one_line(work, args, needle):
    args = [a.format(**{k: str(v) for k, v in work.items()}) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not (work["tmp"] / "x.h5").exists()


def test_evaluate_refuses_mismatched_frames(work, tmp_path):
    from sirem_cli.io.prepared import ReconWriter

    rs = ReconSet(work["gridding"])
    bad = tmp_path / "short.h5"
    with ReconWriter(bad, method="short", source=[], config={}) as w:
        for ref in rs.utterances:
            w.write_recon(ref.prefix, rs.read(ref.prefix)[:-1], wall_s=1.0)
    result = runner.invoke(
        app, ["evaluate", str(bad), "--target", "truth", "--prepared", str(work["prepared"])]
    )
    assert result.exit_code == 2 and "frames" in result.output


def test_train_under_torchrun_with_two_cpu_processes(work):
    """`sirem train` joins a DistributedDataParallel run when launched by torchrun."""
    import os
    import subprocess
    import sys

    out = work["tmp"] / "ddp.pt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sirem_cli",
        "train",
        str(work["prepared"]),
        "--encoder",
        "mel",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from sirem_cli.training.checkpoint import read_checkpoint

    ckpt = read_checkpoint(out)
    assert ckpt.encoder == "mel"
    assert len(__import__("json").loads(out.with_suffix(".log.json").read_text())["records"]) == 1


def test_baseline_refuses_nan_kspace_and_other_formats(work, tmp_path):
    import shutil

    bad = tmp_path / "nan.h5"
    shutil.copy(work["prepared"], bad)
    with h5py.File(bad, "r+") as f:
        group = next(iter(f["utterances"].values()))
        k = group["kspace"]
        k[0, 0, 0, 0] = np.nan
    out = tmp_path / "x.h5"
    for source, needle in (
        (bad, "kspace holds NaN or Inf values (first at index 0"),
        (work["gridding"], "not a sirem-prepared file"),
    ):
        result = runner.invoke(app, ["baseline", str(source), str(out), "--split", "all"])
        assert result.exit_code == 2 and needle in result.output, result.output
        assert not out.exists()


def test_temporal_tv_with_spatial_tv(work, tmp_path):
    out = tmp_path / "ttv.h5"
    invoke(
        "baseline",
        work["prepared"],
        out,
        "--method",
        "ttv",
        "--iters",
        "5",
        "--lam-spatial",
        "0.01",
    )
    rs = ReconSet(out)
    assert rs.method == "ttv"
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["config"])["lam_spatial"] == 0.01


def test_reconstruct_warns_when_a_speaker_was_in_the_training_split(work, tmp_path):
    """The checkpoint records its training speakers; reconstructing them says so."""
    from sirem_cli.training.checkpoint import read_checkpoint

    subjects = read_checkpoint(work["sirem.pt"]).train_config["train_subjects"]
    train_refs = [u for u in PreparedSet([work["prepared"]]).utterances if u.split == "train"]
    assert sorted({u.subject for u in train_refs}) == subjects
    result = runner.invoke(
        app,
        ["reconstruct", "--ckpt", str(work["sirem.pt"]), str(work["prepared"]),
         str(tmp_path / "r.h5"), "--split", "train"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "was trained on" in result.output and subjects[0] in result.output
    clean = runner.invoke(
        app,
        ["reconstruct", "--ckpt", str(work["sirem.pt"]), str(work["prepared"]),
         str(tmp_path / "t.h5"), "--split", "test"],
    )  # fmt: skip
    assert clean.exit_code == 0 and "was trained on" not in clean.output
