"""Names and properties of the evaluation metrics (method.md section 4).

Import-light on purpose (standard library only): the CLI builds its ``--metrics`` help and
choices from this module, so ``sirem --help`` never loads numpy, scipy or torch through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sirem_cli.errors import InputError

Scope = Literal["frame", "set"]

#: PSNR of identical frames is infinite; per-frame PSNR is capped at this value (dB) so that
#: averages over frames and sequences stay finite. ``psnr(..., cap_db=None)`` gives the raw value.
PSNR_CAP_DB = 100.0


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    Attributes:
        name: Lower-case identifier used on the command line and in JSON/CSV (``"ssim"``);
            the ``_ls`` metrics score the recon after the per-frame least-squares scale
            a = <x, y> / <x, x> against the target.
        label: Display name in tables (``"SSIM"``).
        higher_is_better: True when a larger value means a better reconstruction.
        scope: ``"frame"``: computed per frame, averaged over the frames of a sequence, then
            mean and standard deviation over sequences. ``"set"``: one value per method over
            all frames of all sequences (FID).
        decimals: Decimals shown in tables.
        needs_weights: True when pretrained network weights are needed (LPIPS, FID).
        description: One line for help texts.
    """

    name: str
    label: str
    higher_is_better: bool
    scope: Scope
    decimals: int
    needs_weights: bool
    description: str


_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("ssim", "SSIM", True, "frame", 3, False, "structural similarity (Wang 2004)"),
    MetricSpec("psnr", "PSNR", True, "frame", 2, False, "peak signal-to-noise ratio, dB"),
    MetricSpec(
        "ssim_ls", "SSIM (LS)", True, "frame", 3, False, "SSIM of the least-squares-scaled frame"
    ),
    MetricSpec(
        "psnr_ls", "PSNR (LS)", True, "frame", 2, False, "PSNR of the least-squares-scaled frame"
    ),
    MetricSpec("mse", "MSE", False, "frame", 5, False, "mean squared error"),
    MetricSpec("nmse", "NMSE", False, "frame", 4, False, "||x - y||^2 / ||y||^2"),
    MetricSpec("nrmse", "NRMSE", False, "frame", 3, False, "RMSE / range of the target"),
    MetricSpec("hfen", "HFEN", False, "frame", 3, False, "high-frequency error norm (LoG)"),
    MetricSpec("vif", "VIF", True, "frame", 3, False, "pixel-domain visual information fidelity"),
    MetricSpec("lpips", "LPIPS", False, "frame", 3, True, "learned perceptual distance (AlexNet)"),
    MetricSpec("fid", "FID", False, "set", 2, True, "Frechet Inception distance (pool3)"),
)

#: Every metric by name, in the canonical (table) order.
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}

#: All metric names in canonical order.
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)

#: The columns of the paper's tables 1 and 2 (SSIM, PSNR, HFEN, NRMSE, LPIPS, VIF, FID), with
#: SSIM and PSNR also after the per-frame least-squares scale (``ssim_ls``, ``psnr_ls``). The
#: paper's SSIM and PSNR compare frames each normalized to its own maximum; when one streak sets
#: a frame's maximum (2 arms per frame) that costs about 1 dB that is no image error, so the
#: default report shows both, beside each other. They need no weights and cost one SSIM/PSNR.
PAPER_METRICS: tuple[str, ...] = (
    "ssim",
    "psnr",
    "ssim_ls",
    "psnr_ls",
    "hfen",
    "nrmse",
    "lpips",
    "vif",
    "fid",
)

#: Metrics that need no network weights.
CLASSIC_METRICS: tuple[str, ...] = tuple(n for n in METRIC_NAMES if not METRICS[n].needs_weights)


def get_metric(name: str) -> MetricSpec:
    """Return the spec of ``name`` (case-insensitive).

    Raises:
        InputError: ``name`` is not a known metric.
    """
    key = name.strip().lower()
    if key not in METRICS:
        raise InputError(f"unknown metric {name!r}; choose from {', '.join(METRIC_NAMES)}")
    return METRICS[key]


def parse_metrics(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalize a metric selection to canonical names in canonical order.

    Args:
        names: None or ``"all"`` for every metric; ``"classic"`` for those that need no
            weights; ``"paper"`` for the paper's table columns; otherwise names, each
            possibly a comma-separated list (``["ssim,psnr", "vif"]``).

    Returns:
        Unique names, ordered as in :data:`METRIC_NAMES`.

    Raises:
        InputError: an unknown name, or an empty selection.
    """
    if names is None:
        return METRIC_NAMES
    items = [names] if isinstance(names, str) else list(names)
    chosen: set[str] = set()
    for item in items:
        for part in str(item).split(","):
            key = part.strip().lower()
            if not key:
                continue
            if key == "all":
                chosen.update(METRIC_NAMES)
            elif key == "classic":
                chosen.update(CLASSIC_METRICS)
            elif key == "paper":
                chosen.update(PAPER_METRICS)
            else:
                chosen.add(get_metric(key).name)
    if not chosen:
        raise InputError("no metric selected; choose from " + ", ".join(METRIC_NAMES))
    return tuple(n for n in METRIC_NAMES if n in chosen)
