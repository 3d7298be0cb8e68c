"""The sirem HDF5 formats: the single source of truth.

``docs/hdf5-format.md`` embeds the tables that :func:`render_markdown` produces from this module;
a test keeps the two in sync. A change here bumps :data:`FORMAT_VERSION` and gets a changelog
line in that document.

This module imports only the standard library and numpy, so the CLI can use it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version of the prepared format written (2: frames of N arms, interleaf table, x_bar).
PREPARED_VERSION = 2
#: Prepared versions read: version 1 files (13-arm frames, no ``arms``/``xbar``) still read.
PREPARED_READABLE = (1, 2)
#: Version of the reconstruction format.
RECON_VERSION = 1
RECON_READABLE = (1,)
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
    AttrSpec("format_version", "int", f"{PREPARED_VERSION} (version 1 files still read)"),
    AttrSpec("sirem_version", "str", "version of sirem that wrote the file"),
    AttrSpec("created", "str", "ISO 8601 time of writing (UTC)"),
    AttrSpec("config", "str", "JSON of every option used (defaults included), and the layout read"),
)

UTTERANCE_ATTRS = (
    AttrSpec("subject", "str", "speaker id, e.g. sub061"),
    AttrSpec("split", "str", '"train", "val" or "test" (subject-independent)'),
    AttrSpec("tr_s", "float", "repetition time (one spiral arm) in seconds"),
    AttrSpec("arms_per_frame", "int", "arms per frame N (`--arms-per-frame`; 13 in version 1)"),
    AttrSpec("n_interleaves", "int", "interleaves I of the trajectory table (13 in USC; v2)"),
    AttrSpec("frame_rate_hz", "float", "1 / (N * tr_s)"),
    AttrSpec("n_acquisitions", "int", "acquisitions (arms) in the raw file"),
    AttrSpec(
        "skip_frames",
        "int",
        "leading rotations of all I interleaves dropped (13-arm frames in USC: the approach "
        "to steady state, a time whatever N is)",
    ),
    AttrSpec(
        "skip_acquisitions",
        "int",
        "acquisitions before the first frame (`skip_frames * I` rounded up to a multiple of N; v2)",
    ),
    AttrSpec(
        "reference_arms", "int", "acquisitions per reference frame (2 for USC's `/recon`; v2)"
    ),
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
        ("F", "C", "N", "S"),
        "a.u.",
        True,
        "frames of N arms (acquisitions N t .. N t + N - 1), arms ordered by interleaf, normalized",
    ),
    DatasetSpec(
        "traj",
        "float32",
        ("I", "S", "2"),
        "rad in [-pi, pi)",
        True,
        "interleaf table: k-space coordinates of each interleaf in upright image axes (row, column)",
    ),
    DatasetSpec("dcf", "float32", ("I", "S"), "1", True, "density compensation of each interleaf"),
    DatasetSpec(
        "arms",
        "int16",
        ("F", "N"),
        "interleaf",
        False,
        "interleaf of each arm of each frame (v2, required there; v1: all 13 in order)",
    ),
    DatasetSpec("smaps", "complex64", ("C", "H", "W"), "1", True, "Walsh coil sensitivities"),
    DatasetSpec(
        "xbar",
        "complex64",
        ("H", "W"),
        "a.u.",
        False,
        "time-averaged image x_bar: SENSE adjoint of all frames' k-space (v2, required there)",
    ),
    DatasetSpec(
        "reference",
        "float32",
        ("F", "H", "W"),
        "[0, 1]",
        True,
        "reference frame nearest each frame's centre (for N = 2 the one with the same "
        "two acquisitions)",
    ),
    DatasetSpec("ref_index", "int64", ("F",), "frame", True, "index k_t of that reference frame"),
    DatasetSpec("frame_time", "float64", ("F",), "s", True, "centre c_t of each frame"),
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
    AttrSpec("format_version", "int", f"{RECON_VERSION}"),
    AttrSpec("sirem_version", "str", "version of sirem that wrote the file"),
    AttrSpec("created", "str", "ISO 8601 time of writing (UTC)"),
    AttrSpec(
        "method",
        "str",
        'e.g. "sirem", "sirem-no-audio", "gridding", "wavelet", "tv", "ttv", "speech-prior", "speech-prior-no-audio"',
    ),
    AttrSpec("source", "str", "prepared file(s) reconstructed, JSON list of paths"),
    AttrSpec(
        "config",
        "str",
        'JSON of every option used; sirem adds "checkpoint" and "train_subjects" (its training '
        "speakers: sirem evaluate warns when it scores their utterances)",
    ),
    AttrSpec("device", "str", '"cpu" or "cuda:N"'),
    AttrSpec("nufft_backend", "str", '"finufft" or "cufinufft"'),
)

RECON_UTTERANCE_ATTRS = (
    AttrSpec("ms_per_frame", "float", "wall time per frame in milliseconds"),
    AttrSpec(
        "frame_rate_hz",
        "float",
        "frames per second of the data reconstructed (optional; absent before format v2 inputs)",
    ),
    AttrSpec("wall_s", "float", "wall time of the utterance in seconds"),
    AttrSpec(
        "ms_per_frame_cached", "float", "sirem only: ms/frame with cached embeddings (optional)"
    ),
    AttrSpec(
        "encoder_ms_per_frame", "float", "sirem only: audio encoder cost in ms/frame (optional)"
    ),
    AttrSpec(
        "prior_ms_per_frame",
        "float",
        "speech prior only: the prior network's share of ms_per_frame (optional)",
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

TRUTH_FORMAT = "sirem-synth-truth"
TRUTH_VERSION = 1

ROOT_ATTRS_TRUTH = (
    AttrSpec("format", "str", f'"{TRUTH_FORMAT}"'),
    AttrSpec("format_version", "int", f"{TRUTH_VERSION}"),
    AttrSpec("sirem_version", "str", "version of sirem that wrote the file"),
    AttrSpec("prefix", "str", "the utterance"),
    AttrSpec("subject", "str", "the speaker"),
    AttrSpec("tr_s", "float", "repetition time (one arm) in seconds"),
    AttrSpec("n_acquisitions", "int", "acquisitions of the raw file"),
    AttrSpec("param_names", "str", "JSON list naming the articulatory parameters P"),
    AttrSpec("labels", "str", "JSON id -> articulator of the `labels` raster"),
    AttrSpec("config", "str", "JSON of the `sirem synth` options"),
    AttrSpec("orientation", "str", "upright: row 0 superior, column 0 the face"),
)

TRUTH_DATASETS = (
    DatasetSpec(
        "truth",
        "float32",
        ("R", "H", "W"),
        "a.u.",
        True,
        "true image at the centre of every reference frame (acquisitions 2k, 2k + 1)",
    ),
    DatasetSpec("labels", "uint8", ("R", "H", "W"), "id", True, "true articulator labels"),
    DatasetSpec("params", "float32", ("R", "P"), "a.u.", True, "articulatory parameters"),
    DatasetSpec("smaps", "complex64", ("C", "H", "W"), "1", True, "true coil sensitivities"),
    DatasetSpec("frame_time", "float64", ("R",), "s", True, "centre of each reference frame"),
)

DIM_LETTERS = {
    "F": "frames (of N arms)",
    "C": "coils",
    "N": "arms per frame",
    "I": "interleaves of the trajectory table (13 in USC)",
    "S": "samples per arm",
    "H, W": "image rows, columns (upright: row 0 superior, column 0 the face)",
    "L": "audio samples",
    "R": "reference (`/recon`) frames of the synthetic truth file",
    "P": "articulatory parameters",
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
    parts = [
        f"Prepared format version: **{PREPARED_VERSION}** (reads {PREPARED_READABLE}); "
        f"reconstruction format version: **{RECON_VERSION}**",
        "",
    ]
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
    parts += [
        "### Synthetic truth file (`sirem synth` writes `truth/<prefix>_truth.h5`, "
        "`prepare` reads it)",
        "",
        *_attr_table(ROOT_ATTRS_TRUTH),
        "",
        *_dataset_table(TRUTH_DATASETS),
        "",
    ]
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
