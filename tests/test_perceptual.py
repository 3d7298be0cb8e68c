"""LPIPS and FID plumbing on random-weight networks of the published architectures.

Random weights are saved under the published file names in a temporary folder, so the real
lookup and ``torch.load(weights_only=True)`` path is exercised; nothing is downloaded. A test
registry (``SIREM_WEIGHTS_REGISTRY``) holds their SHA-256, so they pass the hash check that
the published files pass (tests/test_weights.py tests the check itself).
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sirem_cli.errors import FormatError, ShapeError
from sirem_cli.metrics import perceptual as P
from sirem_cli.metrics.evaluate import PerceptualModels, evaluate_sequences

# Published layouts, written out from the torchvision / lpips sources (independent of the code).
ALEX_CONVS = {  # features.N: (out, in, k, k), stride, padding
    0: ((64, 3, 11, 11), 4, 2),
    3: ((192, 64, 5, 5), 1, 2),
    6: ((384, 192, 3, 3), 1, 1),
    8: ((256, 384, 3, 3), 1, 1),
    10: ((256, 256, 3, 3), 1, 1),
}
LIN_CHANNELS = (64, 192, 384, 256, 256)


def _he(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """Random AlexNet + LPIPS heads + FID Inception weights under the published names."""
    d = tmp_path_factory.mktemp("weights")
    gen = torch.Generator().manual_seed(0)
    alex = {}
    for i, (shape, _, _) in ALEX_CONVS.items():
        alex[f"features.{i}.weight"] = _he(shape, gen)
        alex[f"features.{i}.bias"] = 0.01 * torch.randn(shape[0], generator=gen)
    alex["classifier.6.bias"] = torch.zeros(1000)  # extra keys of the real file are ignored
    torch.save(alex, d / P.ALEXNET_FILE)
    heads = {
        f"lin{k}.model.1.weight": torch.rand((1, c, 1, 1), generator=gen) / c
        for k, c in enumerate(LIN_CHANNELS)
    }
    torch.save(heads, d / P.LPIPS_HEADS_FILE)
    inception = {}
    for key, value in P.FidInceptionV3().state_dict().items():
        if key.endswith("conv.weight"):
            inception[key] = _he(tuple(value.shape), gen)
        elif key.endswith("bn.running_var") or key.endswith("bn.weight"):
            inception[key] = torch.ones_like(value)
        elif not key.endswith("num_batches_tracked"):
            inception[key] = torch.zeros_like(value)
    inception["fc.weight"] = torch.zeros(1008, 2048)  # the published file's classifier
    inception["fc.bias"] = torch.zeros(1008)
    torch.save(inception, d / P.INCEPTION_FILE)
    return d


def _register(monkeypatch, folder) -> None:
    """Accept the weight files in ``folder`` as the published ones (a test registry)."""
    files = {
        p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
        for p in folder.iterdir()
        if p.name in (P.ALEXNET_FILE, P.LPIPS_HEADS_FILE, P.INCEPTION_FILE)
    }
    registry = folder / "test-registry.json"
    registry.write_text(json.dumps({"files": files}))
    monkeypatch.setenv("SIREM_WEIGHTS_REGISTRY", str(registry))


@pytest.fixture(autouse=True)
def _no_download(monkeypatch, tmp_path, weights_dir):
    """Any download attempt fails the test; TORCH_HOME points at an empty folder."""

    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("SIREM_OFFLINE", "1")
    _register(monkeypatch, weights_dir)


def frames(seed: int, n: int = 4, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = torch.nn.functional.avg_pool2d(torch.tensor(rng.random((n, 1, size, size))), 5, 1, 2)
    x = x[:, 0].numpy()
    return (x - x.min()) / (x.max() - x.min())


# --- weight lookup and messages -----------------------------------------------------------


def test_hub_dir_follows_torch_home_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert P.hub_checkpoint_dir() == tmp_path / "th" / "hub" / "checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert P.hub_checkpoint_dir() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"


def test_missing_weights_message_names_files_and_folders(tmp_path):
    only_alex = tmp_path / "w"
    only_alex.mkdir()
    torch.save({}, only_alex / P.ALEXNET_FILE)
    with pytest.raises(P.WeightsUnavailable) as info:
        P.load_lpips(only_alex)
    msg = str(info.value)
    assert "alex.pth" in msg and P.ALEXNET_FILE not in msg.split("searched")[0]
    assert str(only_alex) in msg and str(P.hub_checkpoint_dir()) in msg
    assert "--weights-dir" in msg and "\n" not in msg
    assert info.value.missing == ("alex.pth",)
    msg = P.weights_status("fid", tmp_path / "nowhere")
    assert msg is not None and P.INCEPTION_FILE in msg
    assert P.weights_status("lpips", only_alex) is not None


def test_weights_found_in_torch_home(weights_dir, monkeypatch):
    hub = weights_dir / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    (hub / P.INCEPTION_FILE).symlink_to(weights_dir / P.INCEPTION_FILE)
    monkeypatch.setenv("TORCH_HOME", str(weights_dir))
    found = P.find_weight_files("fid", None)
    assert found[P.INCEPTION_FILE] == hub / P.INCEPTION_FILE
    # weights_dir comes first when both hold the file
    assert P.find_weight_files("fid", weights_dir)[P.INCEPTION_FILE] == (
        weights_dir / P.INCEPTION_FILE
    )


def test_wrong_key_or_shape_gives_clear_error(weights_dir, tmp_path, monkeypatch):
    # Files whose hash is registered but whose content is not the network's: the key and
    # shape checks behind the hash check still name the file.
    bad = tmp_path / "bad"
    bad.mkdir()
    heads = torch.load(weights_dir / P.LPIPS_HEADS_FILE, weights_only=True)
    torch.save(torch.load(weights_dir / P.ALEXNET_FILE, weights_only=True), bad / P.ALEXNET_FILE)
    renamed = dict(heads)
    renamed["lin9.model.1.weight"] = renamed.pop("lin2.model.1.weight")
    torch.save(renamed, bad / P.LPIPS_HEADS_FILE)
    _register(monkeypatch, bad)
    with pytest.raises(FormatError, match=r"alex\.pth: missing key 'lin2\.model\.1\.weight'"):
        P.load_lpips(bad)
    reshaped = dict(heads)
    reshaped["lin1.model.1.weight"] = torch.zeros(1, 7, 1, 1)
    torch.save(reshaped, bad / P.LPIPS_HEADS_FILE)
    _register(monkeypatch, bad)
    with pytest.raises(FormatError, match=r"shape \(1, 7, 1, 1\), expected \(1, 192, 1, 1\)"):
        P.load_lpips(bad)
    (bad / P.LPIPS_HEADS_FILE).write_bytes(b"not a torch file")
    _register(monkeypatch, bad)
    with pytest.raises(FormatError, match=r"alex\.pth"):
        P.load_lpips(bad)


# --- LPIPS --------------------------------------------------------------------------------


def _lpips_reference(x: np.ndarray, y: np.ndarray, d) -> np.ndarray:
    """LPIPS written out with functional ops from the raw state dicts."""
    alex = torch.load(d / P.ALEXNET_FILE, weights_only=True)
    heads = torch.load(d / P.LPIPS_HEADS_FILE, weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(img):
        h = (torch.tensor(img, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1) * 2 - 1) - shift
        h = h / scale
        out = []
        for i, (_, stride, pad) in ALEX_CONVS.items():
            if i in (3, 6):
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(F.conv2d(h, alex[f"features.{i}.weight"], alex[f"features.{i}.bias"],
                                stride=stride, padding=pad))  # fmt: skip
            out.append(h)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True)):
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((na - nb) ** 2, heads[f"lin{k}.model.1.weight"]).mean((1, 2, 3))
    return total.double().numpy()


def test_lpips_plumbing_against_functional_reference(weights_dir):
    net = P.load_lpips(weights_dir)
    assert not any(p.requires_grad for p in net.parameters())
    x, y = frames(1, n=3, size=84), frames(2, n=3, size=84)
    d = P.lpips_distance(x, y, net, batch_size=2)
    assert d.shape == (3,)
    np.testing.assert_allclose(d, _lpips_reference(x, y, weights_dir), rtol=1e-4)
    np.testing.assert_allclose(P.lpips_distance(y, x, net), d, rtol=1e-5)  # symmetric
    np.testing.assert_array_equal(P.lpips_distance(x, x, net), 0.0)  # zero to itself
    assert np.all(d > 0)
    assert P.lpips_distance(x[0], y[0], net).shape == ()
    assert P.lpips_distance(x[:, :31, :31], y[:, :31, :31], net).shape == (3,)
    with pytest.raises(ShapeError, match="at least 31"):
        P.lpips_distance(x[:, :30, :30], y[:, :30, :30], net)


# --- FID ----------------------------------------------------------------------------------


def test_inception_layout_matches_published_network():
    net = P.FidInceptionV3()
    # torchvision's inception_v3 has 27,161,264 parameters; minus AuxLogits (3,326,696) and
    # the 1000-class fc (2,049,000) leaves the pool3 feature extractor.
    assert sum(p.numel() for p in net.parameters()) == 21_785_568
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6e.branch7x7_2.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7c.branch1x1.conv.weight"] == (320, 2048, 1, 1)
    assert shapes["Mixed_7c.branch3x3dbl_3b.bn.running_var"] == (384,)


def test_fid_plumbing_on_random_inception(weights_dir):
    models = PerceptualModels(weights_dir, batch_size=4)
    x, y = frames(3, n=5, size=48), frames(4, n=5, size=48)
    fx = models.fid_features(x)
    fy = models.fid_features(y)
    assert fx.shape == (5, 2048) and np.all(np.isfinite(fx))
    assert fx.std(axis=0).max() > 0  # features vary between frames
    assert P.fid_from_features(fx, fx) == pytest.approx(0.0, abs=1e-8 * np.trace(np.cov(fx.T)))
    d_xy = P.fid_from_features(fx, fy)
    assert d_xy > 0
    assert P.fid_from_features(fy, fx) == pytest.approx(d_xy, rel=1e-9)


def test_frechet_distance_known_values():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    assert P.frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])
    ) == (pytest.approx(4.0 + 1.0))
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert P.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_distance_full_and_low_rank_agree_with_eigen_form():
    rng = np.random.default_rng(5)

    def eigen_form(f1, f2):  # tr sqrt(sqrt(S1) S2 sqrt(S1)), independent of the code under test
        m1, m2 = f1.mean(0), f2.mean(0)
        s1, s2 = np.cov(f1.T), np.cov(f2.T)
        w, v = np.linalg.eigh(s1)
        r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        lam = np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)
        return float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(lam).sum())

    for n in (40, 6):  # full-rank covariances (sqrtm path) and N < D (low-rank identity)
        f1 = rng.standard_normal((n, 12))
        f2 = 0.7 * rng.standard_normal((n + 1, 12)) + 0.3
        assert P.fid_from_features(f1, f2) == pytest.approx(eigen_form(f1, f2), rel=1e-7)
    # singular covariances given directly to frechet_distance stay finite and accurate
    f1, f2 = rng.standard_normal((4, 10)), rng.standard_normal((5, 10))
    got = P.frechet_distance(f1.mean(0), np.cov(f1.T), f2.mean(0), np.cov(f2.T))
    assert got == pytest.approx(eigen_form(f1, f2), rel=1e-4)


def test_evaluate_with_weights_computes_lpips_and_fid(weights_dir):
    y = {"u1": frames(6, n=3, size=48), "u2": frames(7, n=2, size=48)}
    x = {"u1": frames(8, n=3, size=48), "u2": y["u2"]}
    models = PerceptualModels(weights_dir, batch_size=8)
    res = evaluate_sequences(x, y, "lpips,fid", models=models, method="m", target_name="t")
    assert res.unavailable == {}
    net = models.net("lpips")
    np.testing.assert_allclose(
        res.per_sequence["u1"]["lpips"], P.lpips_distance(x["u1"], y["u1"], net).mean(), rtol=1e-6
    )
    assert res.per_sequence["u2"]["lpips"] == 0.0
    assert res.summary["fid"].n == 5 and res.summary["fid"].mean > 0
    same = evaluate_sequences(y, y, "fid", models=models, target_name="t")  # cached target
    assert same.summary["fid"].mean == pytest.approx(0.0, abs=1e-6 * res.summary["fid"].mean)
    sub = evaluate_sequences(x, y, "fid", models=models, target_name="t", fid_max_frames=3)
    assert sub.summary["fid"].n == 3 and sub.settings["fid_total_frames"] == 5
