"""Checkpoints: round trip, weights_only loading and refusal of bad files."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from sirem_cli import __version__
from sirem_cli.errors import FormatError, InputError
from sirem_cli.models.sirem_net import ModelConfig, SiremNet
from sirem_cli.training.checkpoint import (
    CHECKPOINT_VERSION,
    load_model,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

A = 13


class NotATensor:
    """A custom class: pickling an instance stores a reference to code."""

    def __init__(self) -> None:
        self.value = 3


class RunsCode:
    """Unpickling this would call ``Path.touch`` on the marker file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _model(mode: str = "learned", size=(8, 6)) -> SiremNet:
    torch.manual_seed(0)
    config = ModelConfig(
        embedding_dim=5, image_size=size, decoder_hidden=(12,), eba_mode=mode, encoder="mel"
    )
    net = SiremNet(config)
    with torch.no_grad():
        net.arm_logits.copy_(torch.randn(A))
        for param in net.fusion_head.parameters() if net.fusion_head else []:
            param.add_(torch.randn_like(param) * 0.1)
    net.set_static_eba(torch.rand(*size))
    return net


def test_round_trip(tmp_path):
    net = _model()
    path = save_checkpoint(
        tmp_path / "model.pt", net, train_config_json='{"lr": 0.5}', info={"epoch": 3}
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "sirem-checkpoint" and raw["format_version"] == CHECKPOINT_VERSION
    assert raw["sirem_version"] == __version__ and raw["encoder"] == "mel"
    assert raw["embedding_dim"] == 5 and raw["image_size"] == [8, 6]
    assert torch.equal(raw["arm_logits"], net.arm_logits.detach())
    assert torch.equal(raw["static_eba"], net.static_eba)
    assert json.loads(raw["model_config"])["eba_mode"] == "learned"
    loaded, checkpoint = load_model(path, image_size=(8, 6), encoder="mel", embedding_dim=5)
    assert checkpoint.model_config == net.config and checkpoint.train_config == {"lr": 0.5}
    assert checkpoint.info == {"epoch": 3} and checkpoint.training_state is None
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    embeddings = torch.randn(2, 5)
    arm_images = torch.randn(2, A, 8, 6, dtype=torch.complex64)
    assert torch.equal(
        net.reconstruct(embeddings, arm_images), loaded.reconstruct(embeddings, arm_images)
    )


def test_refuses_pickled_code_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    marker = tmp_path / "code-ran"
    torch.save({"format": "sirem-checkpoint", "payload": RunsCode(marker)}, path)
    with pytest.raises(FormatError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert "refusing" in message and "pickled code" in message and str(path) in message
    assert "\n" not in message
    assert not marker.exists()


def test_refuses_a_custom_class_instance(tmp_path):
    path = tmp_path / "object.pt"
    torch.save(NotATensor(), path)
    with pytest.raises(FormatError, match="NotATensor"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"this is not a torch file" * 20, b"PK\x03\x04junk"])
def test_junk_files_are_one_line_format_errors(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(FormatError) as error:
        read_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_checkpoint(tmp_path / "absent.pt")


def _rewrite(path: pathlib.Path, **changes) -> None:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_other_format_version_and_format(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _model())
    _rewrite(path, format_version=2)
    with pytest.raises(FormatError, match="format_version 2"):
        read_checkpoint(path)
    _rewrite(path, format="sirem-recon", format_version=1)
    with pytest.raises(FormatError, match="not a sirem checkpoint"):
        read_checkpoint(path)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(FormatError, match="not a sirem checkpoint"):
        read_checkpoint(path)


def test_image_size_and_encoder_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _model("static", (8, 6)))
    with pytest.raises(FormatError, match=r"8x6 images, the data are 84x84") as error:
        read_checkpoint(path, image_size=(84, 84))
    assert "\n" not in str(error.value)
    with pytest.raises(FormatError, match="'mel' embeddings"):
        read_checkpoint(path, encoder="hubert")
    with pytest.raises(FormatError, match="size 5"):
        read_checkpoint(path, embedding_dim=768)


def test_weights_that_do_not_fit(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _model("static"))
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["decoder.net.0.weight"]
    torch.save(payload, path)
    with pytest.raises(FormatError, match="do not fit"):
        model_from_checkpoint(read_checkpoint(path))
