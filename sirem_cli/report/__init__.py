"""Reports: the paper's tables (``tables``), figures (``figures``, matplotlib loaded lazily)
and video export (``video``, through the ffmpeg shipped in imageio-ffmpeg)."""

from __future__ import annotations
