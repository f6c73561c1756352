"""The five first stages, the paper's two columns and the sampler study, on the real data."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from rank_distillm import crossval, data, first_stages, profiles
from rank_distillm import sampler_study as ss

# nDCG@10 and R(rel=2)@100 of each first stage's top-100, and RankVicuna-7B's nDCG@10 over it (issue table)
KNOWN = {
    ("BM25", "dl19"): (0.5058, 0.491, 0.6682), ("BM25", "dl20"): (0.4796, 0.560, 0.6611),
    ("BM25+RM3", "dl19"): (0.5216, 0.526, 0.6588), ("BM25+RM3", "dl20"): (0.4896, 0.618, 0.6657),
    ("TAS-B", "dl19"): (0.7210, 0.610, 0.7551), ("TAS-B", "dl20"): (0.6854, 0.713, 0.7118),
    ("OpenAI ada-002", "dl19"): (0.7035, 0.623, 0.7374), ("OpenAI ada-002", "dl20"): (0.6759, 0.724, 0.7173),
    ("SPLADE++ ED", "dl19"): (0.7308, 0.639, 0.7459), ("SPLADE++ ED", "dl20"): (0.7197, 0.765, 0.7551),
}


def test_the_five_first_stages_and_the_teacher_over_each_give_the_known_figures():
    table = first_stages.first_stage_table(profiles.load_profile("cpu"))
    assert list(table.index.get_level_values(0).unique()) == ["BM25", "BM25+RM3", "TAS-B", "OpenAI ada-002", "SPLADE++ ED"]
    for key, (ndcg, recall, teacher) in KNOWN.items():
        row = table.loc[key]
        assert row["queries"] == (43 if key[1] == "dl19" else 54)
        assert row["nDCG@10"] == pytest.approx(ndcg, abs=5e-5), key
        assert row["R(rel=2)@100"] == pytest.approx(recall, abs=5e-4), key
        assert row["teacher nDCG@10"] == pytest.approx(teacher, abs=5e-5), key


def test_the_smoke_profile_has_bm25_and_one_added_first_stage():
    smoke = profiles.load_profile("smoke")
    assert first_stages.names(smoke) == ["BM25", "SPLADE++ ED"]
    assert smoke["crossval"]["strong_first_stage"] == "SPLADE++ ED"
    assert profiles.load_profile("gpu")["crossval"]["strong_first_stage"] == "ColBERTv2"  # the paper's, in gpu
    assert set(profiles.load_profile("cpu")["crossval"]["samplers"]["all"]["first_stages"]) == set(first_stages.names(profiles.load_profile("cpu")))


def test_candidates_of_a_named_first_stage_follow_its_run_and_name_a_missing_query():
    cpu = profiles.load_profile("cpu")
    run = data.read_run(first_stages.run_spec(cpu, "SPLADE++ ED", "dl19"))
    qids = list(run)[:2][::-1]
    cands = first_stages.candidates(cpu, "SPLADE++ ED", "dl19", qids=qids)
    assert [c.qid for c in cands] == qids and all(len(c) == 100 for c in cands)
    assert cands[0].docids == list(run[qids[0]])[:100] and all(t for t in cands[0].texts)
    with pytest.raises(data.DataError, match=r"splade-pp-ed\.run.*no ranking for query 999"):
        first_stages.candidates(cpu, "SPLADE++ ED", "dl19", qids=["999"])
    with pytest.raises(KeyError, match="no first stage named 'nope'"):
        first_stages.run_spec(cpu, "nope", "dl19")
    assert first_stages.teacher_spec(cpu, "SPLADE++ ED", "dl20").endswith("rankvicuna-7b-over-splade-pp-ed.run")


def test_a_sampler_of_two_first_stages_gives_each_query_two_lists_in_each_teachers_order():
    profile = profiles.load_profile("smoke")
    pool = crossval.load_pool(profile)
    qids = sorted(pool.candidates)[:3]
    lists = crossval.fold_lists(profile, pool, qids, sampler=["BM25", "SPLADE++ ED"])
    assert sorted(lists["qid"]) == sorted(qids * 2)
    per_list = profile["training"]["stage2"]["per_list"]
    splade_rows = [r for r in lists if set(r["docids"]) <= set(pool.stages["SPLADE++ ED"][r["qid"]].docids)
                   and not set(r["docids"]) <= set(pool.candidates[r["qid"]].docids)]
    assert {r["qid"] for r in splade_rows} == set(qids)  # one list per query from SPLADE's own top-100
    teacher = data.read_run(pool.stage_teacher["SPLADE++ ED"][pool.year[qids[0]]])
    for r in splade_rows:
        assert len(r["docids"]) == per_list and list(r["labels"]) == sorted(r["labels"], reverse=True)
        order = [d for d in teacher[r["qid"]] if d in set(r["docids"])]
        assert list(r["docids"]) == order  # listed in the teacher's order over SPLADE's top-100
    only_bm25 = crossval.fold_lists(profile, pool, qids)
    assert sorted(only_bm25["qid"]) == sorted(qids)


def test_pairwise_tests_agree_with_scipy_and_statsmodels():
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"a": rng.uniform(size=30), "b": rng.uniform(size=30), "c": rng.uniform(size=30)})
    scores["c"] += 0.3
    tests = ss.pairwise_tests(scores, alpha=0.05)
    raw = [stats.ttest_rel(scores[a], scores[b]).pvalue for a, b in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert np.allclose(tests["p"], raw) and np.allclose(tests["p (Holm)"], multipletests(raw, method="holm")[1])
    assert list(tests["significant"]) == list(multipletests(raw, method="holm")[1] < 0.05)


def _tests(diff_strong: float, p_strong: float) -> pd.DataFrame:
    rows = []
    for cand in ("BM25", "SPLADE++ ED"):
        rows += [{"a": "splade_pp_ed", "b": "bm25", "a - b": diff_strong, "p (Holm)": p_strong, "significant": p_strong < 0.05, "candidates": cand},
                 {"a": "all", "b": "bm25", "a - b": -0.01, "p (Holm)": 0.5, "significant": False, "candidates": cand},
                 {"a": "splade_pp_ed", "b": "all", "a - b": 0.0, "p (Holm)": 1.0, "significant": False, "candidates": cand}]
    return pd.DataFrame(rows)


def test_the_sampler_verdict_says_what_the_tests_found():
    no = ss.sampler_verdict(_tests(0.004, 0.6), "splade_pp_ed")
    assert "over BM25 candidates, splade_pp_ed above bm25 by 0.0040 (not significantly, p = 0.6 after Holm)" in no
    assert "all below bm25 by 0.0100 (not significantly" in no and no.endswith("not significantly better than BM25's.")
    yes = ss.sampler_verdict(_tests(0.03, 0.01), "splade_pp_ed")
    assert "above bm25 by 0.0300 (significantly, p = 0.01" in yes and "the paper's finding holds" in yes
    same = ss.sampler_verdict(_tests(0.0, 1.0), "splade_pp_ed")
    assert "splade_pp_ed the same as bm25" in same and "is not reproduced" in same
    worse = ss.sampler_verdict(_tests(-0.03, 0.01), "splade_pp_ed")
    assert "is not reproduced" in worse and "below bm25 by 0.0300 (significantly" in worse
    assert [ss.sampler_finding_holds(_tests(d, p), "splade_pp_ed") for d, p in
            ((0.004, 0.6), (0.03, 0.01), (0.0, 1.0), (-0.03, 0.01))] == [False, True, False, False]


def test_lowered_names_the_re_rankers_below_the_first_stage():
    table = pd.DataFrame([{"first stage": "S", "year": "dl19", "system": ss.FIRST_STAGE, "nDCG@10": 0.73},
                          {"first stage": "S", "year": "dl19", "system": "x", "nDCG@10": 0.70},
                          {"first stage": "S", "year": "dl19", "system": "y", "nDCG@10": 0.75},
                          {"first stage": "B", "year": "dl19", "system": "x", "nDCG@10": 0.1},
                          {"first stage": "B", "year": "dl19", "system": ss.FIRST_STAGE, "nDCG@10": 0.5}])
    out = ss.lowered(table, "S")
    assert [r["system"] for r in out] == ["x"] and out[0]["difference"] == pytest.approx(-0.03)


@pytest.mark.slow
def test_a_toy_study_trains_the_samplers_once_and_evaluates_over_both_first_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    profile = profiles.load_profile("smoke")
    profile["training"]["max_queries"] = 2
    profile["crossval"].update(folds=2, inner_training=1, curve=[1], workers=1)
    pool = crossval.load_pool(profile)
    # the passage states: BM25's first, then the SPLADE passages added to the same store
    bare = copy.deepcopy(profile)
    bare["crossval"].update(strong_first_stage=None, samplers={})
    first = crossval.precompute_states(bare, crossval.load_pool(bare), progress=False)
    added = crossval.precompute_states(profile, pool, progress=False)
    assert not first["cached"] and not added["cached"] and added["segments"] > first["segments"]
    assert crossval.precompute_states(profile, pool, progress=False)["cached"]

    cv = crossval.crossval(profile, progress=False, zero_shot=False)
    strong = ss.over_scores(profile, cv, zero_shot=False)
    assert list(strong.index) == sorted(pool.candidates)
    assert {crossval.STUDENT, crossval.UNTRAINED, "SPLADE++ ED", "RankVicuna-7B"} <= set(strong.columns)
    splade = {y: data.read_run(first_stages.run_spec(profile, "SPLADE++ ED", y)) for y in ("dl19", "dl20")}
    expected = pool.ndcg10({q: splade[pool.year[q]][q] for q in pool.candidates})
    assert np.allclose(strong["SPLADE++ ED"], [expected[q] for q in strong.index])
    table = ss.two_columns(profile, cv, strong)
    assert set(table["first stage"]) == {"BM25", "SPLADE++ ED"} and set(table["year"]) == {"dl19", "dl20"}
    assert table[table["system"] == crossval.STUDENT]["p (Holm)"].isna().all()
    # force one epoch so the samplers' students really train
    for job in cv.final_jobs:
        job["epochs"] = 1
    study = ss.sampler_study(profile, copy.copy(cv), strong)
    assert list(study.table.index) == ["bm25", "splade_pp_ed", "all"]
    lists = study.training.groupby("sampler")["lists"].sum()
    assert lists["all"] == 2 * lists["splade_pp_ed"] == 2 * len(pool.candidates)  # two lists per query
    pairs = study.training.groupby("sampler")["pairs"].sum()
    assert pairs["all"] == pairs["splade_pp_ed"] > 0  # 2 lists of 4 passages, 1 list of 8: the same pairs a query
    assert list(study.curve["passages a list"]) == [4, 8]
    assert study.curve["pairs per epoch"].iloc[0] * 2 == study.curve["pairs per epoch"].iloc[1]
    assert set(study.tests["candidates"]) == {"BM25", "SPLADE++ ED"} and len(study.tests) == 6
    assert study.verdict.startswith("Students trained on lists from each sampler score")
