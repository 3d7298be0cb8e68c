"""Reports: the paper's tables (``tables``), the evaluation's files (``outputs``), figures
(``figures``, matplotlib loaded lazily) and video export (``video``, through the ffmpeg shipped in
imageio-ffmpeg). Imports run report -> metrics, never the other way round."""

from __future__ import annotations
