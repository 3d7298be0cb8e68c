"""Tables 1 and 2 and figures 2 and 3."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from sirem_cli.errors import FormatError, ShapeError
from sirem_cli.metrics.evaluate import EvalResult, MetricStats
from sirem_cli.report import figures, tables


def result(method: str, target: str, values: dict[str, float], n_seq: int = 3) -> EvalResult:
    """A hand-made result: every metric's mean given, std 0.01, FID over 90 frames."""
    seqs = tuple(f"s{i}" for i in range(n_seq))
    summary = {
        m: MetricStats(v, math.nan if m == "fid" else 0.01, 90 if m == "fid" else n_seq)
        for m, v in values.items()
    }
    return EvalResult(
        method=method,
        target=target,
        metrics=tuple(values),
        sequences=seqs,
        n_frames=dict.fromkeys(seqs, 30),
        per_sequence={s: {m: v for m, v in values.items() if m != "fid"} for s in seqs},
        summary=summary,
        unavailable={},
    )


PAPER_GRIDDING = {  # paper table 1, target "Gridding"
    "sirem-no-audio": {"ssim": 0.833, "psnr": 27.75, "hfen": 0.289, "nrmse": 0.046, "vif": 0.867,
                       "fid": 33.80},
    "sirem": {"ssim": 0.881, "psnr": 28.71, "hfen": 0.213, "nrmse": 0.036, "vif": 0.912,
              "fid": 27.33},
    "wavelet": {"ssim": 0.960, "psnr": 39.19, "hfen": 0.160, "nrmse": 0.011, "vif": 0.624,
                "fid": 19.25},
}  # fmt: skip


@pytest.fixture
def results() -> list[EvalResult]:
    out = [result(m, "gridding", v) for m, v in PAPER_GRIDDING.items()]
    out.append(result("gridding", "gridding", dict.fromkeys(PAPER_GRIDDING["sirem"], 1.0)))
    # a second target where audio makes PSNR worse
    out.append(result("sirem", "reference", {"ssim": 0.70, "psnr": 24.0}))
    out.append(result("sirem-no-audio", "reference", {"ssim": 0.68, "psnr": 24.5}))
    return out


def test_table1_blocks_rows_and_best(results):
    blocks = tables.table1(results)
    assert [b.title for b in blocks] == ["Target: Gridding", "Target: Reference (USC)"]
    grid = blocks[0]
    assert grid.columns == ("Method", "SSIM ↑", "PSNR ↑", "HFEN ↓", "NRMSE ↓", "VIF ↑", "FID ↓")
    # method order of the paper; the target itself (gridding vs gridding) is left out
    assert [r[0] for r in grid.rows] == ["Wavelet", "SIREM (w/o audio)", "SIREM"]
    row = dict(zip(grid.columns, grid.rows[2], strict=True))
    assert row["SSIM ↑"] == "0.881 ± 0.010"
    assert row["PSNR ↑"] == "28.71 ± 0.01"
    assert row["FID ↓"] == "27.33"  # set metric: no std
    # best: highest SSIM (wavelet) and highest VIF (SIREM), lowest HFEN (wavelet)
    col = {c: j for j, c in enumerate(grid.columns)}
    assert grid.mark(0, col["SSIM ↑"]) == "best" and grid.mark(2, col["SSIM ↑"]) == ""
    assert grid.mark(2, col["VIF ↑"]) == "best"
    assert grid.mark(0, col["HFEN ↓"]) == "best"
    md = grid.to_markdown()
    assert "| SIREM | 0.881 ± 0.010 |" in md and "**0.960 ± 0.010**" in md


def test_table2_deltas_and_verdicts(results):
    deltas = {(d.target, d.metric): d for d in tables.table2_deltas(results)}
    d = deltas[("gridding", "ssim")]
    assert d.delta == pytest.approx(0.048) and d.verdict == "better"  # paper: +0.048
    d = deltas[("gridding", "psnr")]
    assert d.delta == pytest.approx(0.96) and d.verdict == "better"  # paper: +0.96
    d = deltas[("gridding", "hfen")]
    assert d.delta == pytest.approx(-0.076) and d.verdict == "better"  # lower is better
    assert deltas[("gridding", "fid")].delta == pytest.approx(-6.47)
    assert deltas[("reference", "psnr")].verdict == "worse"
    assert deltas[("reference", "ssim")].verdict == "better"
    assert deltas[("reference", "vif")].verdict == "n/a"  # not computed for this target
    t2 = tables.table2(results)
    assert t2 is not None
    assert [r[0] for r in t2.rows] == ["Gridding", "Reference (USC)"]
    assert t2.rows[0][1] == "+0.048 better"
    assert t2.rows[1][2] == "-0.50 worse"
    assert "Better in 7 of 8" in t2.caption
    assert tables.table2([results[0]]) is None  # no ablation: no table


def test_tables_render_with_rich(results):
    from rich.console import Console

    console = Console(record=True, width=160)
    for block in [*tables.table1(results), tables.table2(results)]:
        console.print(block.to_rich())
    text = console.export_text()
    assert "SIREM (w/o audio)" in text and "+0.96 better" in text and "0.960 ± 0.010" in text


def test_per_sequence_tables(results):
    blocks = tables.per_sequence_tables(results[:1])
    assert len(blocks) == 1
    assert [r[0] for r in blocks[0].rows] == ["s0", "s1", "s2", "mean ± std"]
    assert "FID" not in " ".join(blocks[0].columns)


def _read_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path)


def test_figure2_panel_written(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.random((12, 84, 84)).astype(np.float32)
    recons = {
        "gridding": np.clip(ref + 0.2 * rng.standard_normal(ref.shape), 0, 1),
        "sirem": np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1),
    }
    out = figures.figure2_panel(recons, ref, tmp_path / "fig2.png", frame_rate_hz=12.8, title="x")
    img = _read_png(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 400
    assert img[..., :3].std() > 0.05  # not a blank canvas
    # wider than tall: 5 columns; 3 image rows + 2 error rows
    assert figures.pick_frames(12, 5) == [2, 4, 6, 7, 9]
    with pytest.raises(ShapeError):
        figures.figure2_panel({"a": ref[:3]}, ref, tmp_path / "bad.png")
    with pytest.raises(ShapeError):
        figures.figure2_panel(recons, ref, tmp_path / "bad.png", frames=[0, 12])


def test_figure3_runtime_written_and_read_from_recon_files(tmp_path):
    paths = []
    for method, ms in (("gridding", [1.1, 1.3]), ("wavelet", [600.0, 603.0]), ("sirem", [14.6])):
        p = tmp_path / f"{method}.h5"
        with h5py.File(p, "w") as f:
            f.attrs["format"] = "sirem-recon"
            f.attrs["method"] = method
            for i, v in enumerate(ms):
                g = f.create_group(f"utterances/u{i}")
                g.attrs["ms_per_frame"] = v
        paths.append(p)
    runtimes = figures.read_runtimes(paths)
    assert runtimes == {"gridding": [1.1, 1.3], "wavelet": [600.0, 603.0], "sirem": [14.6]}
    out = figures.figure3_runtime(runtimes, tmp_path / "fig3.png")
    img = _read_png(out)
    assert img.shape[0] > 200 and img[..., :3].std() > 0.05
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["method"] = "x"
        f.create_group("utterances/u0")
    with pytest.raises(FormatError, match="ms_per_frame"):
        figures.read_runtimes([bad])
    with pytest.raises(ShapeError):
        figures.figure3_runtime({"x": [float("nan")]}, tmp_path / "f.png")
