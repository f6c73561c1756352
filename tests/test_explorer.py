"""The ranking explorer: right rankings, grades and nDCG@10 on the real runs, small and self-contained HTML."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from rank_distillm import data
from rank_distillm.explorer import RankingExplorer, ranking_explorer, short_text

from .conftest import DL19, DL20

DATASETS = {"dl19": DL19, "dl20": DL20}
RUNS = {"dl19": "{data}/runs/trec-dl-2019/", "dl20": "{data}/runs/trec-dl-2020/"}


@pytest.fixture(scope="module")
def explorer(data_dir) -> RankingExplorer:
    candidates = {y: data.load_candidates(DATASETS[y], RUNS[y] + "bm25.run", depth=100) for y in DATASETS}
    systems = {y: {name: data.read_run(RUNS[y] + f) for name, f in
                   [("BM25", "bm25.run"), ("RankVicuna-7B", "rankvicuna-7b.run"),
                    ("RankGPT", "rankgpt-gpt-3.5-turbo.run")]} for y in DATASETS}
    return ranking_explorer(systems, candidates, DATASETS)


def _mean_ndcg(explorer, year: str, system: str) -> float:
    part = next(y for y in explorer.data["years"] if y["key"] == year)
    s = part["systems"].index(system)
    return statistics.mean(q["systems"][s]["ndcg"] for q in part["queries"])


def test_per_query_ndcg_gives_the_known_means(explorer):
    assert [len(y["queries"]) for y in explorer.data["years"]] == [43, 54]
    assert _mean_ndcg(explorer, "dl19", "BM25") == pytest.approx(0.5058, abs=2e-4)
    assert _mean_ndcg(explorer, "dl20", "BM25") == pytest.approx(0.4796, abs=2e-4)
    assert _mean_ndcg(explorer, "dl19", "RankVicuna-7B") == pytest.approx(0.6682, abs=2e-4)
    assert _mean_ndcg(explorer, "dl20", "RankGPT") == pytest.approx(0.6385, abs=2e-4)


def test_lists_grades_and_strips_follow_the_runs_and_qrels(explorer, runs_dir):
    qrels = data.load_qrels(DL20)
    bm25 = data.read_run(runs_dir / "trec-dl-2020" / "bm25.run")
    teacher = data.read_run(runs_dir / "trec-dl-2020" / "rankvicuna-7b.run")
    year = explorer.data["years"][1]
    assert year["systems"] == ["BM25", "RankVicuna-7B", "RankGPT"] and year["label"] == "TREC DL 2020"
    for q in year["queries"][:10]:
        docs = q["docs"]
        bm25_top = [docs[i][0] for i in q["systems"][0]["top"]]
        teacher_top = [docs[i][0] for i in q["systems"][1]["top"]]
        assert bm25_top == bm25.ranking(q["qid"])[:20]
        assert teacher_top == teacher.ranking(q["qid"])[:20]
        for docid, grade, text, bm25_rank in docs:
            assert grade == qrels[q["qid"]].get(docid, -1)
            assert bm25_rank == bm25.ranking(q["qid"]).index(docid) + 1
            assert 0 < len(text) <= 160
        strip = q["systems"][1]["grades"]
        assert len(strip) == 100
        expected = "".join(str(qrels[q["qid"]][d]) if d in qrels[q["qid"]] else "." for d in teacher.ranking(q["qid"]))
        assert strip == expected
        assert q["relevant"] == sum(1 for d in bm25.ranking(q["qid"]) if qrels[q["qid"]].get(d, 0) >= 2)


def test_html_is_small_self_contained_and_carries_the_data(explorer):
    markup = explorer.html
    assert explorer.size < 2_000_000, f"{explorer.size / 1e6:.2f} MB"
    assert not re.search(r"<(link|iframe|img)\b|\bsrc=|@import|url\(", markup), "the explorer must not load anything"
    assert markup.count("<script") == 2  # the data and the code, both inline
    payload = re.search(r'<script type="application/json" class="rdx-data">(.*?)</script>', markup, re.S).group(1)
    assert json.loads(payload) == explorer.data
    assert explorer._repr_html_() == markup and "97 queries" in repr(explorer)


def test_text_and_missing_rankings(data_dir):
    assert short_text("one two  three four", 100) == "one two three four"
    cut = short_text("alpha beta gamma delta", 12)
    assert cut == "alpha beta\u2026" and len(cut) <= 12
    candidates = {"dl19": data.load_candidates(DL19, RUNS["dl19"] + "bm25.run", depth=30, max_queries=2)}
    bm25 = data.read_run(RUNS["dl19"] + "bm25.run")
    partial = data.Run({candidates["dl19"][0].qid: bm25[candidates["dl19"][0].qid]})  # lacks the second query
    result = ranking_explorer({"dl19": {"BM25": bm25, "partial": partial}}, candidates, DATASETS, top=5).data
    second = result["years"][0]["queries"][1]["systems"][1]
    assert second == {"top": [], "grades": "", "ndcg": None}
    assert len(result["years"][0]["queries"][0]["systems"][0]["top"]) == 5
    with pytest.raises(ValueError, match="'dl21'"):
        ranking_explorer({"dl21": {"BM25": bm25}}, candidates, DATASETS)
