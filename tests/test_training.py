"""Training loop: determinism, resume, logs, validation and the audio-vs-ablation check."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from sirem_cli.errors import InputError, ShapeError
from sirem_cli.training.checkpoint import load_model, read_checkpoint
from sirem_cli.training.config import TrainConfig
from sirem_cli.training.data import FrameData
from sirem_cli.training.loop import resume_path_for, train

A = 13
SIZE = 10


def random_frames(n: int, seed: int, emb_dim: int = 6) -> FrameData:
    gen = torch.Generator().manual_seed(seed)
    return FrameData(
        embeddings=torch.randn(n, emb_dim, generator=gen),
        arm_images=torch.randn(n, A, SIZE, SIZE, dtype=torch.complex64, generator=gen),
        target=torch.rand(n, SIZE, SIZE, generator=gen),
        eba=torch.rand(n, SIZE, SIZE, generator=gen),
    )


def small_config(**changes) -> TrainConfig:
    base = TrainConfig.build(
        image_size=(SIZE, SIZE),
        decoder_hidden=(16, 32),
        epochs=4,
        batch_size=4,
        val_every=2,
        lr=1e-3,
        device="cpu",
        encoder="mel",
    )
    return base.replace(**changes)


def final_state(path):
    return read_checkpoint(path).state_dict


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_defaults_follow_the_paper():
    config = TrainConfig()
    assert (config.lr, config.weight_decay, config.batch_size, config.epochs) == (1e-4, 1e-5, 8, 20)
    assert (config.grad_clip, config.val_every, config.budget_k) == (1.0, 5, 2.0)
    assert (config.psf_weight, config.budget_weight, config.mask_weight) == (0.1, 0.01, 0.01)
    model = config.model
    assert model.decoder_hidden == (1024, 2048) and model.image_size == (84, 84)
    assert (model.eba_mode, model.arm_select, model.no_audio) == ("static", "soft", False)
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(InputError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 1})


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    train_data, val_data = random_frames(14, 0), random_frames(6, 1)
    config = small_config(epochs=2)
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(
            config.replace(seed=seed),
            train_data,
            val_data,
            out_path=tmp_path / f"{name}.pt",
        )
        runs.append(final_state(resume_path_for(tmp_path / f"{name}.pt")))
    assert_same_state(runs[0], runs[1])
    assert not torch.equal(runs[0]["decoder.net.0.weight"], runs[2]["decoder.net.0.weight"])
    assert not torch.equal(runs[0]["arm_logits"], torch.zeros(A))  # the logits did train


class Interrupt(Exception):
    pass


def test_resume_gives_the_uninterrupted_result(tmp_path):
    train_data, val_data = random_frames(14, 0), random_frames(6, 1)
    config = small_config(epochs=4, val_every=1)
    full = train(config, train_data, val_data, out_path=tmp_path / "full.pt")

    def stop_in_epoch_3(epoch, step, n_steps, loss, val_psnr):
        if epoch == 3 and step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, train_data, val_data, out_path=tmp_path / "cut.pt", progress=stop_in_epoch_3)
    assert read_checkpoint(resume_path_for(tmp_path / "cut.pt")).training_state["epoch"] == 2
    resumed = train(config, train_data, val_data, out_path=tmp_path / "cut.pt", resume=True)
    assert_same_state(final_state(full.resume_checkpoint), final_state(resumed.resume_checkpoint))
    assert_same_state(final_state(full.checkpoint), final_state(resumed.checkpoint))
    assert (full.best_epoch, full.best_val_psnr) == (resumed.best_epoch, resumed.best_val_psnr)
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert strip(full.records) == strip(resumed.records)
    with pytest.raises(InputError, match="lr"):
        train(
            config.replace(lr=0.5),
            train_data,
            val_data,
            out_path=tmp_path / "cut.pt",
            resume=True,
        )
    with pytest.raises(InputError, match="not found"):
        train(config, train_data, val_data, out_path=tmp_path / "never.pt", resume=True)


def test_logs_validation_schedule_and_best_checkpoint(tmp_path):
    train_data, val_data = random_frames(10, 0), random_frames(5, 1)
    config = small_config(epochs=5, val_every=2)
    seen = []
    result = train(
        config,
        train_data,
        val_data,
        out_path=tmp_path / "m.pt",
        log_json=tmp_path / "log.json",
        log_csv=tmp_path / "log.csv",
        progress=lambda *args: seen.append(args),
    )
    validated = [r["epoch"] for r in result.records if r["val_psnr"] is not None]
    assert validated == [2, 4, 5]  # every 2 epochs and after the last
    psnrs = {r["epoch"]: r["val_psnr"] for r in result.records if r["val_psnr"] is not None}
    assert result.best_epoch == max(psnrs, key=psnrs.get)
    assert result.best_val_psnr == psnrs[result.best_epoch]
    assert read_checkpoint(result.checkpoint).info["epoch"] == result.best_epoch
    # lr follows the cosine schedule over 5 epochs (value at the start of each epoch)
    expected_lr = [1e-3 * (1 + np.cos(np.pi * e / 5)) / 2 for e in range(5)]
    np.testing.assert_allclose([r["lr"] for r in result.records], expected_lr, rtol=1e-6)
    assert len(seen) == 5 * 3 and seen[0][:3] == (1, 1, 3) and seen[-1][:3] == (5, 3, 3)
    assert seen[0][4] is None and seen[-1][4] == psnrs[4]  # latest validation PSNR so far
    document = json.loads((tmp_path / "log.json").read_text())
    assert document["records"] == result.records and document["config"]["epochs"] == 5
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["val_psnr"] == "" and float(rows[1]["val_psnr"]) == pytest.approx(psnrs[2])
    assert float(rows[2]["p12"]) == pytest.approx(result.records[2]["p"][12])
    for record in result.records:
        total = (
            record["mse"] + 0.1 * record["psf"] + 0.01 * record["budget"] + 0.01 * record["mask"]
        )
        assert record["loss"] == pytest.approx(total, rel=1e-5)


def test_numpy_backed_and_concatenated_data_train_the_same(tmp_path):
    part1, part2 = random_frames(6, 0), random_frames(6, 1)
    val = random_frames(4, 2)
    config = small_config(epochs=2)
    joined = FrameData.concat([part1, part2])
    assert len(joined) == 12 and torch.equal(joined.target[6:], part2.target)
    fields = [getattr(joined, f.name) for f in dataclasses.fields(FrameData)]
    as_numpy = FrameData(*(None if v is None else v.numpy() for v in fields))
    train(config, joined, val, out_path=tmp_path / "t.pt")
    train(config, as_numpy, val, out_path=tmp_path / "n.pt")
    assert_same_state(final_state(tmp_path / "t.resume.pt"), final_state(tmp_path / "n.resume.pt"))


@pytest.mark.parametrize(
    "changes", [dict(eba_mode="frame"), dict(eba_mode="learned"), dict(arm_select="topk")]
)
def test_other_modes_train(tmp_path, changes):
    config = small_config(epochs=1, **changes)
    result = train(config, random_frames(8, 0), random_frames(4, 1), out_path=tmp_path / "m.pt")
    state = final_state(result.checkpoint)
    assert not torch.equal(state["arm_logits"], torch.zeros(A))
    if changes.get("eba_mode") == "learned":
        assert state["fusion_head.net.4.weight"].abs().sum() > 0  # the head trained


def test_bad_inputs(tmp_path):
    data = random_frames(4, 0)
    with pytest.raises(ShapeError, match="image_size"):
        train(small_config(image_size=(12, 12)), data, None, out_path=tmp_path / "m.pt")
    no_eba = dataclasses.replace(data, eba=None)
    with pytest.raises(InputError, match="static"):
        train(small_config(), no_eba, None, out_path=tmp_path / "m.pt")
    with pytest.raises(ShapeError, match="embeddings"):
        train(small_config(), data, random_frames(4, 1, emb_dim=3), out_path=tmp_path / "m.pt")
    with pytest.raises(ShapeError):
        FrameData(torch.zeros(3, 2), torch.zeros(3, A, 4, 4), torch.zeros(3, 4, 4))


def informative_problem(n: int, seed: int, emb_dim: int = 4) -> FrameData:
    """Targets = static anatomy (seen by the MRI branch) + an articulator blob whose position is
    a function of the embedding (invisible to the MRI branch); eba covers the blob's range."""
    rng = np.random.default_rng(seed)
    size = 12
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    anatomy = np.where((rows < 3) | (cols < 2), 1.0, 0.2).astype(np.float32)
    z = rng.uniform(-1, 1, (n, emb_dim)).astype(np.float32)
    centre_r, centre_c = 7 + 2.5 * z[:, 0], 7 + 2.5 * z[:, 1]
    blob = np.exp(
        -((rows - centre_r[:, None, None]) ** 2 + (cols - centre_c[:, None, None]) ** 2) / 3.0
    )
    target = np.clip(anatomy + 0.8 * blob, 0, 1).astype(np.float32)
    eba = np.exp(-((rows - 7) ** 2 + (cols - 7) ** 2) / 60.0).astype(np.float32)
    phases = np.exp(1j * rng.uniform(-0.1, 0.1, (n, A, 1, 1)))
    arm_images = (anatomy[None, None] * phases / A).astype(np.complex64)
    return FrameData(
        embeddings=torch.from_numpy(z),
        arm_images=torch.from_numpy(arm_images),
        target=torch.from_numpy(target),
        eba=torch.from_numpy(np.broadcast_to(eba, (n, size, size)).copy()),
    )


def test_audio_beats_the_no_audio_ablation_when_audio_is_informative(tmp_path):
    train_data, val_data = informative_problem(128, 0), informative_problem(48, 1)
    config = TrainConfig.build(
        image_size=(12, 12),
        decoder_hidden=(64, 128),
        dropout=0.0,
        epochs=30,
        batch_size=16,
        val_every=1,
        lr=3e-3,
        device="cpu",
        encoder="mel",
    )
    audio = train(config, train_data, val_data, out_path=tmp_path / "audio.pt")
    ablation = train(
        config.replace(no_audio=True),
        train_data,
        val_data,
        out_path=tmp_path / "no.pt",
    )
    # training lowers the validation loss (its constant mask term is 0.01 * L_mask here)
    first, last = audio.records[0], audio.records[-1]
    assert last["val_loss"] < first["val_loss"] - 0.05
    assert last["val_psnr"] > first["val_psnr"] + 8.0
    # the decoder can only learn a fixed prior without audio: clearly worse
    assert audio.best_val_psnr > ablation.best_val_psnr + 6.0
    assert last["val_loss"] < ablation.records[-1]["val_loss"] - 0.005
    model, checkpoint = load_model(audio.checkpoint, image_size=(12, 12))
    assert checkpoint.model_config.no_audio is False
    no_audio_model, _ = load_model(ablation.checkpoint)
    assert no_audio_model.config.no_audio is True
    recon = model.reconstruct(val_data.embeddings, val_data.arm_images)
    mse = ((recon - val_data.target) ** 2).mean(dim=(-2, -1))
    np.testing.assert_allclose(
        (10 * torch.log10(1 / mse)).mean().item(), audio.best_val_psnr, rtol=1e-4
    )


def test_arm_lr_moves_only_the_arm_logits_faster(tmp_path):
    data = random_frames(24, seed=3)
    logits = {}
    for name, arm_lr in (("same", None), ("fast", 0.05)):
        result = train(
            small_config(arm_lr=arm_lr, epochs=2), data, None, out_path=tmp_path / f"{name}.pt"
        )
        logits[name] = result.model.arm_logits.detach().abs().max().item()
    assert logits["fast"] > 10 * logits["same"]
    with pytest.raises(InputError, match="--arm-lr"):
        small_config(arm_lr=0.0)


def test_embeddings_are_standardized_with_training_statistics(tmp_path):
    """Shifting and scaling every embedding dimension leaves training unchanged."""
    data = random_frames(24, seed=4)
    moved = dataclasses.replace(data, embeddings=data.embeddings * 50.0 + 100.0)
    a = train(small_config(epochs=2), data, None, out_path=tmp_path / "a.pt").model
    b = train(small_config(epochs=2), moved, None, out_path=tmp_path / "b.pt").model
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        if name.startswith("embedding_"):
            continue
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-4, msg=name)
    stored = read_checkpoint(tmp_path / "b.pt").state_dict
    assert torch.allclose(stored["embedding_mean"], data.embeddings.mean(0) * 50 + 100, rtol=1e-4)


def test_residual_fusion_never_loses_to_its_mri_branch(tmp_path):
    """--fusion residual: x = x_m + w (x_a - x_m), w from 0, MSE only; kept only if it beats
    w = 0 on validation. With uninformative audio w falls back to 0 (x = x_m exactly); with
    audio that explains the targets it is kept and beats x_m."""
    from sirem_cli.models.sirem_net import SiremNet

    config = small_config(epochs=6, val_every=1, lr=3e-3, fusion="residual", dropout=0.0)
    # audio carries nothing: the targets are noise unrelated to it
    noise_train, noise_val = random_frames(24, 0), random_frames(12, 1)
    result = train(config, noise_train, noise_val, out_path=tmp_path / "noise.pt")
    checkpoint = read_checkpoint(tmp_path / "noise.pt")
    info = checkpoint.info
    assert info["val_psnr_w0"] >= info["val_psnr_learned_w"] or info["residual_kept"]
    model = SiremNet(checkpoint.model_config)
    model.load_state_dict(checkpoint.state_dict)
    out = model.forward(noise_val.embeddings, noise_val.arm_images)
    if not info["residual_kept"]:
        assert torch.equal(checkpoint.state_dict["residual_w"], torch.zeros(SIZE, SIZE))
        assert torch.equal(out.recon, out.x_mri)
    assert result.best_val_psnr >= info["val_psnr_w0"] - 1e-9
    # audio decides the target: the fusion learns to use it and beats the MRI branch
    gen = torch.Generator().manual_seed(3)

    def informative(n: int, seed: int) -> FrameData:
        data = random_frames(n, seed)
        blob = torch.zeros(SIZE, SIZE)
        blob[2:6, 3:7] = 1.0
        level = torch.rand(n, generator=gen)
        data.embeddings[:, 0] = level * 4
        data.target[:] = 0.2 + 0.6 * level[:, None, None] * blob
        return data

    result = train(config, informative(48, 4), informative(16, 5), out_path=tmp_path / "a.pt")
    info = read_checkpoint(tmp_path / "a.pt").info
    assert info["residual_kept"] and info["val_psnr_learned_w"] > info["val_psnr_w0"] + 1.0


def test_resume_with_more_epochs_continues_the_run(tmp_path):
    """--resume --epochs N continues a finished run to N epochs; the same N is refused."""
    data, val = random_frames(12, 0), random_frames(4, 1)
    out = tmp_path / "m.pt"
    first = train(small_config(epochs=2, val_every=1), data, val, out_path=out)
    more = train(small_config(epochs=4, val_every=1), data, val, out_path=out, resume=True)
    assert [r["epoch"] for r in more.records] == [1, 2, 3, 4]
    assert more.records[:2] == first.records[:2]  # the finished epochs are kept as they were
    assert more.records[2]["lr"] < more.records[0]["lr"]  # the cosine schedule goes on
    with pytest.raises(InputError, match="already finished 4 epochs"):
        train(small_config(epochs=4, val_every=1), data, val, out_path=out, resume=True)


def test_the_log_separates_constant_loss_terms():
    """With the static fusion map L_mask has no gradient: it is named as constant and the
    trained loss leaves it out; a learned map makes it a trained term."""
    from sirem_cli.training.loop import constant_terms

    assert constant_terms(small_config()) == ("mask",)
    assert constant_terms(small_config(eba_mode="learned")) == ()
    assert constant_terms(small_config(fusion="residual")) == ()


def test_training_records_its_speakers_and_target(tmp_path):
    config = small_config(epochs=1, train_subjects=["sub009", "sub013"], target="truth")
    train(config, random_frames(8, 0), None, out_path=tmp_path / "m.pt")
    stored = read_checkpoint(tmp_path / "m.pt").train_config
    assert stored["train_subjects"] == ["sub009", "sub013"] and stored["target"] == "truth"
