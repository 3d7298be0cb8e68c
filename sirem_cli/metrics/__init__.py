"""Evaluation metrics (method.md section 4).

Modules: ``registry`` (names and properties, import-light), ``image`` (SSIM, PSNR, MSE, NMSE,
NRMSE, HFEN), ``vif`` (pixel-domain VIF), ``perceptual`` (LPIPS and FID networks in plain
torch, imported only when needed) and ``evaluate`` (per-sequence evaluation and its JSON and
CSV serialization). Nothing heavy is imported here, and nothing here imports
:mod:`sirem_cli.report` (the tables and report files build on this package, not the reverse).
"""

from __future__ import annotations

from sirem_cli.metrics.registry import METRIC_NAMES, METRICS, PSNR_CAP_DB, MetricSpec

__all__ = ["METRICS", "METRIC_NAMES", "PSNR_CAP_DB", "MetricSpec"]
