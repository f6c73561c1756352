"""k-fold cross-validation over both TREC DL years: folds, nesting, pooled scores, the whole run at toy size."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from rank_distillm import crossval, profiles


def _years(n19: int, n20: int) -> dict[str, str]:
    return {**{f"a{i}": "dl19" for i in range(n19)}, **{f"b{i}": "dl20" for i in range(n20)}}


def test_stratified_order_keeps_the_years_in_proportion_in_every_prefix():
    year = _years(43, 54)
    order = crossval.stratified_order(year, seed=42)
    assert sorted(order) == sorted(year)
    for n in range(1, len(order) + 1):
        dl19 = sum(year[q] == "dl19" for q in order[:n])
        assert abs(dl19 - n * 43 / 97) <= 1, n
    assert order == crossval.stratified_order(year, seed=42)
    assert order != crossval.stratified_order(year, seed=43)


def test_year_folds_partition_the_queries_stratified_by_year():
    year = _years(43, 54)
    folds = crossval.year_folds(year, 5, seed=42)
    flat = [q for f in folds for q in f]
    assert sorted(flat) == sorted(year) and len(set(flat)) == len(flat)
    assert sorted(len(f) for f in folds) == [19, 19, 19, 20, 20]
    per_year = [Counter(year[q] for q in f) for f in folds]
    assert max(c["dl19"] for c in per_year) - min(c["dl19"] for c in per_year) <= 1
    assert max(c["dl20"] for c in per_year) - min(c["dl20"] for c in per_year) <= 1
    with pytest.raises(ValueError, match="folds"):
        crossval.year_folds(year, 1, seed=42)


def test_the_nested_plan_never_trains_or_chooses_on_a_test_query():
    year = _years(43, 54)
    cv = {"folds": 5, "seed": 42, "inner_training": 40, "epochs": 2}
    plan = crossval.fold_plan(year, cv)
    assert sorted(q for p in plan for q in p["test"]) == sorted(year)  # every query tested exactly once
    for p in plan:
        test = set(p["test"])
        assert not test & set(p["train"]) and not test & set(p["validate"]) and not test & set(p["inner_train"])
        assert set(p["train"]) == set(year) - test
        assert p["inner_train"] == p["train"][:40] and not set(p["validate"]) & set(p["inner_train"])
        assert set(p["validate"]) | set(p["inner_train"]) == set(p["train"])
        assert 17 <= sum(year[q] == "dl19" for q in p["inner_train"]) <= 19  # 40 x 43/97 = 17.7
        # the inner student is the data-size curve's point at 40 queries: one job, trained once
        assert crossval.curve_job(p, cv, 40) == crossval.inner_job(p, cv)
        assert crossval.curve_job(p, cv, 20)["train"] == sorted(p["train"][:20]) and not crossval.curve_job(p, cv, 20)["validate"]
    with pytest.raises(ValueError, match="inner_training"):
        crossval.fold_plan(year, {**cv, "inner_training": 78})


def test_choose_epochs_takes_the_best_and_the_fewest_on_ties():
    assert crossval.choose_epochs([0.5, 0.6, 0.55]) == 1
    assert crossval.choose_epochs([0.6, 0.6, 0.55]) == 0
    assert crossval.choose_epochs([0.5, 0.55, 0.6]) == 2


@pytest.fixture(scope="module")
def cpu_pool():
    return crossval.load_pool(profiles.load_profile("cpu"))


def test_the_pool_scores_each_query_against_its_own_years_qrels(cpu_pool):
    """BM25's pooled run: DL19 0.5058 and DL20 0.4796 (the known values), 97 queries, 0.4912 pooled."""
    from rank_distillm import data

    assert Counter(cpu_pool.year.values()) == {"dl19": 43, "dl20": 54}
    run = {}
    for y in ("dl19", "dl20"):
        run.update(data.read_run(data.resolve_path(profiles.load_profile("cpu")["data"]["first_stage"][y])))
    scores = cpu_pool.ndcg10({q: run[q] for q in cpu_pool.candidates})
    assert len(scores) == 97
    assert np.mean([s for q, s in scores.items() if cpu_pool.year[q] == "dl19"]) == pytest.approx(0.5058, abs=5e-5)
    assert np.mean([s for q, s in scores.items() if cpu_pool.year[q] == "dl20"]) == pytest.approx(0.4796, abs=5e-5)
    assert np.mean(list(scores.values())) == pytest.approx((43 * 0.5058 + 54 * 0.4796) / 97, abs=1e-4)


@pytest.mark.slow
def test_a_toy_crossval_tests_every_query_once_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    profile = profiles.load_profile("smoke")
    profile["training"]["max_queries"] = 2  # 2 queries of each year, 400 pairs
    profile["crossval"].update(folds=2, inner_training=1, curve=[1], workers=1)
    result = crossval.crossval(profile, progress=False, zero_shot=False)  # the bi-encoder column: chapter 5's smoke run
    assert sorted(result.scores.index) == sorted(q for f in result.folds for q in f)
    assert len(result.scores) == 4 and result.scores.notna().all().all()
    assert set(result.scores.columns) >= {crossval.STUDENT, crossval.UNTRAINED, crossval.BM25, "RankVicuna-7B"}
    assert np.isnan(result.comparison.loc[crossval.STUDENT, "p"])
    assert (result.comparison.drop(crossval.STUDENT)["p_holm"] >= result.comparison.drop(crossval.STUDENT)["p"] - 1e-12).all()
    assert list(result.curve["training queries"]) == [1.0, 2.0]
    assert set(result.choices["epochs chosen"]) <= {0, 1}
    # a fold whose chosen number of epochs is 0 scores exactly as the untrained student
    for f, e in result.choices["epochs chosen"].items():
        if e == 0:
            qs = result.folds[f]
            assert np.allclose(result.scores.loc[qs, crossval.STUDENT], result.scores.loc[qs, crossval.UNTRAINED])
    cached = sorted((tmp_path / "crossval").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    again = crossval.crossval(profile, progress=False, zero_shot=False)
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps  # nothing trained or written again
    assert again.scores.equals(result.scores)
    assert all(json.loads(p.read_text())["run"] is not None for p in cached)
