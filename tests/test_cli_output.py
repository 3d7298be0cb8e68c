"""``--quiet`` and ``--json`` on every command, and evaluate's held-out check.

``--json``: stdout is exactly one JSON object (it parses whole) with the command's summary;
``--quiet``: nothing on stdout or stderr on success, the one error line on failure. The
CliRunner of click >= 8.2 keeps stdout and stderr apart (``result.stdout``, ``result.stderr``);
one test runs the real entry point in a subprocess to check the same on real streams.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from sirem_cli.api.evaluate import held_out_check
from sirem_cli.cli import app
from sirem_cli.cli._common import jsonable
from sirem_cli.io.prepared import PreparedSet, ReconSet, ReconWriter

runner = CliRunner()

NOTES = ("notes", "warnings")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def as_json(res, command: str, keys: set[str]) -> dict:
    """The one JSON object of a successful ``--json`` run (nothing else on stdout)."""
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # raises if anything but one JSON document is on stdout
    assert isinstance(doc, dict) and doc["command"] == command
    assert keys | {"sirem_version", *NOTES} <= set(doc), sorted(doc)
    assert all(isinstance(doc[k], list) and all(isinstance(s, str) for s in doc[k]) for k in NOTES)
    return doc


def assert_silent(res) -> None:
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and res.stderr == ""


def assert_one_error(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr


def _leaf_commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _leaf_commands(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


def test_every_registered_command_takes_quiet_and_json():
    leaves = dict(_leaf_commands(typer.main.get_command(app)))
    assert {"synth", "prepare", "baseline", "train", "reconstruct", "evaluate", "export"} <= set(
        leaves
    )
    assert {"weights fetch", "weights status"} <= set(leaves)
    for name, cmd in leaves.items():
        opts = {o for p in cmd.params for o in p.opts}
        assert {"--quiet", "-q", "--json"} <= opts, name


def test_jsonable_paths_numpy_nan_and_dataclasses():
    @dataclasses.dataclass
    class Row:
        path: Path
        values: tuple[float, ...]

    doc = jsonable(
        {
            "p": Path("a/b.h5"),
            "x": np.float32(1.5),
            "n": np.int64(3),
            "arr": np.array([[1.0, np.nan]]),
            "bad": [float("nan"), math.inf, -math.inf],
            "row": Row(Path("c"), (1.0, 2.0)),
            (1.0, 2.0): {"k"},
        }
    )
    assert doc == {
        "p": "a/b.h5",
        "x": 1.5,
        "n": 3,
        "arr": [[1.0, None]],
        "bad": [None, None, None],
        "row": {"path": "c", "values": [1.0, 2.0]},
        "[1.0, 2.0]": ["k"],
    }
    json.dumps(doc, allow_nan=False)  # strict JSON: jq and every parser read it
    with pytest.raises(TypeError, match="object"):
        jsonable(object())


# --- synth and prepare --------------------------------------------------------------------


def test_synth_json_quiet_and_error(tmp_path):
    args = ("--subjects", "1", "--utterances", "1", "--seconds", "1")
    doc = as_json(
        invoke("synth", tmp_path / "c", *args, "--json"), "synth", {"out", "config", "utterances"}
    )
    assert doc["out"] == str(tmp_path / "c") and (tmp_path / "c" / "usc75").is_dir()
    assert doc["config"]["subjects"] == 1 and doc["config"]["seconds"] == 1.0
    (u,) = doc["utterances"]
    assert u["subject"] in u["prefix"] and u["n_acquisitions"] > 0 and u["seconds"] > 0.5
    assert_silent(invoke("synth", tmp_path / "q", *args, "--quiet"))
    assert (tmp_path / "q" / "usc75").is_dir()
    assert_one_error(invoke("synth", tmp_path / "q", *args, "-q"), "--overwrite")


def test_prepare_json_quiet_and_error(tmp_path, synth_corpus):
    out = tmp_path / "p.h5"
    res = invoke("prepare", synth_corpus, out, "--subject", "sub009", "--json")
    doc = as_json(res, "prepare", {"out", "utterances", "skipped", "frames", "wall_s"})
    held = PreparedSet([out]).utterances
    assert [u["prefix"] for u in doc["utterances"]] == [u.prefix for u in held]
    assert (
        doc["frames"]
        == sum(u.n_frames for u in held)
        == sum(u["frames"] for u in doc["utterances"])
    )
    assert doc["skipped"] == [] and any("split" in n for n in doc["notes"])
    assert "note: " in res.stderr  # the notes stay on stderr too (no --quiet)
    assert_silent(invoke("prepare", synth_corpus, tmp_path / "q.h5", "--subject", "sub009", "-q"))
    assert_one_error(invoke("prepare", tmp_path / "nowhere", tmp_path / "x.h5", "-q"), "nowhere")


# --- baseline, train, reconstruct, evaluate, export on the shared prepared file ------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prepared_file: Path) -> dict:
    """gridding, a 1-epoch mel model and its reconstruction of every split, with --json."""
    tmp = tmp_path_factory.mktemp("cli-output")
    res = {"tmp": tmp, "prepared": prepared_file}
    res["baseline"] = invoke(
        "baseline", prepared_file, tmp / "g.h5", "--split", "all", "--device", "cpu", "--json"
    )
    res["train"] = invoke(
        "train", prepared_file, "--encoder", "mel", "--epochs", "1", "--device", "cpu",
        "--out", tmp / "m.pt", "--json",
    )  # fmt: skip
    res["reconstruct"] = invoke(
        "reconstruct", "--ckpt", tmp / "m.pt", prepared_file, tmp / "s.h5", "--split", "all",
        "--device", "cpu", "--json",
    )  # fmt: skip
    return res


def test_baseline_json_quiet_and_error(runs):
    doc = as_json(runs["baseline"], "baseline", {"out", "method", "lam", "rows", "backend"})
    assert doc["method"] == "gridding" and doc["lam"] is None and doc["lam_search"] == []
    frames = {u.prefix: u.n_frames for u in PreparedSet([runs["prepared"]]).utterances}
    assert {r["utterance"]: r["frames"] for r in doc["rows"]} == frames
    recon = ReconSet(runs["tmp"] / "g.h5")
    assert [r["ms_per_frame"] for r in doc["rows"]] == pytest.approx(
        [u.ms_per_frame for u in recon.utterances]
    )
    tmp, prepared = runs["tmp"], runs["prepared"]
    assert_silent(invoke("baseline", prepared, tmp / "gq.h5", "--device", "cpu", "--quiet"))
    assert_one_error(invoke("baseline", tmp / "none.h5", tmp / "gx.h5", "-q"), "none.h5")
    # --json --quiet: the JSON, and nothing on stderr (the no-CUDA note only in the JSON)
    res = invoke("baseline", prepared, tmp / "gj.h5", "--device", "cpu", "--json", "-q")
    doc = as_json(res, "baseline", {"rows"})
    assert res.stderr == "" and len(doc["rows"]) == 1  # the test split


def test_train_json_quiet_and_error(runs):
    doc = as_json(
        runs["train"],
        "train",
        {"checkpoint", "best_epoch", "best_val_psnr", "arm_weights", "epochs", "log_json"},
    )
    assert doc["checkpoint"] == str(runs["tmp"] / "m.pt") and Path(doc["checkpoint"]).is_file()
    log = json.loads(Path(doc["log_json"]).read_text())
    assert doc["best_epoch"] == 1 and len(doc["epochs"]) == 1
    assert doc["best_val_psnr"] == pytest.approx(log["records"][0]["val_psnr"])
    assert len(doc["arm_weights"]) == 13 and all(0 <= p <= 1 for p in doc["arm_weights"])
    assert doc["arm_weights"] == pytest.approx(doc["epochs"][0]["p"])
    tmp, prepared = runs["tmp"], runs["prepared"]
    res = invoke(
        "train", prepared, "--encoder", "mel", "--epochs", "1", "--device", "cpu",
        "--out", tmp / "mq.pt", "--quiet",
    )  # fmt: skip
    assert_silent(res)
    assert (tmp / "mq.pt").is_file()
    assert_one_error(invoke("train", tmp / "none.h5", "--encoder", "mel", "-q"), "none.h5")


def test_reconstruct_json_quiet_and_error(runs):
    doc = as_json(runs["reconstruct"], "reconstruct", {"out", "method", "rows", "backend"})
    assert doc["method"] == "sirem" and len(doc["rows"]) == 3
    assert all(r["ms_per_frame"] >= r["ms_per_frame_cached"] > 0 for r in doc["rows"])
    # the training speaker is reconstructed here (--split all): said on stderr and in the JSON
    (line,) = doc["warnings"]
    assert "not held-out" in line and "warning: " in runs["reconstruct"].stderr
    tmp, prepared = runs["tmp"], runs["prepared"]
    res = invoke(
        "reconstruct", "--ckpt", tmp / "m.pt", prepared, tmp / "sq.h5", "--split", "all",
        "--device", "cpu", "-q",
    )  # fmt: skip
    assert_silent(res)  # --quiet silences the warning too
    res = invoke("reconstruct", "--ckpt", tmp / "none.pt", prepared, tmp / "sx.h5", "-q")
    assert_one_error(res, "none.pt")


def test_evaluate_json_quiet_warning_and_error(runs):
    tmp, prepared = runs["tmp"], runs["prepared"]
    common = ("--prepared", prepared, "--target", "reference", "--metrics", "classic")
    res = invoke(
        "evaluate", tmp / "s.h5", tmp / "g.h5", *common, "--out", tmp / "ev", "--no-figures",
        "--json",
    )  # fmt: skip
    doc = as_json(res, "evaluate", {"methods", "files", "results", "report_files"})
    assert doc["methods"] == ["sirem", "gridding"]
    assert set(doc["files"]) == {"json", "csv", "md"}
    assert all(Path(p).is_file() for p in doc["files"].values()) and doc["report_files"] == []
    written = json.loads(Path(doc["files"]["json"]).read_text())["results"]
    assert doc["results"] == written  # the same numbers as metrics.json
    assert {(r["method"], r["target"]) for r in doc["results"]} == {
        ("sirem", "reference"),
        ("gridding", "reference"),
    }
    assert all(r["summary"]["psnr"]["mean"] > 0 for r in doc["results"])
    # s.h5's checkpoint was trained on the train split's speaker: one warning, for s.h5 only
    (line,) = doc["warnings"]
    assert line.startswith(f"{tmp / 's.h5'}: ") and "not held-out" in line
    train_subject = next(
        u.subject for u in PreparedSet([prepared]).utterances if u.split == "train"
    )
    assert train_subject in line
    assert res.stderr.count("warning: ") == 1
    assert_silent(invoke("evaluate", tmp / "s.h5", *common, "-q"))
    res = invoke("evaluate", tmp / "s.h5", "--target", "truth", "--metrics", "classic", "-q")
    assert_one_error(res, "--prepared")


def test_evaluate_warns_only_for_speakers_the_model_saw(runs):
    tmp, prepared = runs["tmp"], runs["prepared"]
    res = invoke(
        "reconstruct", "--ckpt", tmp / "m.pt", prepared, tmp / "test.h5", "--split", "test",
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert as_json(res, "reconstruct", {"rows"})["warnings"] == []
    config = ReconSet(tmp / "test.h5").config
    assert config["train_subjects"] and config["checkpoint"] == str(tmp / "m.pt")
    res = invoke(
        "evaluate", tmp / "test.h5", "--metrics", "classic", "--prepared", prepared, "--json"
    )
    assert as_json(res, "evaluate", {"results"})["warnings"] == []
    assert "warning" not in res.stderr
    # without --prepared, the speakers come from the file's source attribute
    res = invoke("evaluate", tmp / "s.h5", "--target", tmp / "g.h5", "--metrics", "mse", "--json")
    assert len(as_json(res, "evaluate", {"results"})["warnings"]) == 1


def test_held_out_check(tmp_path, prepared_file):
    refs = PreparedSet([prepared_file]).utterances
    frames = np.zeros((2, 4, 4), np.float32)

    def recon(name: str, subjects: list[str], source: list[str]) -> ReconSet:
        path = tmp_path / name
        config = {"checkpoint": "m.pt", "train_subjects": subjects}
        with ReconWriter(path, method="sirem", source=source, config=config) as w:
            for ref in refs:
                w.write_recon(ref.prefix, frames, wall_s=0.1)
        return ReconSet(path)

    dataset = PreparedSet([prepared_file])
    seen = recon("seen.h5", [refs[1].subject, "sub999"], [str(prepared_file)])
    warning, note = held_out_check(seen, dataset)
    assert note is None and warning is not None
    assert warning.startswith(f"{seen.path}: the checkpoint m.pt was trained on {refs[1].subject}")
    assert "sub999" not in warning
    assert held_out_check(seen, None) == (warning, None)  # found through the source attribute
    unseen = recon("unseen.h5", ["sub999"], [str(prepared_file)])
    assert held_out_check(unseen, dataset) == (None, None)
    lost = recon("lost.h5", [refs[0].subject], [str(tmp_path / "moved.h5")])
    warning, note = held_out_check(lost, None)
    assert warning is None and "--prepared" in note
    assert held_out_check(lost, dataset)[0] is not None
    baseline = tmp_path / "baseline.h5"
    with ReconWriter(baseline, method="gridding", source=[], config={"lam": None}) as w:
        w.write_recon(refs[0].prefix, frames, wall_s=0.1)
    assert held_out_check(ReconSet(baseline), None) == (None, None)


def test_export_json_quiet_and_error(runs):
    tmp, prepared = runs["tmp"], runs["prepared"]
    prefix = ReconSet(tmp / "g.h5").utterances[0].prefix
    args = ("--prepared", prepared, "--utterance", prefix)
    res = invoke("export", tmp / "g.h5", tmp / "strip.png", *args, "--png-strip", "--json")
    doc = as_json(res, "export", {"out", "kind", "utterance"})
    assert doc == {**doc, "out": str(tmp / "strip.png"), "kind": "png", "utterance": prefix}
    assert (tmp / "strip.png").stat().st_size > 0
    assert_silent(invoke("export", tmp / "g.h5", tmp / "v.mp4", *args, "-q"))  # ffmpeg quiet too
    assert (tmp / "v.mp4").stat().st_size > 0
    res = invoke("export", tmp / "g.h5", tmp / "x.png", "--utterance", "nope", "--png-strip", "-q")
    assert_one_error(res, "nope")


# --- weights (fetch is tested with a local server in test_weights.py) ----------------------


def test_weights_status_json_lists_the_files_then_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv("SIREM_WEIGHTS_REGISTRY", raising=False)
    res = invoke("weights", "status", "--weights-dir", tmp_path / "w", "--json")
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["command"] == "weights status" and len(doc["files"]) == 3
    assert all(f["verified"] is None and f["path"] is None for f in doc["files"])
    assert doc["searched"][0] == str(tmp_path / "w")
    assert len(res.stderr.splitlines()) == 1 and "missing" in res.stderr
    res = invoke("weights", "status", "--metric", "fid", "--weights-dir", tmp_path / "w", "-q")
    assert_one_error(res, "missing")


def test_real_streams_in_a_subprocess(tmp_path):
    """The entry point itself: JSON alone on stdout, the error line alone on stderr."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "th")}
    env.pop("SIREM_WEIGHTS_REGISTRY", None)
    cmd = [sys.executable, "-m", "sirem_cli", "weights", "status", "--metric", "lpips"]
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert [f["file"] for f in json.loads(proc.stdout)["files"]] == [
        "alexnet-owt-7be5be79.pth",
        "alex.pth",
    ]
    assert proc.stderr.startswith("error: missing") and proc.stderr.count("\n") == 1
    proc = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.startswith("error: missing")


def test_output_mode_ends_with_its_command(tmp_path, monkeypatch):
    """A --quiet / --json command leaves no mode behind for library use in the same process."""
    from sirem_cli.cli import _common

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    invoke("weights", "status", "--json", "-q")
    assert (_common.mode.quiet, _common.mode.json, _common.mode.notes) == (False, False, [])
    assert not _common.out.quiet and not _common.err.quiet
