"""The sirem HDF5 formats (version 1): the single source of truth.

``docs/hdf5-format.md`` embeds the tables that :func:`render_markdown` produces from this module;
a test keeps the two in sync. A change here bumps :data:`FORMAT_VERSION` and gets a changelog
line in that document.

This module imports only the standard library and numpy, so the CLI can use it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT_VERSION = 1
PREPARED_FORMAT = "sirem-prepared"
RECON_FORMAT = "sirem-recon"
CHECKPOINT_FORMAT = "sirem-checkpoint"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a group: name, dtype, dimension letters, unit, whether required, meaning."""

    name: str
    dtype: str
    dims: tuple[str, ...]
    unit: str
    required: bool
    doc: str


@dataclass(frozen=True)
class AttrSpec:
    """One attribute: name, type, meaning."""

    name: str
    kind: str
    doc: str


ROOT_ATTRS_PREPARED = (
    AttrSpec("format", "str", f'"{PREPARED_FORMAT}"'),
    AttrSpec("format_version", "int", f"{FORMAT_VERSION}"),
    AttrSpec("sirem_version", "str", "version of sirem that wrote the file"),
    AttrSpec("created", "str", "ISO 8601 time of writing (UTC)"),
    AttrSpec("config", "str", "JSON of every option used (defaults included)"),
)

UTTERANCE_ATTRS = (
    AttrSpec("subject", "str", "speaker id, e.g. sub061"),
    AttrSpec("split", "str", '"train", "val" or "test" (subject-independent)'),
    AttrSpec("tr_s", "float", "repetition time (one spiral arm) in seconds"),
    AttrSpec("arms_per_frame", "int", "arms per frame A (13)"),
    AttrSpec("frame_rate_hz", "float", "1 / (A * tr_s)"),
    AttrSpec("n_acquisitions", "int", "acquisitions (arms) in the raw file"),
    AttrSpec("skip_frames", "int", "leading 13-arm frames dropped (approach to steady state)"),
    AttrSpec("kspace_norm", "str", '"utterance" (default) or "frame"'),
    AttrSpec(
        "kspace_scale",
        "float or float[F]",
        "factor the raw k-space was divided by (one per frame with kspace_norm = frame)",
    ),
    AttrSpec(
        "coil_window",
        "int",
        "Walsh smoothing box of `smaps` in pixels (`--coil-window`; absent before 2026-11-26: 5)",
    ),
    AttrSpec("orientation", "str", "raw-to-upright transform found and applied (see below)"),
    AttrSpec("orientation_corr", "float", "correlation of the chosen transform with /recon"),
    AttrSpec("sample_rate_hz", "int", "audio sample rate (16000)"),
    AttrSpec("audio_context_s", "float", "half-width delta of each frame's audio window"),
    AttrSpec("has_annotations", "bool", "eba and labels present"),
)

UTTERANCE_DATASETS = (
    DatasetSpec(
        "kspace",
        "complex64",
        ("F", "C", "A", "S"),
        "a.u.",
        True,
        "13-arm frames, arms ordered by interleaf, normalized",
    ),
    DatasetSpec(
        "traj",
        "float32",
        ("A", "S", "2"),
        "rad in [-pi, pi)",
        True,
        "k-space coordinates in upright image axes (row, column)",
    ),
    DatasetSpec("dcf", "float32", ("A", "S"), "1", True, "density compensation"),
    DatasetSpec("smaps", "complex64", ("C", "H", "W"), "1", True, "Walsh coil sensitivities"),
    DatasetSpec(
        "reference", "float32", ("F", "H", "W"), "[0, 1]", True, "aligned reference frames"
    ),
    DatasetSpec(
        "ref_index", "int64", ("F",), "frame", True, "index k_t of the 2-arm reference frame"
    ),
    DatasetSpec("frame_time", "float64", ("F",), "s", True, "centre c_t of each 13-arm frame"),
    DatasetSpec("audio", "float32", ("L",), "a.u.", True, "whole waveform at sample_rate_hz"),
    DatasetSpec(
        "audio_window",
        "int64",
        ("F", "2"),
        "samples",
        True,
        "[start, stop) of each frame's audio context (may reach outside [0, L): zero padding)",
    ),
    DatasetSpec("eba", "float32", ("F", "H", "W"), "[0, 1]", False, "explained-by-audio map"),
    DatasetSpec(
        "labels",
        "uint8",
        ("F", "H", "W"),
        "id",
        False,
        "articulator label raster (attr names: JSON id -> articulator)",
    ),
    DatasetSpec(
        "truth", "float32", ("F", "H", "W"), "[0, 1]", False, "ground truth (synthetic only)"
    ),
    DatasetSpec(
        "embeddings/<encoder>",
        "float32",
        ("F", "E"),
        "a.u.",
        False,
        "frozen-encoder embeddings that earlier sirem versions cached here (read only)",
    ),
)

ROOT_ATTRS_RECON = (
    AttrSpec("format", "str", f'"{RECON_FORMAT}"'),
    AttrSpec("format_version", "int", f"{FORMAT_VERSION}"),
    AttrSpec("sirem_version", "str", "version of sirem that wrote the file"),
    AttrSpec("created", "str", "ISO 8601 time of writing (UTC)"),
    AttrSpec("method", "str", 'e.g. "sirem", "sirem-no-audio", "gridding", "wavelet", "tv", "ttv"'),
    AttrSpec("source", "str", "prepared file(s) reconstructed, JSON list of paths"),
    AttrSpec("config", "str", "JSON of every option used"),
    AttrSpec("device", "str", '"cpu" or "cuda:N"'),
    AttrSpec("nufft_backend", "str", '"finufft" or "cufinufft"'),
)

RECON_UTTERANCE_ATTRS = (
    AttrSpec("ms_per_frame", "float", "wall time per frame in milliseconds"),
    AttrSpec("wall_s", "float", "wall time of the utterance in seconds"),
    AttrSpec(
        "ms_per_frame_cached", "float", "sirem only: ms/frame with cached embeddings (optional)"
    ),
    AttrSpec(
        "encoder_ms_per_frame", "float", "sirem only: audio encoder cost in ms/frame (optional)"
    ),
)

RECON_DATASETS = (
    DatasetSpec(
        "recon",
        "float32",
        ("F", "H", "W"),
        "[0, 1]",
        True,
        "magnitude, same frames as the prepared file",
    ),
)

DIM_LETTERS = {
    "F": "13-arm frames",
    "C": "coils",
    "A": "arms per frame (interleaves)",
    "S": "samples per arm",
    "H, W": "image rows, columns (upright: row 0 superior, column 0 the face)",
    "L": "audio samples",
    "E": "embedding size",
}


def _attr_table(attrs: tuple[AttrSpec, ...]) -> list[str]:
    lines = ["| attribute | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{a.name}` | {a.kind} | {a.doc} |" for a in attrs]
    return lines


def _dataset_table(specs: tuple[DatasetSpec, ...]) -> list[str]:
    lines = [
        "| dataset | dtype | dims | unit | required | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in specs:
        req = "yes" if d.required else "no"
        lines.append(
            f"| `{d.name}` | {d.dtype} | `{','.join(d.dims)}` | {d.unit} | {req} | {d.doc} |"
        )
    return lines


def render_markdown() -> str:
    """The format tables as markdown (embedded verbatim in docs/hdf5-format.md)."""
    parts = [f"Format version: **{FORMAT_VERSION}**", ""]
    parts += ["### Prepared file: root attributes", "", *_attr_table(ROOT_ATTRS_PREPARED), ""]
    parts += ["### Prepared file: `/utterances/<prefix>` attributes", ""]
    parts += [*_attr_table(UTTERANCE_ATTRS), ""]
    parts += ["### Prepared file: `/utterances/<prefix>` datasets", ""]
    parts += [*_dataset_table(UTTERANCE_DATASETS), ""]
    parts += ["### Reconstruction file: root attributes", "", *_attr_table(ROOT_ATTRS_RECON), ""]
    parts += ["### Reconstruction file: `/utterances/<prefix>` attributes", ""]
    parts += [*_attr_table(RECON_UTTERANCE_ATTRS), ""]
    parts += ["### Reconstruction file: `/utterances/<prefix>` datasets", ""]
    parts += [*_dataset_table(RECON_DATASETS), ""]
    parts += ["### Dimension letters", "", "| letter | meaning |", "| --- | --- |"]
    parts += [f"| {k} | {v} |" for k, v in DIM_LETTERS.items()]
    return "\n".join(parts) + "\n"


def dataset_spec(specs: tuple[DatasetSpec, ...], name: str) -> DatasetSpec:
    """Look up a dataset spec by name (``embeddings/mel`` matches ``embeddings/<encoder>``)."""
    key = "embeddings/<encoder>" if name.startswith("embeddings/") else name
    for spec in specs:
        if spec.name == key:
            return spec
    raise KeyError(name)
