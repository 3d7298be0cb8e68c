"""The speech prior through the CLI (issue 14): train --model prior, reconstruct with its
checkpoint, mu = 0 is ttv, the ablation, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from sirem_cli.cli import app
from sirem_cli.io.prepared import PreparedSet, ReconSet

runner = CliRunner()

# A tiny run: one epoch of 64 frames, tuning on 8 frames with 4 iterations.
FAST = ("--epochs", "1", "--frames-per-epoch", "64", "--tune-frames", "8", "--iters", "4")


def _sirem(*args: object, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def prior_ckpt(prepared_n2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prior") / "prior.pt"
    _sirem("train", prepared_n2, "--model", "prior", "--out", out, *FAST)
    return out


def test_train_prior_stores_the_tuned_solve(prior_ckpt):
    from sirem_cli.api.prior import (
        MOTION_GRID,
        MU_GRID,
        TV_FACTORS,
        UNCERTAINTY_GRID,
        read_prior,
    )

    model, info, _ = read_prior(prior_ckpt)
    assert info["arms_per_frame"] == 2 and info["target"] == "truth"
    assert not model.config.no_audio and model.config.uncertainty
    scores = json.loads(info["tune_scores"])
    # a trained network moves its frames and weights them by its predicted variance: both
    # relaxations are on the grid
    grid = len(MU_GRID) * len(TV_FACTORS) * len(MOTION_GRID) * len(UNCERTAINTY_GRID)
    assert len(scores) == 1 + grid
    first = scores[0]
    assert (first["mu"], first["lam_time"], first["motion"], first["uncertainty"]) == (
        0.0, info["ttv_lam"], 0.0, 0.0,
    )  # fmt: skip
    assert {s["uncertainty"] for s in scores} == set(UNCERTAINTY_GRID)
    best = max(scores, key=lambda s: s["psnr"])
    keys = ("mu", "lam_time", "motion", "uncertainty")
    assert tuple(info[k] for k in keys) == tuple(best[k] for k in keys)
    assert info["iters"] == 4 and json.loads(info["train_subjects"])


def test_reconstruct_with_mu_zero_is_exactly_ttv(prior_ckpt, prepared_n2, tmp_path):
    from sirem_cli.api.prior import read_prior

    _, info, _ = read_prior(prior_ckpt)
    a, b = tmp_path / "prior0.h5", tmp_path / "ttv.h5"
    _sirem("reconstruct", "--ckpt", prior_ckpt, prepared_n2, a, "--mu", "0")
    _sirem(
        "baseline", prepared_n2, b, "--method", "ttv", "--lam", info["lam_time"],
        "--lam-spatial", info["lam_spatial"], "--iters", info["iters"],
    )  # fmt: skip
    ref = PreparedSet([prepared_n2]).select("test")[0]
    assert np.array_equal(ReconSet(a).read(ref.prefix), ReconSet(b).read(ref.prefix))


def test_reconstruct_with_the_prior_differs_from_ttv_and_is_recorded(
    prior_ckpt, prepared_n2, tmp_path
):
    a, b = tmp_path / "prior.h5", tmp_path / "prior0.h5"
    out = _sirem("reconstruct", "--ckpt", prior_ckpt, prepared_n2, a, "--mu", "0.3")
    assert "speech-prior" in out
    _sirem("reconstruct", "--ckpt", prior_ckpt, prepared_n2, b, "--mu", "0")
    recon = ReconSet(a)
    assert recon.attrs["method"] == "speech-prior"
    config = json.loads(recon.attrs["config"])
    assert config["mu"] == 0.3 and config["checkpoint"] == str(prior_ckpt)
    ref = PreparedSet([prepared_n2]).select("test")[0]
    x, y = recon.read(ref.prefix), ReconSet(b).read(ref.prefix)
    assert x.shape == y.shape and np.all(np.isfinite(x))
    assert float(np.abs(x - y).max()) > 1e-3


def test_no_audio_ablation_names_its_method(prepared_n2, tmp_path):
    ckpt, out = tmp_path / "na.pt", tmp_path / "na.h5"
    _sirem(
        "train", prepared_n2, "--model", "prior", "--no-audio", "--out", ckpt, *FAST,
        "--no-tune", "--mu", "0.1", "--lam", "0.05", "--lam-spatial", "0.003",
    )  # fmt: skip
    from sirem_cli.api.prior import read_prior

    model, info, _ = read_prior(ckpt)
    assert model.config.no_audio and info["mu"] == 0.1 and info["lam_time"] == 0.05
    assert json.loads(info["tune_scores"]) == []  # every weight given: nothing tuned
    assert info["motion"] == 0.0 and info["uncertainty"] == 0.0
    _sirem("reconstruct", "--ckpt", ckpt, prepared_n2, out)
    assert ReconSet(out).attrs["method"] == "speech-prior-no-audio"


def test_weights_from_reconstructs_the_ablation_at_the_full_models_weights(
    prior_ckpt, prepared_n2, tmp_path
):
    """--weights-from takes another checkpoint's tuned solve weights (explicit options still
    override): the same as giving them by hand, and recorded."""
    from sirem_cli.api.prior import read_prior

    ckpt = tmp_path / "na.pt"
    _sirem(
        "train", prepared_n2, "--model", "prior", "--no-audio", "--out", ckpt, *FAST,
        "--no-tune", "--mu", "0.02", "--lam", "0.07", "--lam-spatial", "0.001",
    )  # fmt: skip
    _, info, _ = read_prior(prior_ckpt)
    shared, by_hand = tmp_path / "shared.h5", tmp_path / "hand.h5"
    _sirem("reconstruct", "--ckpt", ckpt, prepared_n2, shared, "--weights-from", prior_ckpt)
    _sirem(
        "reconstruct", "--ckpt", ckpt, prepared_n2, by_hand, "--mu", info["mu"],
        "--lam", info["lam_time"], "--lam-spatial", info["lam_spatial"],
        "--motion", info["motion"], "--uncertainty", info["uncertainty"],
        "--iters", info["iters"],
    )  # fmt: skip
    config = json.loads(ReconSet(shared).attrs["config"])
    assert config["weights_from"] == str(prior_ckpt) and config["checkpoint"] == str(ckpt)
    assert (config["mu"], config["lam_time"], config["lam_spatial"]) == (
        info["mu"], info["lam_time"], info["lam_spatial"],
    )  # fmt: skip
    ref = PreparedSet([prepared_n2]).select("test")[0]
    assert np.array_equal(ReconSet(shared).read(ref.prefix), ReconSet(by_hand).read(ref.prefix))
    # an explicit option wins over the other checkpoint's value; --uncertainty too, and
    # (the network's predicted variance not being uniform) it changes the solve once the
    # temporal dual reaches its bound (more iterations than the checkpoint's 4)
    mine, unsure = tmp_path / "mine.h5", tmp_path / "unsure.h5"
    for out, extra in ((mine, ()), (unsure, ("--uncertainty", "0.001"))):
        _sirem(
            "reconstruct", "--ckpt", ckpt, prepared_n2, out, "--weights-from", prior_ckpt,
            "--mu", "0.5", "--iters", "30", *extra,
        )  # fmt: skip
    assert json.loads(ReconSet(mine).attrs["config"])["mu"] == 0.5
    assert json.loads(ReconSet(unsure).attrs["config"])["uncertainty"] == 0.001
    assert info["uncertainty"] != 0.001
    assert not np.array_equal(ReconSet(mine).read(ref.prefix), ReconSet(unsure).read(ref.prefix))
    # not a speech-prior checkpoint; the output is the checkpoint the weights come from
    fake = tmp_path / "other.pt"
    import torch

    torch.save({"format": "sirem-checkpoint"}, fake)
    bad = tmp_path / "bad.h5"
    text = _sirem("reconstruct", "--ckpt", ckpt, prepared_n2, bad, "--weights-from", fake, code=2)
    assert str(fake) in text and "Traceback" not in text and not bad.exists()
    text = _sirem(
        "reconstruct", "--ckpt", ckpt, prepared_n2, prior_ckpt, "--weights-from", prior_ckpt,
        code=2,
    )  # fmt: skip
    assert "Traceback" not in text and read_prior(prior_ckpt)[1]["mu"] == info["mu"]


def test_bad_inputs_are_one_line(prior_ckpt, prepared_n2, prepared_file, tmp_path):
    out = tmp_path / "r.h5"
    # a checkpoint trained on 2-arm frames on a 13-arm file
    text = _sirem("reconstruct", "--ckpt", prior_ckpt, prepared_file, out, code=2)
    assert "frames of 2 arms" in text and "Traceback" not in text and not out.exists()
    # a version-1 file (no xbar)
    old = tmp_path / "v1.h5"
    shutil.copy(prepared_n2, old)
    with h5py.File(old, "a") as f:
        f.attrs["format_version"] = 1
        for group in f["utterances"].values():
            del group["xbar"]
    text = _sirem("reconstruct", "--ckpt", prior_ckpt, old, out, code=2)
    assert "xbar" in text and "Traceback" not in text and not out.exists()
    # prior-only options with a checkpoint of the other kind
    fake = tmp_path / "other.pt"
    import torch

    torch.save({"format": "sirem-checkpoint"}, fake)
    text = _sirem("reconstruct", "--ckpt", fake, prepared_n2, out, "--mu", "0.1", code=2)
    assert "--mu" in text and "Traceback" not in text and not out.exists()
    # options of the other model
    text = _sirem("train", prepared_n2, "--model", "prior", "--fusion", "residual", code=2)
    assert "--fusion" in text and "Traceback" not in text
    text = _sirem("train", prepared_n2, "--mu", "0.1", "--out", tmp_path / "f.pt", code=2)
    assert "--model prior" in text


def test_zero_epochs_is_the_xbar_prior_weighted_by_the_static_map(prepared_n2, tmp_path):
    """--epochs 0: the untrained network predicts no deviation, so the prior is x_bar; its
    weight is M = 1 - 0.9 w of the training speakers' mean explained-by-audio map."""
    import torch

    from sirem_cli.api.prior import UtterancePrior, read_prior, static_map, utterance_inputs

    ckpt = tmp_path / "xbar.pt"
    _sirem(
        "train", prepared_n2, "--model", "prior", "--epochs", "0", "--no-tune", "--out", ckpt,
    )  # fmt: skip
    model, info, static = read_prior(ckpt)
    dataset = PreparedSet([prepared_n2])
    np.testing.assert_allclose(static, static_map(dataset.select("train")), rtol=1e-6)
    assert info["prior_weight"] == "static" and info["best_epoch"] == 0
    ref = dataset.select("test")[0]
    ctx, xbar = utterance_inputs(ref, info["n_mels"], info["half_context"])
    prior, weight = UtterancePrior(model, ctx, xbar, None, "static", static)(slice(0, 5))
    magnitude = np.abs(xbar) / np.abs(xbar).max()
    np.testing.assert_allclose(
        prior.abs().numpy(), np.broadcast_to(magnitude, (5, *xbar.shape)), atol=1e-6
    )
    np.testing.assert_allclose(weight.numpy(), 1 - 0.9 * static, atol=1e-6)
    assert torch.is_tensor(weight)


def test_a_prior_constant_in_time_tunes_no_motion_relaxation(prepared_n2, tmp_path):
    """Without audio the predicted frames do not move, so the motion relaxation would be the
    identity: the tuning grid leaves it out. The network's predicted variance still varies,
    so the uncertainty relaxation stays on the grid (the same menu as the full model's)."""
    from sirem_cli.api.prior import MU_GRID, TV_FACTORS, UNCERTAINTY_GRID, read_prior

    ckpt = tmp_path / "na.pt"
    _sirem("train", prepared_n2, "--model", "prior", "--no-audio", "--out", ckpt, *FAST)
    _, info, _ = read_prior(ckpt)
    scores = json.loads(info["tune_scores"])
    assert len(scores) == 1 + len(MU_GRID) * len(TV_FACTORS) * len(UNCERTAINTY_GRID)
    assert {s["motion"] for s in scores} == {0.0} and info["motion"] == 0.0
    assert {s["uncertainty"] for s in scores} == set(UNCERTAINTY_GRID)


def test_relaxable_says_which_relaxations_can_act():
    import torch

    from sirem_cli.api.prior import _relaxable

    still = torch.ones(4, 6, 6, dtype=torch.complex64)
    moving = still * torch.arange(1, 5).reshape(4, 1, 1)
    low = torch.full((4, 6, 6), 0.5)

    def prior(frames, weight):
        return lambda block: (frames[block], weight)

    block = slice(0, 4)
    assert _relaxable([(prior(still, None), block)]) == (False, False)
    assert _relaxable([(prior(still, torch.ones(4, 6, 6)), block)]) == (False, False)
    assert _relaxable([(prior(still, low), block)]) == (False, True)
    assert _relaxable([(prior(still, None), block), (prior(moving, None), block)]) == (
        True, False,
    )  # fmt: skip


def test_target_truth_without_truth_names_the_prior_option(prepared_n2, tmp_path):
    bare = tmp_path / "bare.h5"
    shutil.copy(prepared_n2, bare)
    with h5py.File(bare, "a") as f:
        for group in f["utterances"].values():
            del group["truth"]
    ckpt = tmp_path / "p.pt"
    text = _sirem(
        "train", bare, "--model", "prior", "--target", "truth", "--out", ckpt, *FAST, code=2
    )  # fmt: skip
    assert "no truth (--target)" in text and "Traceback" not in text and not ckpt.exists()


def test_weights_from_a_checkpoint_of_other_arms_is_refused(prior_ckpt):
    from sirem_cli.api.prior import _solve_info
    from sirem_cli.errors import InputError

    with pytest.raises(InputError, match=r"frames of 2 arms.*have 13"):
        _solve_info(prior_ckpt, {"arms_per_frame": 13})
    assert _solve_info(prior_ckpt, {"arms_per_frame": 2})["kind"] == "speech-prior"
