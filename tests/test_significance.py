"""Statistics against hand-computed values and the reference implementations
(scipy.stats.ttest_rel, statsmodels multipletests and DescrStatsW), on real per-query nDCG@10."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from rank_distillm import significance
from rank_distillm.evaluation import per_query

from .conftest import DL19


@pytest.fixture(scope="module")
def dl19_scores(runs_dir) -> pd.DataFrame:
    runs = {"bm25": "bm25.run", "rankvicuna": "rankvicuna-7b.run", "rankgpt": "rankgpt-gpt-3.5-turbo.run"}
    cols = {name: per_query(runs_dir / "trec-dl-2019" / f, DL19, ["nDCG@10"]).set_index("qid")["value"] for name, f in runs.items()}
    return pd.DataFrame(cols)


def test_mean_ci_by_hand():
    mean, low, high = significance.mean_ci([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * sd / sqrt(n)
    assert (mean, low, high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))


def test_mean_ci_matches_statsmodels(dl19_scores):
    for system in dl19_scores:
        mean, low, high = significance.mean_ci(dl19_scores[system])
        assert (low, high) == pytest.approx(DescrStatsW(dl19_scores[system].to_numpy()).tconfint_mean(0.05))
        assert mean == pytest.approx(dl19_scores[system].mean())


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone: 0.03, 0.06, 0.06
    assert significance.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert significance.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = significance.holm([np.nan, 0.01, 0.04])  # nan is no comparison: 2 tests, not 3
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.04])


def test_paired_t_by_hand():
    a, b = np.array([0.9, 0.8, 0.7, 0.6, 0.4]), np.array([0.5, 0.7, 0.6, 0.6, 0.1])
    d = a - b  # 0.4 0.1 0.1 0 0.3
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    p = 2 * stats.t.sf(abs(t), len(d) - 1)
    table = significance.paired_tests(pd.DataFrame({"a": a, "b": b}), baseline="b")
    assert table.loc["a", "t"] == pytest.approx(t) and table.loc["a", "p"] == pytest.approx(p)
    assert table.loc["a", "diff"] == pytest.approx(0.18)
    assert math.isnan(table.loc["b", "p"]) and not table.loc["b", "significant"]


def test_paired_tests_match_scipy_and_statsmodels(dl19_scores):
    table = significance.paired_tests(dl19_scores, baseline="rankvicuna")
    raw = []
    for system in ["bm25", "rankgpt"]:
        ref = stats.ttest_rel(dl19_scores[system], dl19_scores["rankvicuna"])
        assert table.loc[system, "t"] == pytest.approx(ref.statistic)
        assert table.loc[system, "p"] == pytest.approx(ref.pvalue)
        low, high = ref.confidence_interval(0.95)
        assert (table.loc[system, "diff_ci_low"], table.loc[system, "diff_ci_high"]) == pytest.approx((low, high))
        raw.append(ref.pvalue)
    reject, corrected, _, _ = multipletests(raw, alpha=0.05, method="holm")
    assert list(table.loc[["bm25", "rankgpt"], "p_holm"]) == pytest.approx(list(corrected))
    assert list(table.loc[["bm25", "rankgpt"], "significant"]) == list(reject)
    # known outcome on DL19: BM25 is far below RankVicuna, RankGPT not significantly different
    assert table.loc["bm25", "significant"] and not table.loc["rankgpt", "significant"]


def test_identical_system_is_not_significant(dl19_scores):
    scores = dl19_scores.assign(copy=dl19_scores["rankvicuna"])
    table = significance.paired_tests(scores, baseline="rankvicuna")
    assert table.loc["copy", "p"] == 1.0 and not table.loc["copy", "significant"]


def test_paired_t_test_constant_differences():
    """Zero variance of the differences: no difference is p = 1 (scipy: nan), a constant shift p = 0
    (as scipy for an exact shift; with float noise scipy's t is an arbitrary huge number)."""
    assert math.isnan(stats.ttest_rel([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]).pvalue)
    assert significance.paired_t_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]) == (0.0, 1.0)
    exact = stats.ttest_rel([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert significance.paired_t_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == (exact.statistic, exact.pvalue) == (math.inf, 0.0)
    assert significance.paired_t_test([0.6, 0.7, 0.8], [0.5, 0.6, 0.7]) == (math.inf, 0.0)
    assert significance.paired_t_test([0.4, 0.5, 0.6], [0.5, 0.6, 0.7]) == (-math.inf, 0.0)


@pytest.mark.parametrize(
    "scores, message",
    [
        (pd.DataFrame({"a": [1.0, 2.0]}), "baseline 'b' is not one of"),
        (pd.DataFrame({"a": [1.0, np.nan], "b": [1.0, 2.0]}), "missing: {'a': 1}"),
        (pd.DataFrame({"a": [1.0], "b": [0.5]}), "at least 2 queries"),
    ],
)
def test_paired_tests_bad_input(scores, message):
    with pytest.raises(ValueError, match=message):
        significance.paired_tests(scores, baseline="b")


def test_kendall_tau_by_hand():
    ref = {"q": {"a": 4, "b": 3, "c": 2, "d": 1}}
    assert significance.kendall_tau({"q": {"b": 4, "a": 3, "c": 2, "d": 1}}, ref) == {"q": pytest.approx(4 / 6)}
    assert significance.kendall_tau({"q": {"d": 4, "c": 3, "b": 2, "a": 1}}, ref) == {"q": pytest.approx(-1.0)}
    # only shared passages count; a query missing from the reference is skipped
    assert significance.kendall_tau({"q": {"a": 2, "x": 1.5, "c": 1}, "z": {"a": 1, "b": 0}}, ref) == {"q": pytest.approx(1.0)}


def test_teacher_ndcg_by_hand():
    teacher = {"q": {"a": 3, "b": 2, "c": 1, "d": 0}}
    assert significance.ranking_qrels(teacher, depth=3) == {"q": {"a": 3, "b": 2, "c": 1, "d": 0}}
    got = significance.teacher_ndcg({"q": {"b": 4, "a": 3, "c": 2, "d": 1}}, teacher, depth=3)
    dcg = 2 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)  # linear gains, as trec_eval
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert got == {"q": pytest.approx(dcg / idcg)}
    assert significance.teacher_ndcg(teacher, teacher, depth=3) == {"q": pytest.approx(1.0)}


def test_agreement_on_real_runs(runs_dir):
    from rank_distillm.data import read_run

    teacher = read_run(runs_dir / "trec-dl-2020/rankvicuna-7b.run")
    second = read_run(runs_dir / "trec-dl-2020/rankvicuna-7b-second-run.run")
    bm25 = read_run(runs_dir / "trec-dl-2020/bm25.run")
    tau_second = np.mean(list(significance.kendall_tau(second, teacher).values()))
    tau_bm25 = np.mean(list(significance.kendall_tau(bm25, teacher).values()))
    # a second run of the same LLM agrees with the first more than BM25 (its input) does
    assert 0 < tau_bm25 < tau_second < 1
    assert len(significance.teacher_ndcg(bm25, teacher)) == 54


def test_gap_verdict_by_hand():
    scores = pd.DataFrame({"BM25": [0.2, 0.4, 0.3, 0.5], "student": [0.3, 0.45, 0.4, 0.55], "teacher": [0.4, 0.6, 0.5, 0.7]})
    v = significance.gap_verdict(scores, "student", baseline="BM25", teacher="teacher")
    assert v["queries"] == 4 and v["mean"] == pytest.approx(0.425) and v["diff"] == pytest.approx(0.075)
    assert v["gap_closed"] == pytest.approx(0.075 / 0.2)  # three eighths of the way from BM25 to the teacher
    assert v["p"] == pytest.approx(stats.ttest_rel(scores["student"], scores["BM25"]).pvalue)
    assert v["diff_ci_low"] < 0.075 < v["diff_ci_high"]


def test_tost_paired_matches_statsmodels(dl19_scores):
    """The paired TOST against statsmodels' ``ttost_paired`` on real per-query nDCG@10, at two margins."""
    from statsmodels.stats.weightstats import ttost_paired

    for a, b in (("rankvicuna", "rankgpt"), ("bm25", "rankvicuna")):
        for margin in (0.02, 0.2):
            got = significance.tost_paired(dl19_scores[a], dl19_scores[b], margin)
            p, (_, p1, _), (_, p2, _) = ttost_paired(dl19_scores[a].to_numpy(), dl19_scores[b].to_numpy(), -margin, margin)
            assert (got["p"], got["p_lower"], got["p_upper"]) == pytest.approx((p, p1, p2), rel=1e-10)
            assert got["equivalent"] == (p < 0.05) and got["queries"] == len(dl19_scores)
            # equivalent at alpha <=> the 90% interval of the mean difference lies inside the margin
            assert got["equivalent"] == (-margin < got["ci_low"] and got["ci_high"] < margin)


def test_tost_paired_not_different_is_not_equivalent():
    """Two systems a t-test cannot tell apart (few, noisy queries) are not thereby shown equivalent."""
    base = np.array([0.3, 0.5, 0.4, 0.7, 0.6, 0.45, 0.55, 0.35])
    x = base + np.array([0.2, -0.15, 0.1, -0.2, 0.05, 0.12, -0.1, -0.05])
    assert significance.paired_t_test(x, base)[1] > 0.05  # not significantly different
    assert not significance.tost_paired(x, base, 0.02)["equivalent"]  # and not equivalent either
    close = base + np.array([0.004, -0.003, 0.002, -0.004, 0.001, 0.003, -0.002, -0.001])  # nearly identical
    assert significance.tost_paired(close, base, 0.02)["equivalent"]
    assert significance.tost_paired(base + 0.01, base, 0.02)["equivalent"]  # a constant difference inside the margin
    assert not significance.tost_paired(base + 0.05, base, 0.02)["equivalent"]
    with pytest.raises(ValueError, match="margin must be positive"):
        significance.tost_paired(x, base, 0)
