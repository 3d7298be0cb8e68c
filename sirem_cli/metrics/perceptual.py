"""LPIPS and FID in plain torch, from the published weight files, without torchvision.

LPIPS (Zhang et al. 2018, v0.1, AlexNet trunk): torchvision's AlexNet ``features`` stack
(convolutions at indices 0, 3, 6, 8, 10; the ReLU outputs relu1..relu5 are tapped), the LPIPS
input scaling layer, channel-wise unit normalization of each tap, squared difference, the
five learned 1 x 1 linear heads lin0..lin4, spatial average, sum over taps.
Weights: ``alexnet-owt-7be5be79.pth`` (torchvision state dict, keys ``features.N.weight``)
and ``alex.pth`` (the lpips package's v0.1 heads, keys ``linK.model.1.weight``).

FID (Heusel et al. 2017): the Inception-v3 of pytorch-fid (TensorFlow's FID network: the
FIDInceptionA/C/E_1/E_2 blocks, whose pooling branches differ from torchvision's), 2048-d
pool3 features of frames resized to 299 x 299 (bilinear) and scaled to [-1, 1]; the Frechet
distance between Gaussians fitted to the two feature sets.
Weights: ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release file).

Weight files are looked up in ``weights_dir`` first, then in ``$TORCH_HOME/hub/checkpoints``
(default ``~/.cache/torch/hub/checkpoints``, or ``$XDG_CACHE_HOME/torch/hub/checkpoints``),
the folder torchvision, lpips and pytorch-fid use; :mod:`sirem_cli.metrics.weights` holds their
published URLs and SHA-256 and checks every file before it is read. A missing file is
downloaded into the hub cache on first use unless offline (``offline=True``, ``SIREM_OFFLINE=1``
or ``HF_HUB_OFFLINE=1``), when :class:`WeightsUnavailable` names it and how to provide it.
Files are read with ``torch.load(..., weights_only=True)``.

Grayscale frames (N, H, W) in [0, 1] are repeated to 3 channels. LPIPS runs at the native
frame size (84 x 84 gives 20 x 20 relu1 maps), as the lpips package does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sirem_cli.errors import FormatError, ShapeError
from sirem_cli.metrics.weights import (
    ALEXNET_FILE,
    INCEPTION_FILE,
    LPIPS_HEADS_FILE,
    METRIC_FILES,
    DownloadProgress,
    WeightsUnavailable,
    find_weight_files,
    hub_checkpoint_dir,
    resolve_weight_files,
)

__all__ = [
    "ALEXNET_FILE",
    "INCEPTION_FILE",
    "LPIPS_HEADS_FILE",
    "LPIPS_MIN_SIZE",
    "FidInceptionV3",
    "LpipsAlex",
    "WeightsUnavailable",
    "feature_statistics",
    "fid_from_features",
    "find_weight_files",
    "frechet_distance",
    "hub_checkpoint_dir",
    "inception_features",
    "load_inception",
    "load_lpips",
    "lpips_distance",
    "weights_status",
]

#: Smallest frame side AlexNet's two 3 x 3 / 2 max-poolings accept (relu2 is then 3 x 3).
LPIPS_MIN_SIZE = 31

#: Weight files each network-based metric needs (see :mod:`sirem_cli.metrics.weights`).
WEIGHT_FILES = METRIC_FILES


def weights_status(metric: str, weights_dir: Path | str | None = None) -> str | None:
    """None when the weight files of ``metric`` are present (not checked), else the reason."""
    try:
        find_weight_files(metric, weights_dir)
    except WeightsUnavailable as exc:
        return str(exc)
    return None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled code refused by weights_only, ...
        from sirem_cli.io.torchfile import describe_load_error

        raise FormatError(describe_load_error(path, exc, what="weight file")) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FormatError(f"{path}: not a state dict of tensors")
    return state


def _load_checked(
    module: nn.Module, sources: Sequence[tuple[Path, dict[str, torch.Tensor]]]
) -> None:
    """Load ``module``'s parameters and buffers from state dicts, checking keys and shapes.

    Every key of ``module.state_dict()`` except BatchNorm's ``num_batches_tracked`` must be in
    one of the sources with the same shape; extra keys (a classifier head) are ignored.
    """
    own = module.state_dict()
    merged: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for path, state in sources:
        for k, v in state.items():
            merged.setdefault(k, v)
            origin.setdefault(k, path)
    files = " + ".join(str(p) for p, _ in sources)
    missing = [k for k in own if k not in merged and not k.endswith("num_batches_tracked")]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FormatError(
            f"{files}: missing key {missing[0]!r}{more} for {type(module).__name__}; "
            "wrong file under this name?"
        )
    for k, v in own.items():
        if k in merged and tuple(merged[k].shape) != tuple(v.shape):
            raise FormatError(
                f"{origin[k]}: key {k!r} has shape {tuple(merged[k].shape)}, "
                f"expected {tuple(v.shape)} for {type(module).__name__}"
            )
    module.load_state_dict({k: merged[k] for k in own if k in merged}, strict=False)


def _gray_to_rgb(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) [0, 1] -> (N, 3, H, W) float32 tensor."""
    t = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ShapeError(f"expected (N, H, W) frames, got shape {tuple(t.shape)}")
    return t[:, None].expand(-1, 3, -1, -1)


# --------------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------------


class _NetLin(nn.Module):
    """LPIPS linear head: (dropout, 1 x 1 conv C -> 1 without bias); keys ``model.1.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LpipsAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk.

    Parameter names follow the published files: ``features.{0,3,6,8,10}.{weight,bias}``
    (torchvision AlexNet) and ``lin{0..4}.model.1.weight`` (lpips heads, shapes
    (1, C, 1, 1) with C = 64, 192, 384, 256, 256).
    """

    CHANNELS = (64, 192, 384, 256, 256)
    #: Index after which each tapped ReLU sits in ``features``.
    TAPS = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.lin0 = _NetLin(64)
        self.lin1 = _NetLin(192)
        self.lin2 = _NetLin(384)
        self.lin3 = _NetLin(256)
        self.lin4 = _NetLin(256)
        # LPIPS input scaling layer: constants, not part of any weight file.
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1..relu5 of AlexNet for (B, 3, H, W) inputs in [-1, 1] (after LPIPS scaling)."""
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                out.append(h)
        return out

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of (B, 3, H, W) image pairs in [-1, 1].

        Returns:
            (B,) float32 distances, >= 0.
        """
        heads = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        total = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        for f0, f1, head in zip(self.taps(x0), self.taps(x1), heads, strict=True):
            n0 = f0 / (torch.sqrt(torch.sum(f0**2, dim=1, keepdim=True)) + 1e-10)
            n1 = f1 / (torch.sqrt(torch.sum(f1**2, dim=1, keepdim=True)) + 1e-10)
            total = total + head.model((n0 - n1) ** 2).mean(dim=(1, 2, 3))
        return total


def load_lpips(
    weights_dir: Path | str | None = None,
    *,
    offline: bool | None = None,
    progress: DownloadProgress | None = None,
) -> LpipsAlex:
    """Build LPIPS-Alex and load the published weights (eval mode, no gradients).

    Args:
        weights_dir: folder searched before the torch hub cache.
        offline: never download (None: follow ``SIREM_OFFLINE`` / ``HF_HUB_OFFLINE``).
        progress: download progress callback ``progress(name, bytes_done, bytes_total)``.

    Raises:
        WeightsUnavailable: a weight file is missing and cannot be downloaded, or it fails
            its SHA-256 check (subclasses say which).
        FormatError: a file is unreadable or lacks a key / has a wrong shape (names the file).
    """
    files = resolve_weight_files("lpips", weights_dir, offline=offline, progress=progress)
    net = LpipsAlex()
    alex = _read_state_dict(files[ALEXNET_FILE])
    heads = _read_state_dict(files[LPIPS_HEADS_FILE])
    alex = {k: v for k, v in alex.items() if k.startswith("features.")}
    heads = {k: v for k, v in heads.items() if k.startswith("lin")}
    _check_family(files[ALEXNET_FILE], alex, net, "features.")
    _check_family(files[LPIPS_HEADS_FILE], heads, net, "lin")
    _load_checked(net, [(files[ALEXNET_FILE], alex), (files[LPIPS_HEADS_FILE], heads)])
    return net.eval().requires_grad_(False)


def _check_family(path: Path, state: dict[str, torch.Tensor], net: nn.Module, prefix: str) -> None:
    """Fail naming ``path`` when it provides none or only part of the ``prefix`` keys."""
    need = [k for k in net.state_dict() if k.startswith(prefix)]
    missing = [k for k in need if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FormatError(f"{path}: missing key {missing[0]!r}{more}; wrong file under this name?")


def lpips_distance(
    recon: np.ndarray,
    target: np.ndarray,
    net: LpipsAlex,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """LPIPS per frame between two sequences.

    Args:
        recon: (F, H, W) or (H, W) frames in [0, 1].
        target: same shape.
        net: a loaded :class:`LpipsAlex`.
        batch_size: frames per forward pass.

    Returns:
        (F,) float64 distances (0 for identical frames), or () for one frame.
    """
    x = np.asarray(recon)
    y = np.asarray(target)
    if x.shape != y.shape:
        raise ShapeError(f"recon and target shapes differ: {x.shape} vs {y.shape}")
    single = x.ndim == 2
    if min(x.shape[-2:]) < LPIPS_MIN_SIZE:
        raise ShapeError(
            f"LPIPS (AlexNet) needs frames of at least {LPIPS_MIN_SIZE} x {LPIPS_MIN_SIZE} "
            f"pixels, got {x.shape[-2:]}"
        )
    tx, ty = _gray_to_rgb(x), _gray_to_rgb(y)
    out = []
    with torch.inference_mode():
        for i in range(0, tx.shape[0], batch_size):
            a = tx[i : i + batch_size] * 2 - 1
            b = ty[i : i + batch_size] * 2 - 1
            out.append(net(a, b).double().numpy())
    res = np.concatenate(out) if out else np.zeros(0)
    return np.asarray(res[0] if single else res, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# FID Inception-v3
# --------------------------------------------------------------------------------------------


class _Conv(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, **kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pooling excludes the zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """Mixed_5b/5c/5d (FIDInceptionA): out 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, kernel_size=1)
        self.branch5x5_1 = _Conv(cin, 48, kernel_size=1)
        self.branch5x5_2 = _Conv(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class _BlockB(nn.Module):
    """Mixed_6a: 288 -> 768 channels, stride 2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockC(nn.Module):
    """Mixed_6b..6e (FIDInceptionC): 768 -> 768 channels with factorized 7 x 7 convolutions."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, kernel_size=1)
        self.branch7x7_1 = _Conv(cin, c7, kernel_size=1)
        self.branch7x7_2 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = conv(d)
        d = self.branch7x7dbl_5(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _BlockD(nn.Module):
    """Mixed_7a: 768 -> 1280 channels, stride 2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, kernel_size=1)
        self.branch3x3_2 = _Conv(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = _Conv(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):
    """Mixed_7b (FIDInceptionE_1, average pool) / Mixed_7c (FIDInceptionE_2, max pool): 2048."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, kernel_size=1)
        self.branch3x3_1 = _Conv(cin, 384, kernel_size=1)
        self.branch3x3_2a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool:  # FIDInceptionE_2: max pooling, as in the TF graph
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg3(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FidInceptionV3(nn.Module):
    """Inception-v3 of pytorch-fid up to the 2048-d pool3 features.

    Module names follow torchvision's Inception3 (``Conv2d_1a_3x3`` ... ``Mixed_7c``), so the
    published ``pt_inception-2015-12-05-6726825d.pth`` loads directly (its ``fc.*`` classifier
    keys are not used). 21,785,568 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, kernel_size=3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features.

        Args:
            x: (B, 3, H, W) images in [0, 1]; resized to 299 x 299 (bilinear) and scaled to
                [-1, 1] here.

        Returns:
            (B, 2048) float32.
        """
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = block(x)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        for block in (self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def load_inception(
    weights_dir: Path | str | None = None,
    *,
    offline: bool | None = None,
    progress: DownloadProgress | None = None,
) -> FidInceptionV3:
    """Build the FID Inception-v3 and load the published weights (eval mode, no gradients).

    Args:
        weights_dir: folder searched before the torch hub cache.
        offline: never download (None: follow ``SIREM_OFFLINE`` / ``HF_HUB_OFFLINE``).
        progress: download progress callback ``progress(name, bytes_done, bytes_total)``.

    Raises:
        WeightsUnavailable: the weight file is missing and cannot be downloaded, or it fails
            its SHA-256 check (subclasses say which).
        FormatError: the file is unreadable or lacks a key / has a wrong shape (names it).
    """
    files = resolve_weight_files("fid", weights_dir, offline=offline, progress=progress)
    net = FidInceptionV3()
    path = files[INCEPTION_FILE]
    _load_checked(net, [(path, _read_state_dict(path))])
    return net.eval().requires_grad_(False)


def inception_features(
    frames: np.ndarray,
    net: FidInceptionV3,
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Pool3 features of grayscale frames.

    Args:
        frames: (N, H, W) frames in [0, 1].
        net: a loaded :class:`FidInceptionV3`.
        batch_size: frames per forward pass (each costs about 5.7 GFLOP at 299 x 299).
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        (N, 2048) float64.
    """
    t = _gray_to_rgb(frames)
    out = []
    with torch.inference_mode():
        for i in range(0, t.shape[0], batch_size):
            out.append(net(t[i : i + batch_size]).double().numpy())
            if progress is not None:
                progress(min(i + batch_size, t.shape[0]), t.shape[0])
    return np.concatenate(out) if out else np.zeros((0, 2048))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and sample covariance (D, D) of (N, D) features, N >= 2, float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ShapeError(f"FID needs at least 2 feature vectors (N, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    eps: float = 1e-6,
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

    The matrix square root is ``scipy.linalg.sqrtm``. Covariances from fewer samples than
    dimensions are singular, which can make it inaccurate: when the result is not finite,
    ``eps * I`` is added to both covariances and it is retried; a complex result whose
    imaginary part is not negligible (> 1e-3 of the trace) falls back to the symmetric form
    tr((sqrt(sigma1) sigma2 sqrt(sigma1))^(1/2)) from eigendecompositions, which is real and
    equal in exact arithmetic. Round-off below zero is clipped to 0.

    Args:
        mu1: (D,) mean.
        sigma1: (D, D) covariance.
        mu2: (D,) mean.
        sigma2: (D, D) covariance.
        eps: diagonal offset for the retry.

    Returns:
        The distance (>= 0).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ShapeError(f"FID statistics shapes disagree: {mu1.shape}, {s1.shape}, {s2.shape}")
    diff = mu1 - mu2
    tr_product = _trace_sqrt_product(s1, s2, eps)
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_product)
    return max(value, 0.0)


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """tr((s1 s2)^(1/2)) with scipy's sqrtm and the fallbacks of :func:`frechet_distance`."""
    from scipy.linalg import sqrtm

    with np.errstate(all="ignore"):
        covmean = sqrtm(s1 @ s2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(s1.shape[0]) * eps
            covmean = sqrtm((s1 + offset) @ (s2 + offset))
    scale = max(abs(float(np.trace(s1))), abs(float(np.trace(s2))), 1e-300)
    if np.all(np.isfinite(covmean)):
        if not np.iscomplexobj(covmean):
            return float(np.trace(covmean))
        if np.max(np.abs(covmean.imag)) <= 1e-3 * scale:
            return float(np.trace(covmean.real))
    # Symmetric PSD form, always real: eigenvalues of sqrt(s1) s2 sqrt(s1).
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ ((s2 + s2.T) / 2) @ root1
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(lam, 0.0, None))))


def fid_from_features(features_recon: np.ndarray, features_target: np.ndarray) -> float:
    """FID between two feature sets (N1, D) and (N2, D), each N >= 2.

    With fewer vectors than dimensions (max(N1, N2) <= D, e.g. a few hundred frames against
    2048 features) the covariances are singular: there ``scipy.linalg.sqrtm`` is slow (about a
    minute for D = 2048 on 2 cores) and inaccurate, so the exact identity
    tr((S1 S2)^(1/2)) = ||A1 A2^T||_* / sqrt((N1 - 1)(N2 - 1)) is used, with A the centred
    features and ||.||_* the nuclear norm (the nonzero eigenvalues of S1 S2 are the squared
    singular values of A1 A2^T over (N1 - 1)(N2 - 1)). Otherwise the statistics go through
    :func:`frechet_distance`.

    Returns:
        The distance (>= 0).
    """
    f1 = np.asarray(features_recon, dtype=np.float64)
    f2 = np.asarray(features_target, dtype=np.float64)
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    if s1.shape != s2.shape:
        raise ShapeError(f"feature dimensions differ: {f1.shape} vs {f2.shape}")
    if max(f1.shape[0], f2.shape[0]) > f1.shape[1]:
        return frechet_distance(mu1, s1, mu2, s2)
    a1, a2 = f1 - mu1, f2 - mu2
    nuclear = float(np.sum(np.linalg.svd(a1 @ a2.T, compute_uv=False)))
    tr_covmean = nuclear / np.sqrt((f1.shape[0] - 1) * (f2.shape[0] - 1))
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean), 0.0)
