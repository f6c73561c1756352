"""Tables for the page: readable names, dashes, the comparison table from a real comparison."""

from __future__ import annotations

import math
import warnings

import pandas as pd

from rank_distillm import evaluation, tables

from .conftest import DL19, DL20


def test_measure_and_p_value_labels():
    assert [tables.measure_label(m) for m in ("nDCG@10", "RR(rel=2)@10", "AP(rel=2)")] == ["nDCG@10", "MRR@10", "MAP"]
    assert [tables.p_value(p) for p in (0.04321, 0.0004, math.nan, None)] == ["0.043", "<0.001", "\u2013", "\u2013"]
    assert [tables.p_cell(p) for p in (0.04321, 0.0004)] == ["0.043", "< 0.001"]
    assert tables.year_label("dl19") == "DL19"


def test_styled_shows_a_dash_for_missing_values():
    html = tables.styled(pd.DataFrame({"a": [1.0, math.nan]}), "{:.2f}", caption="C").to_html()
    assert "1.00" in html and "\u2013" in html and "nan" not in html.lower() and "C</caption>" in html
    assert "white-space: nowrap" in tables.styled(pd.DataFrame({"a": [1.0]}), nowrap=["a"]).to_html()


def test_comparison_table_from_real_runs(runs_dir):
    runs = {year: {"BM25": runs_dir / f"trec-dl-{y}/bm25.run", "RankVicuna-7B": runs_dir / f"trec-dl-{y}/rankvicuna-7b.run",
                   "RankGPT": runs_dir / f"trec-dl-{y}/rankgpt-gpt-3.5-turbo.run"}
            for year, y in (("dl19", 2019), ("dl20", 2020))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comparisons = {year: evaluation.compare(runs[year], dataset, baseline="RankVicuna-7B",
                                                measures=["nDCG@10", "RR(rel=2)@10"])
                       for year, dataset in (("dl19", DL19), ("dl20", DL20))}
    table = tables.comparison_table(comparisons, measures=["nDCG@10", "RR(rel=2)@10"])
    assert list(table.columns) == ["nDCG@10", "95% CI", "MRR@10", "\u0394 to baseline", "p (Holm)"]
    assert table.index.names == ["year", "system"] and len(table) == 6
    assert table.loc[("DL19", "BM25"), "nDCG@10"] == "0.506" and table.loc[("DL20", "RankVicuna-7B (baseline)"), "nDCG@10"] == "0.661"
    # the baseline's own test cells are blank; BM25 is significantly worse than RankVicuna on DL19 (p < 0.001)
    assert table.loc[("DL19", "RankVicuna-7B (baseline)"), "\u0394 to baseline"] == ""
    assert table.loc[("DL19", "RankVicuna-7B (baseline)"), "p (Holm)"] == ""
    assert table.loc[("DL19", "BM25"), "\u0394 to baseline"] == "-0.162*"
    assert table.loc[("DL19", "BM25"), "95% CI"].count(".") == 2 and len(table.loc[("DL19", "BM25"), "95% CI"]) == 9
    assert table.loc[("DL19", "BM25"), "p (Holm)"] == "<0.001"
    assert not table.loc[("DL19", "RankGPT"), "\u0394 to baseline"].endswith("*")
    assert not table.isna().any().any()
    lines = tables.verdicts(comparisons["dl19"])
    assert lines[0].startswith("43 queries; RankVicuna-7B (the baseline): nDCG@10 0.6682")
    assert lines[1].startswith("BM25: 0.5058 (-0.1623, Holm p < 0.001: significantly worse;")
    assert lines[2].startswith("RankGPT: 0.6938 (+0.0257, Holm p = 0.") and "not significantly different" in lines[2]
    # every system re-orders the same BM25 top-100: R@100 cannot tell them apart, nDCG@10 can
    both = pd.concat({y: c.table for y, c in comparisons.items()}, names=["year", "system"])
    assert tables.constant_columns(both, ["nDCG@10", "RR(rel=2)@10"], by="year") == []
    recall = {y: evaluation.compare(runs[y], d, measures=["R(rel=2)@100", "nDCG@10"]).table for y, d in (("dl19", DL19), ("dl20", DL20))}
    assert tables.constant_columns(pd.concat(recall, names=["year", "system"]), ["R(rel=2)@100", "nDCG@10"], by="year") == ["R(rel=2)@100"]


def test_slug():
    assert tables.slug("RankGPT (gpt-3.5-turbo)") == "rankgpt__gpt_3_5_turbo"


def test_readable_formats_every_column_for_reading():
    frame = pd.DataFrame({"nDCG@10": [0.57421, math.nan], "queries": [97.0, 43.0], "p (Holm)": [0.00001, 0.0849],
                          "pairs/s": [225.6, 12.53], "system": ["student", "teacher"], "vs student": [-0.0123, 0.0]})
    html = tables.readable(frame, digits={"pairs/s": 1}).to_html()
    for shown in ("0.574", "\u2013", ">97<", ">43<", "< 0.001", "0.085", "225.6", "12.5", "student", "-0.012", "+0.000"):
        assert shown in html, shown
    for hidden in ("nan", "NaN", "97.0", "225.600000", "0.0000"):
        assert hidden not in html, hidden
