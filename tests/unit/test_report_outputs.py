"""What the renderer hands a paper author: tables in the paper's shape (Markdown, CSV, LaTeX) that agree with the
long tables, notes said once, vector + 200 dpi figures with one colour scale and readable axes, and a figure that
would repeat another written once."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pipeline.aggregate import aggregate
from pipeline.report import curves, heatmaps, unfit_images
from pipeline.report.paper_tables import SHAPES
from tests.unit.test_aggregate import Artifacts, build_full

TABLES = ("T2", "T3", "T4", "T5", "T6", "F12")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The full synthetic campaign, rendered with every figure object kept for inspection."""
    tmp = tmp_path_factory.mktemp("outputs")
    params, arts, _ = build_full(tmp)
    figures: dict[str, matplotlib.figure.Figure] = {}
    mp = pytest.MonkeyPatch()
    for module in (curves, heatmaps, unfit_images):
        real = module.write

        def keep(fig, data, out_dir, fid, tight=True, _real=real):
            _real(fig, data, out_dir, fid, tight=tight)
            figures[fid] = fig
        mp.setattr(module, "write", keep)
    try:
        aggregate(params, arts, tmp / "results")
    finally:
        mp.undo()
    return tmp / "results", figures


def png_dpi(path: Path) -> float:
    """The resolution a PNG declares (its pHYs chunk), in dots per inch."""
    data = path.read_bytes()
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"pHYs":
            ppm_x, _, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            assert unit == 1, "pHYs not in pixels per metre"
            return ppm_x * 0.0254
        pos += 12 + length
    raise AssertionError(f"{path.name} declares no resolution")


def test_every_table_has_markdown_csv_and_latex_in_the_papers_shape(drawn):
    out, _ = drawn
    for tid in TABLES:
        md, csv, tex = (out / "paper" / f"{tid}.{ext}" for ext in ("md", "csv", "tex"))
        assert md.read_text().startswith(f"# {tid}:")
        frame = pd.read_csv(csv)
        labels = [h for h, _ in SHAPES[tid].labels]
        assert list(frame.columns[:len(labels)]) == labels
        body = tex.read_text()
        assert body.isascii(), [c for c in body if not c.isascii()][:5]
        assert all(rule in body for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}"))
        spec = body.split(r"\begin{tabular}{")[1].split("}")[0]
        rows = body.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
        assert len(rows) == len(frame), tid
        for row in rows:  # every row fills exactly the columns the tabular declares
            assert row.count(" & ") == len(spec) - 1, (tid, row)


def test_methods_are_rows_and_cells_are_the_long_tables_numbers(drawn):
    out, _ = drawn
    t2 = pd.read_csv(out / "paper" / "T2.csv")
    c10 = t2[t2["dataset"] == "cifar10"]
    assert list(c10["method"]) == ["λ_wd = 0.0005", "DoG = 0.018, 0.019", "AWD − fixed λ_wd"]
    long = pd.read_csv(out / "tables" / "T2.csv")
    want = long[(long["dataset"] == "cifar10") & (long["method"] == "fixed") & (long["metric"] == "test_acc")].iloc[0]
    got = c10.iloc[0]
    assert got["test acc (%)"] == pytest.approx(round(want["ours"], 2))
    assert got["test acc (%) std"] == pytest.approx(round(want["ours_std"], 2))
    assert got["test acc (%) paper"] == pytest.approx(96.31)
    # Table 6 has a column per pruning amount, Figure 12 one per learning rate, as the paper prints them
    t6 = pd.read_csv(out / "paper" / "T6.csv")
    assert {"Nat", "50%", "70%", "70% paper"} <= set(t6.columns)
    assert {"lr = 0.01", "lr = 0.1", "lr = 1"} <= set(pd.read_csv(out / "paper" / "F12.csv").columns)
    # a paper column only beside a number the paper prints (it has no val PGD-20 accuracy)
    t3 = pd.read_csv(out / "paper" / "T3.csv")
    assert "AutoAttack acc (%) paper" in t3.columns and "val PGD-20 robust acc (%) paper" not in t3.columns
    assert "| val PGD-20 robust acc (%) |" in (out / "paper" / "T3.md").read_text()
    md = (out / "paper" / "T6.md").read_text()
    assert "| cifar100 | 1 | λ_wd = 0.0005 | 29.50 ± 0.71 | 7.90 ± 1.40 |" in md


def test_a_note_every_row_shares_is_said_once(tmp_path):
    art = Artifacts(tmp_path)
    for method, value in (("fixed", 5e-4), ("awd", 0.2)):
        for seed in (0, 1):
            art.run("natural", "digits", {"method": method, "value": value, "seed": seed},
                    {"val_acc": 0.9, "test_acc": 0.9 + 0.01 * seed, "weight_norm": 3.0 + seed, "train_xent": 0.1},
                    config={"seed": seed})
    params, arts = art.write()
    aggregate(params, arts, tmp_path / "results")
    for rel in ("paper/T2.md", "tables/T2.md", "paper/T2.tex"):
        text = (tmp_path / "results" / rel).read_text()
        assert text.count("datasets differ") == 1, rel
    paper_md = (tmp_path / "results" / "paper" / "T2.md").read_text()
    assert "Ours: mean ± std over n = 2 runs per row" in paper_md
    # the paired difference row keeps its own note, as a footnote
    assert "AWD − fixed λ_wd<sup>" in paper_md and "paired over seeds" in paper_md


def test_figures_are_vector_and_200_dpi_with_one_colour_scale_and_labels_that_do_not_collide(drawn):
    out, figures = drawn
    assert set(figures) >= {"F1", "F2", "F3", "F4", "F5", "F6", "F7"}
    for fid in figures:
        if not (out / "plots" / f"{fid}.png").exists():
            continue  # a repeat, drawn once under its original (the next test)
        assert (out / "plots" / f"{fid}.pdf").read_bytes()[:5] == b"%PDF-", fid
        assert png_dpi(out / "plots" / f"{fid}.png") >= 199.9, fid
    f1 = figures["F1"]
    images = [im for ax in f1.axes for im in ax.images]
    assert len(images) == 2  # the λ_wd grid and the AWD grid beside it
    assert len({(im.norm.vmin, im.norm.vmax) for im in images}) == 1  # one scale: a colour is one accuracy
    assert sum(ax.get_label() == "<colorbar>" for ax in f1.axes) == 1
    for fid, fig in figures.items():
        canvas = FigureCanvasAgg(fig)  # the writer closed the figure; lay it out again as it was saved
        canvas.draw()
        renderer = canvas.get_renderer()
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels(which="both")
                         if t.get_visible() and t.get_text()]
                for i, a in enumerate(boxes):
                    for b in boxes[i + 1:]:
                        assert not a.overlaps(b), f"{fid}: tick labels collide on {ax.get_title()!r}"


def test_a_figure_that_would_repeat_another_is_written_once(drawn, tmp_path):
    out, _ = drawn
    readme = (out / "README.md").read_text()
    assert not (out / "plots" / "F9.png").exists() and (out / "plots" / "F9.csv").exists()
    assert "would repeat [F1](#f1)" in readme and "![F9]" not in readme
    # a ResNet32 grid study is what F9 is for: then it is a figure of its own
    params, arts, art = build_full(tmp_path)
    for lr in (0.01, 0.1):
        art.run("grid", "digits", {"name": "resnet32", "lr": lr, "wd": 5e-4}, {"val_acc": 0.5 + lr},
                study=1, config={"lr": lr, "wd_method": "fixed", "wd": 5e-4, "model": "resnet32"})
    art.write()
    aggregate(params, arts, tmp_path / "results")
    plots = tmp_path / "results" / "plots"
    assert (plots / "F9.png").exists() and (plots / "F9.pdf").exists()
    assert (plots / "F9.csv").read_bytes() != (plots / "F1.csv").read_bytes()
    assert "![F9](plots/F9.png)" in (tmp_path / "results" / "README.md").read_text()


def test_a_duplicate_is_not_rendered_at_all(tmp_path, monkeypatch):
    """Rendering is most of the aggregate stage's time: a figure whose plot data equals its original's (drawn first)
    writes its CSV and never renders an image; with other data it is rendered."""
    from pipeline.report import figure_io

    rendered = []
    monkeypatch.setattr(figure_io, "save_figure", lambda fig, path, fmt, dpi=200: rendered.append(path.name))
    data = pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]})
    for fid, frame in (("F1", data), ("F9", data), ("F4", data), ("F8", data.assign(y=[0.5, 0.3]))):
        fig, _ = figure_io.new_figure(1, 1)
        figure_io.write(fig, frame, tmp_path, fid)
    assert rendered == ["F1.pdf", "F1.png", "F4.pdf", "F4.png", "F8.pdf", "F8.png"]
    assert (tmp_path / "F9.csv").read_bytes() == (tmp_path / "F1.csv").read_bytes()
