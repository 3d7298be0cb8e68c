"""Tables 1 and 2 and figures 2 and 3."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from sirem_cli.errors import FormatError, InputError, ShapeError
from sirem_cli.io.prepared import ReconWriter
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


#: Ten methods, known and unknown, with long names and file-qualified duplicates.
MANY = [
    "gridding",
    "wavelet",
    "tv",
    "ttv",
    "sirem-mri",
    "sirem-no-audio",
    "sirem (a_really_long_model_checkpoint_name_v2.h5)",
    "sirem (model_b.h5)",
    "my custom method with a rather long descriptive name",
    "x",
]


def _boxes(fig, texts):
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_text()]


def assert_inside_and_apart(fig, texts):
    """Every text lies inside the canvas and no two texts' bounding boxes overlap."""
    boxes = _boxes(fig, texts)
    assert boxes
    width, height = fig.bbox.width, fig.bbox.height
    for b in boxes:
        assert b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height, (b, width, height)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def test_figure2_panel_written(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.random((12, 84, 84)).astype(np.float32)
    recons = {
        "gridding": np.clip(ref + 0.2 * rng.standard_normal(ref.shape), 0, 1),
        "sirem": np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1),
    }
    out = figures.figure2_panel(
        recons, ref, tmp_path / "fig2.png", target_name="truth", frame_rate_hz=12.8, title="x"
    )
    img = _read_png(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 400
    assert img[..., :3].std() > 0.05  # not a blank canvas
    meta = json.loads(figures.sidecar_path(out).read_text())
    assert figures.sidecar_path(out).name == "fig2.labels.json"
    # the error rows name their target (the truth here), never an anonymous "ref"
    assert meta["row_labels"] == [
        "Ground truth",
        "Gridding",
        "SIREM",
        "|Gridding − Ground truth|",
        "|SIREM − Ground truth|",
    ]
    assert meta["colorbar_label"] == "absolute error against Ground truth"
    assert meta["column_titles"] == ["t = 0.16 s", "t = 0.31 s", "t = 0.47 s", "t = 0.55 s",
                                     "t = 0.70 s"]  # fmt: skip
    assert figures.pick_frames(12, 5) == [2, 4, 6, 7, 9]
    with pytest.raises(ShapeError):
        figures.figure2_panel({"a": ref[:3]}, ref, tmp_path / "bad.png")
    with pytest.raises(ShapeError):
        figures.figure2_panel(recons, ref, tmp_path / "bad.png", frames=[0, 12])


@pytest.mark.parametrize("n", range(1, 11))
def test_figure2_labels_are_whole_and_apart_at_any_method_count(n):
    ref = np.random.default_rng(n).random((6, 24, 24)).astype(np.float32)
    names = MANY[:n]
    built = figures.build_figure2(
        dict.fromkeys(names, ref), ref, target_name="reference", n_frames=3, frame_rate_hz=83.3
    )
    fig = built.figure
    first_col = built.axes[:, 0]
    expected = figures.figure2_labels(names, "reference")
    wrapped = [figures.wrap_label(t, figures.ROW_LABEL_WIDTH) for t in expected]
    assert [ax.get_ylabel() for ax in first_col] == wrapped
    assert built.meta["row_labels"] == expected
    assert all("Reference (USC)|" in t for t in expected[n + 1 :])
    titles = [ax.title for ax in built.axes[0]]
    assert [t.get_text() for t in titles] == [
        f"t = {k / 83.3:.2f} s" for k in figures.pick_frames(6, 3)
    ]
    colorbar = fig.axes[-1].yaxis.label
    assert colorbar.get_text().replace("\n", " ") == "absolute error against Reference (USC)"
    assert_inside_and_apart(fig, [ax.yaxis.label for ax in first_col] + titles + [colorbar])


def _line(ax, label):
    return next(ln for ln in ax.get_lines() if ln.get_label() == label)


@pytest.mark.parametrize("n", range(1, 11))
def test_figure3_labels_scale_and_lines_at_any_method_count(n):
    names = MANY[:n]
    # the first utterance of each file is its warm-up: 10x slower than the rest
    ms = {
        m: [30.0 * (i + 1), 3.0 * (i + 1), 3.3 * (i + 1), 2.7 * (i + 1)]
        for i, m in enumerate(names)
    }
    built = figures.build_figure3(ms, frame_rates_hz=[1 / (13 * 6.004e-3)])
    ax = built.axes
    assert ax.get_yscale() == "log"
    ticks = ax.get_xticklabels()
    assert [t.get_text() for t in ticks] == [
        figures.wrap_label(t) for t in figures.figure3_labels(names)
    ]
    assert built.meta["tick_labels"] == [tables.method_label(m) for m in names]
    legend = built.figure.legends[0].get_texts()
    assert_inside_and_apart(built.figure, [*ticks, *legend, ax.yaxis.label, ax.title])
    # bars: the mean and std of the utterances after the first
    heights = [b.get_height() for b in ax.patches]
    np.testing.assert_allclose(heights, [3.0 * (i + 1) for i in range(n)])
    markers = _line(ax, figures.WARMUP_LABEL)
    np.testing.assert_allclose(markers.get_ydata(), [30.0 * (i + 1) for i in range(n)])


def test_figure3_realtime_lines_at_the_datas_frame_rates():
    ms = {"gridding": [20.0, 1.1, 1.3], "wavelet": [900.0, 600.0, 603.0]}
    rate13, rate2 = 1 / (13 * 6.004e-3), 1 / (2 * 6.004e-3)
    built = figures.build_figure3(ms, frame_rates_hz=[rate13, rate2, rate13])
    ax = built.axes
    lines = {ln.get_label(): ln.get_ydata()[0] for ln in ax.get_lines()}
    assert lines["real time at the data's 12.8 fps (78.1 ms/frame)"] == pytest.approx(78.052)
    assert lines["real time at the data's 83.3 fps (12.0 ms/frame)"] == pytest.approx(12.008)
    assert lines["30 fps video (33.3 ms/frame)"] == pytest.approx(1000 / 30)
    assert [d["kind"] for d in built.meta["lines"]] == ["data", "data", "reference"]
    # same scale whatever the spread of the values (it used to switch to linear)
    for values in ({"a": [5.0, 2.0, 2.1]}, {"a": [5.0, 2.0, 2.1], "b": [800.0, 700.0]}):
        fig = figures.build_figure3(values)
        assert fig.axes.get_yscale() == "log"
        lo, hi = fig.axes.get_ylim()
        assert lo <= 0.1 and hi >= 1000  # the same decades at least, run to run
        # no data rate known: the 30 fps line alone
        assert [d["kind"] for d in fig.meta["lines"]] == ["reference"]
    # warm-up kept in the statistics on request
    fig = figures.build_figure3({"a": [5.0, 2.0, 2.0]}, warmup=False)
    assert fig.axes.patches[0].get_height() == pytest.approx(3.0)
    # one utterance only: no mean, the warm-up marker alone
    fig = figures.build_figure3({"a": [5.0], "b": [3.0, 1.0]})
    assert [p.get_height() for p in fig.axes.patches] == [1.0]
    np.testing.assert_allclose(_line(fig.axes, figures.WARMUP_LABEL).get_ydata(), [5.0, 3.0])


def test_figure3_runtime_written_and_read_from_recon_files(tmp_path):
    paths = []
    for method, ms in (("gridding", [1.1, 1.3]), ("wavelet", [600.0, 603.0]), ("sirem", [14.6])):
        p = tmp_path / f"{method}.h5"
        with ReconWriter(p, method=method, source=["prepared.h5"], config={}) as w:
            for i, v in enumerate(ms):
                extra = {"frame_rate_hz": 83.28} if method == "sirem" else {}
                w.write_recon(f"u{i}", np.zeros((4, 8, 8)), wall_s=4 * v / 1000, extra=extra)
        paths.append(p)
    runtimes = figures.read_runtimes(paths)
    assert [r.method for r in runtimes] == ["gridding", "wavelet", "sirem"]
    assert runtimes[1].ms_per_frame == pytest.approx((600.0, 603.0))
    assert runtimes[1].prefixes == ("u0", "u1")
    assert runtimes[0].frame_rate_hz == (None, None) and runtimes[2].frame_rate_hz == (83.28,)
    assert runtimes[0].source == ("prepared.h5",)
    out = figures.figure3_runtime(
        {r.method: r.ms_per_frame for r in runtimes}, tmp_path / "fig3.png", frame_rates_hz=[83.28]
    )
    img = _read_png(out)
    assert img.shape[0] > 200 and img[..., :3].std() > 0.05
    meta = json.loads(figures.sidecar_path(out).read_text())
    assert meta["yscale"] == "log" and meta["warmup_excluded"] is True
    assert meta["tick_labels"] == ["Gridding", "Wavelet", "SIREM"]
    bad = tmp_path / "bad.h5"
    with ReconWriter(bad, method="x", source=[], config={}) as w:
        w.write_recon("u0", np.zeros((4, 8, 8)), wall_s=0.1)
    with h5py.File(bad, "a") as f:
        del f["utterances/u0"].attrs["ms_per_frame"]
    with pytest.raises(FormatError, match="ms_per_frame"):
        figures.read_runtimes([bad])
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        figures.read_runtimes([figures.sidecar_path(out)])  # JSON, not HDF5
    with pytest.raises(InputError, match="no such file"):
        figures.read_runtimes([tmp_path / "missing.h5"])
    with pytest.raises(ShapeError):
        figures.figure3_runtime({"x": [float("nan")]}, tmp_path / "f.png")


def test_method_labels_of_file_qualified_names_and_their_order():
    assert tables.method_label("sirem (model_a.h5)") == "SIREM (model_a.h5)"
    assert tables.method_label("unknown (x.h5)") == "unknown (x.h5)"
    assert tables.split_name("sirem (model_a.h5)") == ("sirem", "model_a.h5")
    order = tables.ordered_methods(["other", "sirem (b.h5)", "gridding", "sirem (a.h5)"])
    assert order == ["gridding", "sirem (b.h5)", "sirem (a.h5)", "other"]


def test_readme_figures_carry_the_codes_labels():
    """docs/figures are drawn by `make figures` from the demo; their label sidecars must
    match what the code draws today for the demo's methods (else run make demo, make figures)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = (repo / "examples" / "figures.sh").read_text()
    methods = re.search(r'^METHODS="([^"]+)"', script, re.M).group(1).split()
    demo = (repo / "examples" / "demo.sh").read_text()
    evaluate_step = demo[demo.index("$SIREM evaluate") :]
    assert all(f'"$OUT/{m}.h5"' in evaluate_step for m in methods)  # the demo's method set
    readme = (repo / "README.md").read_text()
    assert "docs/figures/figure2.jpg" in readme and "docs/figures/figure3.png" in readme
    order = tables.ordered_methods(methods)

    fig2 = json.loads((repo / "docs" / "figures" / "figure2.labels.json").read_text())
    assert fig2["methods"] == order and fig2["target"] == "truth"
    assert fig2["row_labels"] == figures.figure2_labels(order, "truth")
    assert fig2["colorbar_label"] == figures.figure2_colorbar_label("truth")

    fig3 = json.loads((repo / "docs" / "figures" / "figure3.labels.json").read_text())
    assert fig3["methods"] == order
    assert fig3["tick_labels"] == figures.figure3_labels(order)
    assert fig3["yscale"] == "log" and fig3["warmup_excluded"] is True
    rates = [1000 / d["ms_per_frame"] for d in fig3["lines"] if d["kind"] == "data"]
    assert [f"{r:.1f}" for r in rates] == ["12.8"]  # the demo's 13-arm frames
    lines = figures.realtime_lines(rates)
    assert [(d["label"], d["kind"]) for d in fig3["lines"]] == [(lb, k) for lb, _, k in lines]
    assert fig3["legend"] == figures.figure3_legend(lines)
    assert (repo / "docs" / "figures" / "figure2.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (repo / "docs" / "figures" / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
