"""The generated outcome sentences and scorecard: change the figures, and the words and statuses change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rank_distillm import findings, significance

NAMES = {"student": "student", "untrained": "untrained", "biencoder": "bi", "teacher": "teacher", "bm25": "bm25"}
NOISE = np.array([0.11, -0.07, 0.05, -0.12, 0.03, 0.09, -0.04, -0.05, 0.02, -0.02] * 6)  # 60 queries, mean 0


def scores(student_gain: float, teacher_gap: float, teacher_noise: float = 0.0) -> pd.DataFrame:
    """60 queries: the untrained student, the student ``student_gain`` above it (plus noise), the teacher
    ``teacher_gap`` above the student (plus ``teacher_noise`` x noise), BM25 below, the bi-encoder above."""
    base = np.linspace(0.3, 0.8, len(NOISE))
    student = base + student_gain + 0.5 * NOISE
    return pd.DataFrame({"student": student, "untrained": base, "bi": student + 0.05 + 0.2 * NOISE[::-1],
                         "teacher": student + teacher_gap + teacher_noise * np.roll(NOISE, 3),
                         "bm25": base - 0.08 + 0.3 * np.roll(NOISE, 1)})


def figures(*args, **kwargs) -> dict:
    return findings.kfold_figures(scores(*args, **kwargs), NAMES, margin=0.02)


def test_kfold_figures_are_the_paired_tests_and_the_tost():
    frame = scores(0.0, 0.09)
    fig = findings.kfold_figures(frame, NAMES, margin=0.02)
    tests = significance.paired_tests(frame, baseline="student")
    assert fig["queries"] == 60 and fig["student"] == pytest.approx(frame["student"].mean())
    for key, column in (("untrained", "untrained"), ("teacher", "teacher"), ("bm25", "bm25"), ("biencoder", "bi")):
        assert fig[key] == pytest.approx(frame[column].mean())
        assert fig[f"gain_{key}"] == pytest.approx(frame["student"].mean() - frame[column].mean())
        assert fig[f"gain_{key}_p"] == pytest.approx(tests.loc[column, "p_holm"])
        assert fig[f"gain_{key}_low"] <= fig[f"gain_{key}"] <= fig[f"gain_{key}_high"]
    tost = significance.tost_paired(frame["student"], frame["teacher"], 0.02)
    assert fig["teacher_tost_p"] == pytest.approx(tost["p"]) and fig["teacher_equivalent"] is False
    with pytest.raises(ValueError, match="no column for"):
        findings.kfold_figures(frame.drop(columns="bi"), NAMES, margin=0.02)


def test_the_control_decides_what_distillation_did():
    still = findings.control_sentence(figures(0.0, 0.09))
    helped = findings.control_sentence(figures(0.1, 0.09))
    hurt = findings.control_sentence(figures(-0.1, 0.09))
    assert still.startswith("Distillation did not move the student.") and "the student is level with it (95% CI" in still
    assert helped.startswith("Distillation helped.") and "the student is 0.100 above it (" in helped
    assert hurt.startswith("Distillation hurt.") and "the student is 0.100 below it (" in hurt


def test_reaching_the_teacher_needs_equivalence():
    below = findings.teacher_sentence(figures(0.0, 0.09), "RankVicuna-7B")
    reaches = findings.teacher_sentence(figures(0.0, 0.001), "RankVicuna-7B")
    unclear = findings.teacher_sentence(figures(0.0, 0.01, teacher_noise=3.0), "RankVicuna-7B")
    assert below.startswith("The student does not reach its teacher. The teacher, RankVicuna-7B, scores") and "p < 0.001" in below
    assert reaches.startswith("The student reaches its teacher.") and "equivalent within ±0.02" in reaches
    assert "not significantly" in unclear and "Not significantly different is not the same as equivalent" in unclear


def test_kfold_outcome_reports_the_gain_over_bm25_and_the_control():
    text = findings.kfold_outcome(figures(0.0, 0.09), "RankVicuna-7B", curve_spread=0.0012)
    assert "BM25 scores 0.470, and the student is 0.080 above it" in text and "The untrained student already starts 0.080 above BM25" in text
    assert "within 0.001 nDCG@10 of the untrained student" in text
    assert text.index("untrained student") < text.index("BM25")  # the control comes first


def kwargs(ratio=570.0, measured=False):
    return dict(teacher="RankVicuna-7B", setting="5-fold, 97 queries", curve={"10": 0.57, "40": 0.571},
                curve_queries="10 -> 40 queries", speed={"ratio": ratio, "measured": measured, "setting": "this CPU"},
                memory={"ratio": 20.0, "measured": measured, "setting": "this CPU"})


def test_scorecard_statuses_follow_the_figures():
    rows = findings.scorecard(figures(0.0, 0.09), **kwargs())
    assert [set(r) for r in rows] == [{"claim", "paper", "book", "setting", "status"}] * 7
    status = {r["claim"]: r["status"] for r in rows}
    claims = list(status)
    assert status[claims[0]] == findings.NOT_AT_THIS_SCALE  # below the teacher
    assert status[claims[1]] == status[claims[2]] == findings.NEEDS_GPU  # estimated, not timed
    assert status[claims[3]] == findings.NOT_AT_THIS_SCALE  # the student learned nothing
    assert set(status[c] for c in claims[4:]) == {findings.NEEDS_GPU}
    assert "173x" in rows[1]["paper"] and "570x (estimated)" in rows[1]["book"]
    good = findings.scorecard(figures(0.1, 0.001), **kwargs(ratio=150.0, measured=True))
    assert good[0]["status"] == good[1]["status"] == good[3]["status"] == findings.REPRODUCED
    assert good[2]["status"] == findings.REPRODUCED  # 20x measured against the paper's 24x: within the tolerance
    slow = findings.scorecard(figures(0.1, 0.001), **kwargs(ratio=50.0, measured=True))
    assert slow[1]["status"] == findings.NOT_AT_THIS_SCALE


def test_ratio_status():
    assert findings.ratio_status(90.0, 173.0, True) == findings.REPRODUCED
    assert findings.ratio_status(80.0, 173.0, True) == findings.NOT_AT_THIS_SCALE
    assert findings.ratio_status(900.0, 173.0, False) == findings.NEEDS_GPU
    assert findings.ratio_status(None, 173.0, True) == findings.NEEDS_GPU


def test_found_tallies_the_scorecard():
    fig = figures(0.0, 0.09)
    rows = findings.scorecard(fig, **kwargs())
    text = findings.found(fig, rows, teacher="RankVicuna-7B", training_queries=77.6, speed=kwargs()["speed"])
    assert text.startswith("Distillation did not move the student. Over 60 TREC DL queries")
    assert "an estimated 570 times as fast as RankVicuna-7B" in text and "about 78 queries" in text
    assert "It does not reach its teacher, RankVicuna-7B (0.640, Holm p < 0.001), nor is it equivalent" in text
    assert "It is below the zero-shot bi-encoder" in text
    assert "Not reproduced at this scale: students reach the teacher; the data-size curve." in text
    assert "Reproduced here" not in text and "None of the paper's claims is reproduced here." in text
    good = findings.scorecard(figures(0.1, 0.001), **kwargs(ratio=150.0, measured=True))
    text = findings.found(figures(0.1, 0.001), good, teacher="RankVicuna-7B", training_queries=77.6,
                          speed={"ratio": 150.0, "measured": True, "setting": "a GPU"})
    assert "Reproduced here: students reach the teacher; 173x faster; 24x less memory; the data-size curve." in text
    assert "None of the paper's claims" not in text and "Why:" not in text
    assert "150 times as fast" in text and "estimated" not in text.split("times as fast")[0]


def test_p_and_ci_text():
    assert findings.p_text(0.0004) == "p < 0.001" and findings.p_text(0.0421) == "p = 0.042"
    assert findings.ci_text(-0.0061, 0.006) == "[-0.006, +0.006]"


def test_two_figures_says_whether_the_queries_are_the_same():
    kfold = {"ndcg10": 0.5742, "queries": 97, "students": 5, "training_queries": 77.6}
    same = findings.two_figures({"ndcg10": 0.5692, "queries": 97, "students": 2, "training_queries": 38}, kfold)
    other = findings.two_figures({"ndcg10": 0.61, "queries": 5, "students": 1, "training_queries": 4}, kfold)
    assert "the same 97 queries" in same and "differ by -0.0050" in same and "about 78 queries" in same
    assert "5 and 97 queries" in other and "differ by +0.0358" in other
    assert "The year-to-year students pool to 0.5692 nDCG@10: 2 students, trained on 38 queries of one year each." in same
    assert "The year-to-year student pools to 0.6100 nDCG@10: 1 student, trained on 4 queries of one year." in other


def test_kfold_table_rows_and_years():
    frame = scores(0.0, 0.09)
    table = findings.kfold_table(frame, NAMES, margin=0.02)
    assert list(table.index) == ["student", "untrained", "bi", "teacher", "bm25"]
    assert table.loc["teacher", "equivalent"] == "no" and table.loc["untrained", "equivalent"] == "yes"
    assert table.loc["teacher", "Holm p"] == "< 0.001" and pd.isna(table.loc["student", "Holm p"])
    assert table.loc["teacher", "student minus system"] == pytest.approx(-0.09)
    year = {q: ("dl19" if q < 30 else "dl20") for q in frame.index}
    means = findings.year_means(frame, year)
    assert list(means.columns) == ["DL19", "DL20", "both years"] and list(means.index) == list(frame.columns)
    assert means.loc["teacher", "DL19"] == pytest.approx(frame["teacher"][:30].mean())
    assert means.loc["teacher", "both years"] == pytest.approx(frame["teacher"].mean())


def test_year_sentence_separates_no_difference_from_equivalence():
    unclear = {"equivalent": False, "margin": 0.02, "p": 0.31}
    text = findings.year_sentence("DL19", 43, "the student", "RankVicuna-7B", -0.04, 0.085, False, unclear)
    assert "not equivalent either" in text and "p = 0.085" in text and "p = 0.310" in text
    same = findings.year_sentence("DL19", 43, "the student", "RankVicuna-7B", -0.001, 0.9, False,
                                  {"equivalent": True, "margin": 0.02, "p": 0.01})
    assert "are equivalent" in same
    assert findings.year_sentence("DL19", 43, "s", "t", -0.1, 0.001, True, unclear).endswith("Holm).")


def test_tradeoff_sentence_names_the_dominant_system():
    dominates = findings.tradeoff_sentence("the bi-encoder", 0.62, 0.5, "the student", 0.57, 1.0)
    assert dominates.startswith("the bi-encoder is both faster and more effective than the student: nDCG@10 0.6200 against")
    assert dominates.endswith("On this plot it dominates the student.")
    assert "trade-off" in findings.tradeoff_sentence("the bi-encoder", 0.55, 0.5, "the student", 0.57, 1.0)
    assert findings.tradeoff_sentence("a", 0.5, 2.0, "b", 0.6, 1.0).endswith("On this plot b dominates it.")


def test_headline_ratios_prefer_a_real_measurement():
    comparison = pd.DataFrame({"speed-up": [570.0, 160.0], "memory ratio": [40.0, 30.0], "FLOP ratio": [100.0, 100.0]},
                              index=["this CPU", "GPU"])
    speed, memory = findings.headline_ratios(comparison, None)
    assert speed == {"ratio": 570.0, "measured": False, "setting": speed["setting"]} and memory["ratio"] == 40.0
    assert speed["setting"].endswith("GPU, cost model: 100x (FLOPs) to 160x (roofline)") and memory["setting"].endswith(": 30x")
    speed, memory = findings.headline_ratios(comparison, {"speedup": 120.0, "memory_ratio": 20.0, "setting": "H100"})
    assert speed["measured"] and speed["ratio"] == 120.0 and memory["ratio"] == 20.0


def test_as_html_escapes_and_keeps_code():
    assert findings.as_html("p < 0.001 & the `gpu` profile") == "<p>p &lt; 0.001 &amp; the <code>gpu</code> profile</p>"


def test_scorecard_first_stage_row_follows_the_sampler_study():
    claim = "the first-stage finding"
    unmeasured = {r["claim"]: r for r in findings.scorecard(figures(0.0, 0.09), **kwargs())}[claim]
    assert unmeasured["status"] == findings.NEEDS_GPU and unmeasured["book"] == "not measured"
    study = {"book": "SPLADE++ ED lists 0.575 vs BM25 lists 0.574", "setting": "5-fold, 97 queries"}
    held = {r["claim"]: r for r in findings.scorecard(figures(0.0, 0.09), **kwargs(),
                                                       first_stage={**study, "holds": True})}[claim]
    missed = {r["claim"]: r for r in findings.scorecard(figures(0.0, 0.09), **kwargs(),
                                                         first_stage={**study, "holds": False})}[claim]
    assert held["status"] == findings.REPRODUCED and missed["status"] == findings.NOT_AT_THIS_SCALE
    assert held["book"] == study["book"] and missed["setting"] == study["setting"]
