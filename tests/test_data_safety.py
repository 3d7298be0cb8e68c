"""Fault injection: no command may lose or corrupt a user's data (issue 11).

Every case of the issue is reproduced: outputs that are inputs, ``synth --overwrite`` on foreign
folders, ``kill -9`` at several points of each kind of write (subprocesses stopped at a named
point by ``SIREM_FAULT_PAUSE``), a real small full file system where the machine allows a tmpfs
mount and a simulated ENOSPC that always runs, NaN data and checkpoints, two writers of one
output, a wav with a wrong header rate, unchecked option values and misleading messages. Each
asserts a non-zero exit with one clear line and no traceback, inputs byte-identical (SHA-256),
no partial output and no stale temporary or lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sirem_cli.cli import app
from sirem_cli.errors import FormatError, OutputError
from sirem_cli.io import output as output_io

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
#: A temporary of the output policy (ours, or the mkdtemp names of earlier versions).
TEMPORARY = re.compile(r"^\..+\.(sirem-[A-Za-z0-9_]+-\d+-[0-9a-f]+|[a-z0-9_]{8})\.tmp$")
TINY_SYNTH = ["--subjects", "1", "--utterances", "1", "--seconds", "1"]


# -- helpers ------------------------------------------------------------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file under the given files/folders."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        out.update({str(p): sha(p) for p in files})
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporaries and lock files in ``folder`` (recursively)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if TEMPORARY.match(p.name) or p.name.endswith(".lock")
    )


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, *needles: str) -> str:
    """Exit 2, exactly one ``error:`` line (notes aside), no traceback; returns the line."""
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for needle in needles:
        assert needle in lines[0], text
    return lines[0]


def subprocess_env(**extra: str) -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": "1", **extra}


def kill_at(point: str, args: list[object], cwd: Path, timeout: float = 120.0) -> int:
    """Run ``sirem ARGS`` until it reaches fault point ``point``, then kill -9 it; its pid."""
    ready = cwd / f".ready-{point.replace(':', '-')}"
    ready.unlink(missing_ok=True)
    env = subprocess_env(SIREM_FAULT_PAUSE=point, SIREM_FAULT_READY=str(ready))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sirem_cli", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"ended (rc {proc.returncode}) before {point}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"never reached {point}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        ready.unlink(missing_ok=True)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def run_sirem(args: list[object], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sirem_cli", *map(str, args)],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A subprocess failed with one error line: no traceback, no crash (segfault, bus error)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Fatal Python error" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    others = [
        ln
        for ln in proc.stderr.splitlines()
        if ln.strip() and not ln.startswith(("error:", "note:", "warning:"))
    ]
    assert len(errors) == 1 and not others, proc.stderr
    for needle in needles:
        assert needle in errors[0], proc.stderr


# -- shared inputs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory, prepared_file: Path, synth_corpus: Path) -> dict[str, Path]:
    """Copies of the session's prepared file, a reconstruction, a small checkpoint, a corpus."""
    from sirem_cli.io.prepared import PreparedSet, ReconWriter
    from sirem_cli.models.sirem_net import ModelConfig, SiremNet
    from sirem_cli.training.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("safety")
    prepared = root / "prepared.h5"
    shutil.copy(prepared_file, prepared)
    dataset = PreparedSet([prepared])
    recon = root / "recon.h5"
    with ReconWriter(recon, method="reference", source=[prepared], config={}) as writer:
        for ref in dataset.utterances:
            writer.write_recon(
                ref.prefix, PreparedSet.read(ref, ["reference"])["reference"], wall_s=1
            )
    torch.manual_seed(0)
    model = SiremNet(ModelConfig(embedding_dim=256, decoder_hidden=(8,), encoder="mel"))
    ckpt = save_checkpoint(root / "model.pt", model)
    corpus = root / "corpus"  # one utterance of the session corpus
    raw = sorted(synth_corpus.rglob("*_raw.h5"))[0]
    prefix = raw.name.removesuffix("_raw.h5")
    for src in synth_corpus.rglob(f"{prefix}_*"):
        target = corpus / src.relative_to(synth_corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
    return {
        "root": root,
        "prepared": prepared,
        "recon": recon,
        "ckpt": ckpt,
        "corpus": corpus,
        "session_corpus": synth_corpus,
        "prefix": Path(prefix),
    }


@pytest.fixture
def work(base, tmp_path) -> dict[str, Path]:
    """``base`` plus a fresh folder, with the inputs' digests checked after the test."""
    before = digests(base["prepared"], base["recon"], base["ckpt"], base["corpus"])
    yield {**base, "tmp": tmp_path}
    assert digests(base["prepared"], base["recon"], base["ckpt"], base["corpus"]) == before
    assert leftovers(base["root"]) == []


# -- case 1: an output that is an input; existing outputs ----------------------------------------


@pytest.mark.parametrize("link", ["same", "hardlink", "symlink"])
def test_an_output_that_is_an_input_is_refused(work, link):
    tmp, prepared, recon = work["tmp"], work["prepared"], work["recon"]
    target = prepared
    if link == "hardlink":
        target = tmp / "alias.h5"
        os.link(prepared, target)
    elif link == "symlink":
        target = tmp / "alias.h5"
        target.symlink_to(prepared)
    prefix = str(work["prefix"])
    recon_alias = recon if link == "same" else tmp / "r.h5"
    export = ["export", recon, recon_alias, "--prepared", prepared, "--utterance", prefix]
    cases = [
        ["baseline", prepared, target, "--overwrite"],
        ["reconstruct", "--ckpt", work["ckpt"], prepared, target, "--overwrite"],
        ["train", prepared, "--out", target, "--overwrite", "--encoder", "mel"],
        [*export, "--png-strip", "--overwrite"],
    ]
    if link != "same":
        os.link(recon, tmp / "r.h5")
    for args in cases:
        assert_refused(cli(*args), "is also an input", "never writes over its inputs")
    raw = sorted(work["corpus"].rglob("*_raw.h5"))[0]
    assert_refused(cli("prepare", work["corpus"], raw, "--overwrite"), "is also an input")


def test_existing_outputs_are_replaced_only_with_overwrite(work):
    tmp, prepared = work["tmp"], work["prepared"]
    existing = {name: tmp / name for name in ("b.h5", "r.h5", "m.pt", "clip.png", "p.h5")}
    for path in existing.values():
        path.write_bytes(b"precious results")
    (tmp / "metrics").mkdir()
    (tmp / "metrics" / "metrics.csv").write_text("precious")
    before = digests(tmp)
    prefix = str(work["prefix"])
    for args in (
        ["baseline", prepared, existing["b.h5"]],
        ["reconstruct", "--ckpt", work["ckpt"], prepared, existing["r.h5"]],
        ["train", prepared, "--out", existing["m.pt"], "--encoder", "mel"],
        ["export", work["recon"], existing["clip.png"], "--utterance", prefix, "--png-strip"],
        ["evaluate", work["recon"], "--prepared", prepared, "--out", tmp / "metrics"],
        ["prepare", work["corpus"], existing["p.h5"]],
    ):
        assert_refused(cli(*args), "already exists", "--overwrite")
    assert digests(tmp) == before


def test_a_prepared_file_is_never_replaced_by_a_reconstruction(work):
    """`sirem baseline a.h5 b.h5` with b.h5 a prepared file (OUT forgotten), even --overwrite."""
    other = work["tmp"] / "b.h5"
    shutil.copy(work["prepared"], other)
    before = sha(other)
    for extra in ([], ["--overwrite"]):
        result = cli("baseline", work["prepared"], other, "--split", "all", *extra)
        assert_refused(result, "is a prepared file", "refusing to replace it")
    assert sha(other) == before


# -- case 2 and 11: synth --overwrite, umask ------------------------------------------------------


def test_synth_overwrite_replaces_only_its_own_folders(work, monkeypatch):
    tmp = work["tmp"]
    monkeypatch.chdir(tmp)
    (tmp / "notes.txt").write_text("my thesis")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "data.h5").write_text("weeks of work")
    before = digests(tmp)
    assert_refused(cli("synth", ".", "--overwrite"), "is the current folder")
    assert_refused(cli("synth", "..", "--overwrite"), "parent of the current folder")
    assert_refused(cli("synth", "mine", "--overwrite"), "not written by sirem synth")
    assert_refused(cli("synth", "notes.txt", "--overwrite"), "is a file")
    assert digests(tmp) == before
    old = os.umask(0o027)
    try:
        assert cli("synth", "corpus", *TINY_SYNTH).exit_code == 0
    finally:
        os.umask(old)
    corpus = tmp / "corpus"
    assert (corpus / ".sirem-synth.json").is_file()
    assert corpus.stat().st_mode & 0o777 == 0o750  # the umask, not mkdtemp's 0700
    wav = next(corpus.rglob("*_audio.wav"))
    assert wav.stat().st_mode & 0o777 == 0o640 and wav.parent.stat().st_mode & 0o777 == 0o750
    assert_refused(cli("synth", "corpus", *TINY_SYNTH), "already exists", "--overwrite")
    extra = corpus / "usc75" / "my_notes.txt"
    extra.write_text("added by the user")
    assert_refused(cli("synth", "corpus", *TINY_SYNTH, "--overwrite"), "did not write", "my_notes")
    assert extra.read_text() == "added by the user"
    extra.unlink()
    assert cli("synth", "corpus", *TINY_SYNTH, "--overwrite", "--seed", "1").exit_code == 0
    assert json.loads((corpus / ".sirem-synth.json").read_text())["config"]["seed"] == 1
    assert leftovers(tmp) == []


# -- case 3: kill -9 while caching embeddings; the cache --------------------------------------------


@pytest.mark.parametrize("command", ["reconstruct", "train"])
def test_kill_while_caching_embeddings_leaves_the_prepared_file_intact(work, command, monkeypatch):
    """The cache was written into the prepared file; a kill -9 there corrupted it."""
    tmp = work["tmp"]
    cache = tmp / "cache"
    monkeypatch.setenv("SIREM_CACHE", str(cache))
    prepared = work["prepared"]
    if command == "reconstruct":
        args = ["reconstruct", "--ckpt", work["ckpt"], prepared, tmp / "r.h5", "--split", "all"]
    else:
        args = ["train", prepared, "--encoder", "mel", "--epochs", "1", "--out", tmp / "m.pt"]
    pid = kill_at("cache:rename", [*args, "--device", "cpu"], tmp)
    entries = list(cache.rglob("*.npz"))
    temps = [p.name for p in cache.rglob("*") if TEMPORARY.match(p.name)]
    assert entries == [] and len(temps) == 1 and f"-{pid}-" in temps[0]  # its temporary only
    assert not (tmp / "r.h5").exists() and not (tmp / "m.pt").exists()
    if command == "reconstruct":  # the next run caches, removes the temporary, succeeds
        result = cli(*args, "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert len(list(cache.rglob("*.npz"))) == 3
        assert leftovers(tmp) == []


def test_embedding_cache_is_keyed_by_content_and_survives_damage(work, monkeypatch):
    from sirem_cli.io import embcache
    from sirem_cli.io.prepared import PreparedSet
    from sirem_cli.models.encoders import MelEncoder

    monkeypatch.setenv("SIREM_CACHE", str(work["tmp"] / "cache"))
    from sirem_cli.api.audio import utterance_embeddings

    ref = PreparedSet([work["prepared"]]).utterances[0]
    encoder = MelEncoder()
    values, _ = utterance_embeddings(ref, encoder)
    (entry,) = (work["tmp"] / "cache").rglob("*.npz")
    assert np.array_equal(np.load(entry)["embeddings"], values)
    entry.write_bytes(entry.read_bytes()[:100])  # damaged on disk: ignored, computed again
    again, _ = utterance_embeddings(ref, encoder)
    assert np.array_equal(again, values) and np.load(entry)["embeddings"].shape == values.shape
    other = embcache.encoder_key(embcache.encoder_identity(MelEncoder(n_mels=32)))
    assert other != entry.parent.name  # another encoder setting, another folder
    utterance_embeddings(ref, encoder, cache=False)  # --no-cache: nothing read or written
    assert len(list((work["tmp"] / "cache").rglob("*.npz"))) == 1


# -- kill -9 at several points of each write -----------------------------------------------------------


@pytest.mark.parametrize("point", ["atomic:start", "h5:flush", "atomic:rename"])
def test_kill_during_prepare_leaves_no_partial_output(work, point):
    tmp = work["tmp"]
    out = tmp / "p.h5"
    pid = kill_at(point, ["prepare", work["corpus"], out], tmp)
    assert not out.exists()
    stale = leftovers(tmp)
    assert any(str(pid) in name for name in stale) and "p.h5.lock" in stale
    result = cli("prepare", work["corpus"], out)  # the next run cleans up and works
    assert result.exit_code == 0, result.output
    assert f"took over the lock of pid {pid}" in result.output
    assert "removed 1 temporary left by an interrupted run" in result.output
    assert leftovers(tmp) == [] and out.stat().st_size > 1e6


@pytest.mark.parametrize(
    ("point", "args"),
    [
        ("atomic:rename", ["baseline", "{prepared}", "{out}", "--split", "all"]),
        ("h5:flush", ["reconstruct", "--ckpt", "{ckpt}", "{prepared}", "{out}", "--split", "all"]),
    ],
)
def test_kill_during_other_writes_leaves_the_old_output(work, point, args):
    tmp = work["tmp"]
    out = tmp / "out"
    out.write_bytes(b"the previous result")
    before = digests(out)
    args = [a.format(prepared=work["prepared"], ckpt=work["ckpt"], out=out) for a in args]
    kill_at(point, [*args, "--overwrite"], tmp)
    assert digests(out) == before  # the old output is untouched until the rename
    assert leftovers(tmp)
    result = cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert digests(out) != before and leftovers(tmp) == []


# -- case 7 (and 11): two writers of one output --------------------------------------------------------


def test_a_second_writer_fails_at_once_naming_the_first(work):
    tmp = work["tmp"]
    out = tmp / "p.h5"
    corpus = work["session_corpus"]
    ready = tmp / "ready"
    env = subprocess_env(SIREM_FAULT_PAUSE="h5:flush", SIREM_FAULT_READY=str(ready))
    first = subprocess.Popen(
        [sys.executable, "-m", "sirem_cli", "prepare", str(corpus), str(out), "--subject",
         "sub009"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        result = cli("prepare", corpus, out, "--subject", "sub013", "--overwrite")
        line = assert_refused(result, "another sirem is writing it", f"pid {first.pid}", "prepare")
        assert time.monotonic() - started < 5, line  # at once, not after the other finished
    finally:
        first.kill()
        first.wait()
    assert not out.exists()


def test_stale_temporaries_of_an_earlier_version_are_removed_and_named(work):
    tmp = work["tmp"]
    old = tmp / ".r.h5.k2j4_x9q.tmp"  # what tempfile.mkdtemp made before the policy
    old.mkdir()
    (old / "r.h5").write_bytes(b"x" * 1000)
    result = cli("baseline", work["prepared"], tmp / "r.h5", "--split", "all")
    assert result.exit_code == 0, result.output
    assert "removed 1 temporary" in result.output and ".r.h5.k2j4_x9q.tmp" in result.output
    assert leftovers(tmp) == []


# -- case 4: a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A real 1 MB file system (tmpfs), or a skip where this machine does not allow mounts."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_full_disk(work, small_fs):
    """prepare and synth segfaulted, baseline died of a bus error: now one line each."""
    tmp = work["tmp"]
    checked = run_sirem(["prepare", work["corpus"], small_fs / "p.h5"], tmp)
    assert_clean_failure(checked, "needs about", "free on")
    for args in (
        ["prepare", work["corpus"], small_fs / "p.h5"],
        ["synth", small_fs / "corpus", *TINY_SYNTH],
        ["baseline", work["prepared"], small_fs / "r.h5", "--split", "all"],
    ):  # past the free-space check: the writes themselves hit the full disk
        proc = run_sirem(args, tmp, SIREM_NO_SPACE_CHECK="1")
        assert_clean_failure(proc, "disk full while writing", "nothing was written")
        assert list(small_fs.iterdir()) == []
    (small_fs / "m.pt").write_bytes(b"a good checkpoint")
    with pytest.raises(OutputError, match="needs about"):
        _save_tiny_checkpoint(small_fs / "m.pt", size=600_000)
    assert (small_fs / "m.pt").read_bytes() == b"a good checkpoint"
    assert leftovers(small_fs) == []


def _save_tiny_checkpoint(path: Path, size: int = 8) -> Path:
    from sirem_cli.models.sirem_net import ModelConfig, SiremNet
    from sirem_cli.training.checkpoint import save_checkpoint

    model = SiremNet(ModelConfig(embedding_dim=size, image_size=(8, 8), decoder_hidden=(8,)))
    return save_checkpoint(path, model)


def test_simulated_full_disk(work, monkeypatch):
    """ENOSPC injected into the writer layer (runs everywhere): one line, nothing half-written."""
    tmp = work["tmp"]
    monkeypatch.setattr(output_io, "_written_by_process", 0)
    monkeypatch.setenv("SIREM_FAULT_ENOSPC_AFTER", "200000")
    (tmp / "p.h5").write_bytes(b"previous")
    result = cli("prepare", work["corpus"], tmp / "p.h5", "--overwrite")
    assert_refused(result, "disk full while writing", "the existing file is unchanged")
    assert (tmp / "p.h5").read_bytes() == b"previous"
    monkeypatch.setattr(output_io, "_written_by_process", 0)
    result = cli("baseline", work["prepared"], tmp / "r.h5", "--split", "all")
    assert_refused(result, "disk full while writing", "nothing was written")
    monkeypatch.delenv("SIREM_FAULT_ENOSPC_AFTER")
    good = _save_tiny_checkpoint(tmp / "m.pt")
    before = sha(good)
    monkeypatch.setattr(output_io, "_written_by_process", 0)
    monkeypatch.setenv("SIREM_FAULT_ENOSPC_AFTER", "100")
    with pytest.raises(OutputError, match="disk full while writing"):
        _save_tiny_checkpoint(good)  # torch.save through the guarded file
    assert sha(good) == before
    # free space checked first, with the file system named
    monkeypatch.delenv("SIREM_FAULT_ENOSPC_AFTER")
    monkeypatch.setattr(output_io, "free_bytes", lambda _path: 5_000_000)
    result = cli("prepare", work["corpus"], tmp / "q.h5")
    assert_refused(result, "needs about", "5 MB free on /")
    assert leftovers(tmp) == [] and not (tmp / "q.h5").exists() and not (tmp / "r.h5").exists()


def test_write_errors_become_one_line():
    """EIO, EDQUOT and torch's errno-less failure on a full disk are recognized."""
    path = Path("/tmp/x.h5")
    eio = output_io.write_error(OSError(errno.EIO, "Input/output error"), path)
    assert "I/O error while writing" in str(eio)
    wrapped = RuntimeError("file write failed")
    wrapped.__context__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert "disk quota exceeded" in str(output_io.write_error(wrapped, path))
    assert output_io.write_error(ValueError("a bug"), path) is None


# -- case 5 and 6: training without validation, NaN data, NaN checkpoints -------------------------------


def test_train_without_validation_keeps_the_last_epoch_and_nan_never_replaces_it(work):
    tmp = work["tmp"]
    only_train = tmp / "train-only.h5"
    shutil.copy(work["prepared"], only_train)
    with h5py.File(only_train, "r+") as f:
        for group in f["utterances"].values():
            group.attrs["split"] = "train"
    ckpt = tmp / "m.pt"
    args = ["train", only_train, "--encoder", "mel", "--epochs", "1", "--device", "cpu"]
    result = cli(*args, "--out", ckpt)
    assert result.exit_code == 0, result.output
    assert "kept the last epoch 1 (no validation split)" in result.output
    assert "--splits" in result.output
    good = sha(ckpt)
    with h5py.File(only_train, "r+") as f:  # a NaN in a reference frame
        group = next(iter(f["utterances"].values()))
        prefix = group.name.rsplit("/", 1)[1]
        group["reference"][3, 10, 10] = np.nan
    line = assert_refused(cli(*args, "--out", ckpt, "--overwrite"), "NaN", prefix, "reference")
    assert str(only_train) in line
    assert sha(ckpt) == good
    with h5py.File(only_train, "r+") as f:
        group = f["utterances"][prefix]
        group["reference"][3, 10, 10] = 0.5
        group["smaps"][0, 40, 40] = np.nan  # NaN coil maps: named with file and utterance
    line = assert_refused(cli("baseline", only_train, tmp / "g.h5", "--split", "all"), "smaps")
    assert str(only_train) in line and prefix in line
    assert leftovers(tmp) == []


def test_training_that_diverges_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from sirem_cli.training.config import TrainConfig
    from sirem_cli.training.data import FrameData
    from sirem_cli.training.loop import TrainingDiverged, train

    gen = torch.Generator().manual_seed(0)

    def frames(n: int) -> FrameData:
        return FrameData(
            torch.randn(n, 5, generator=gen),
            torch.randn(n, 13, 8, 8, dtype=torch.complex64, generator=gen),
            torch.rand(n, 8, 8, generator=gen),
            torch.rand(n, 8, 8, generator=gen),
        )

    config = TrainConfig.build(
        image_size=(8, 8), decoder_hidden=(8,), epochs=3, batch_size=4, val_every=1,
        device="cpu", encoder="mel",
    )  # fmt: skip
    out = tmp_path / "m.pt"
    steps = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_

    def poisoned_clip(params, max_norm):  # from the 2nd epoch on the gradients are NaN
        steps["n"] += 1
        if steps["n"] > 2:
            for p in params:
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
        return clip(params, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned_clip)
    with pytest.raises(TrainingDiverged, match="epoch 2") as error:
        train(config, frames(8), frames(4), out_path=out)
    assert "keeps the weights of epoch 1" in str(error.value)
    from sirem_cli.training.checkpoint import read_checkpoint

    assert read_checkpoint(out).info["epoch"] == 1  # finite, loadable
    assert leftovers(tmp_path) == []


def test_reconstruct_refuses_checkpoints_with_nan_weights_or_bad_fields(work):
    tmp = work["tmp"]
    payload = torch.load(work["ckpt"], weights_only=True)
    nan = dict(payload, state_dict=dict(payload["state_dict"]))
    nan["state_dict"]["arm_logits"] = torch.full_like(payload["state_dict"]["arm_logits"], np.nan)
    torch.save(nan, tmp / "nan.pt")
    torch.save(dict(payload, image_size=84), tmp / "size.pt")
    for name, needle in (("nan.pt", "NaN or Inf (arm_logits)"), ("size.pt", "image_size")):
        result = cli("reconstruct", "--ckpt", tmp / name, work["prepared"], tmp / "r.h5")
        assert_refused(result, needle)
    assert not (tmp / "r.h5").exists()
    from sirem_cli.io.prepared import ReconWriter
    from sirem_cli.training.checkpoint import NonFiniteWeights, write_payload

    with pytest.raises(FormatError, match="holds NaN or Inf"):  # nor any NaN reconstruction
        with ReconWriter(tmp / "r.h5", method="x", source=[], config={}) as writer:
            writer.write_recon("u", np.full((2, 4, 4), np.nan), wall_s=1.0)
    assert not (tmp / "r.h5").exists()

    with pytest.raises(NonFiniteWeights):
        write_payload(tmp / "written.pt", nan)
    assert not (tmp / "written.pt").exists()


# -- case 8: audio whose header rate is wrong ---------------------------------------------------------


@pytest.mark.parametrize("strict", [[], ["--strict"]])
def test_audio_with_a_wrong_header_rate_is_an_error(work, strict):
    import soundfile

    corpus = work["tmp"] / "corpus"
    shutil.copytree(work["corpus"], corpus)
    wav = next(corpus.rglob("*_audio.wav"))
    audio, _rate = soundfile.read(wav, dtype="int16")
    soundfile.write(wav, audio, 8000, subtype="PCM_16")  # 20 kHz samples labelled 8 kHz
    result = cli("prepare", corpus, work["tmp"] / "p.h5", *strict)
    needles = ("the wav header says 8000 Hz but the samples fit the scan at 20000 Hz",)
    line = assert_refused(result, str(wav), *needles, "--audio-tolerance 1 s")
    assert re.search(r"audio lasts \d+\.\d\d s but the scan \d+\.\d\d s \(2\.5\dx", line)
    assert not (work["tmp"] / "p.h5").exists()


# -- case 9 and 10: unchecked values, misleading messages ---------------------------------------------


def test_bad_values_name_their_flag_or_attribute(work):
    tmp, prepared, recon = work["tmp"], work["prepared"], work["recon"]
    prefix = str(work["prefix"])
    odd = tmp / "odd.h5"
    shutil.copy(recon, odd)
    with h5py.File(odd, "r+") as f:
        f.attrs["format_version"] = "one"
    strip = ["export", recon, tmp / "s.png", "--utterance", prefix, "--png-strip"]
    cases = [
        (["evaluate", odd, "--prepared", prepared], "format_version attribute is 'one'"),
        ([*strip, "--frames", "-3"], "--frames must be >= 1"),
        (
            ["prepare", work["corpus"], tmp / "p.h5", "--audio-context", "1e9"],
            "--audio-context must be between 0 and 5 s",
        ),
        (["evaluate", recon, "--prepared", prepared, "--fid-frames", "-5"], "--fid-frames must"),
        (["train", prepared, "--out", tmp / "m.pt", "--epochs", "0"], "--epochs must be >= 1"),
        (["train", prepared, "--out", tmp / "m.pt", "--lr", "-1"], "--lr must be"),
    ]
    for args, needle in cases:
        assert_refused(cli(*args), needle)
    assert sorted(p.name for p in tmp.iterdir()) == ["odd.h5"]


def test_messages_say_what_is_wrong(work):
    tmp = work["tmp"]
    text = tmp / "notes.txt"
    text.write_text("not a checkpoint at all")
    result = cli("reconstruct", "--ckpt", text, work["prepared"], tmp / "r.h5")
    line = assert_refused(result, "not a sirem checkpoint")
    assert "pickled" not in line
    line = assert_refused(cli("reconstruct", "--ckpt", work["prepared"], work["prepared"],
                              tmp / "r.h5"), "is an HDF5 file")  # fmt: skip
    from sirem_cli.metrics.perceptual import _read_state_dict

    for content in (b"\x80\x02garbage", b"PK\x03\x04broken zip", b"\x00" * 64):
        weights = tmp / "alex.pth"
        weights.write_bytes(content)
        with pytest.raises(FormatError) as error:
            _read_state_dict(weights)
        message = str(error.value)
        assert str(weights) in message and "weights_only" not in message and "\n" not in message
    assert not (tmp / "r.h5").exists()


def test_lock_left_by_another_machine_is_not_taken_over(tmp_path):
    out = tmp_path / "p.h5"
    lock = output_io.lock_path_for(out)
    info = {"pid": 1, "host": "elsewhere", "command": "sirem prepare", "started": "x"}
    lock.write_text(json.dumps(info))
    with pytest.raises(OutputError, match=r"pid 1 on elsewhere.*remove .*p\.h5\.lock"):
        with output_io.atomic_path(out) as tmp:
            tmp.write_text("x")
    assert not out.exists() and lock.exists()
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()


def test_kill_during_synth_overwrite(work):
    """Killed before the swap: the old corpus is intact. Killed between the two renames (the old
    corpus moved aside): the next run removes both temporaries and writes the corpus."""
    tmp = work["tmp"]
    out = tmp / "corpus"
    assert cli("synth", out, *TINY_SYNTH).exit_code == 0
    before = digests(out)
    kill_at("atomic:rename", ["synth", out, *TINY_SYNTH, "--overwrite", "--seed", "1"], tmp)
    assert digests(out) == before and leftovers(tmp)
    kill_at("atomic:swap", ["synth", out, *TINY_SYNTH, "--overwrite"], tmp)
    assert not out.exists() and len([p for p in leftovers(tmp) if p.endswith(".tmp")]) == 2
    result = cli("synth", out, *TINY_SYNTH)
    assert result.exit_code == 0, result.output
    assert "removed 2 temporaries" in result.output and leftovers(tmp) == []
