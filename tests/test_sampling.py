"""Training lists on the real TREC DL 2020 data: teacher order, depth cuts, sampling, stage-1
lists against the qrels, the MS MARCO encoding repair, the released-data loader, what the lists
contain (list_stats), the CLI."""

from __future__ import annotations

import math

import datasets
import pytest

from rank_distillm import data, list_stats, sampling
from rank_distillm.cli import main

from .conftest import DL20


@pytest.fixture(scope="module")
def teacher(runs_dir):
    return data.read_run(runs_dir / "trec-dl-2020/rankvicuna-7b.run")


@pytest.fixture(scope="module")
def candidates(runs_dir):
    return data.load_candidates(DL20, runs_dir / "trec-dl-2020/bm25.run", depth=100)


@pytest.fixture(scope="module")
def qrels():
    return data.load_qrels(DL20)


def _no_duplicates(dataset):
    for row in dataset:
        assert len(set(row["docids"])) == len(row["docids"]), row["qid"]
        assert len(row["docs"]) == len(row["docids"]) == len(row["labels"])


@pytest.mark.parametrize("depth", [10, 20, 50, 100])
def test_rank_labels_follow_the_teacher_order(teacher, candidates, depth):
    lists = sampling.distillation_lists(teacher, candidates, depth=depth, cut="teacher")
    assert lists.column_names == ["query", "docs", "labels", "qid", "docids"]
    assert lists.num_rows == 54
    text_of = {c.qid: dict(zip(c.docids, c.texts)) for c in candidates}
    query_of = {c.qid: c.query for c in candidates}
    for row in lists:
        assert row["docids"] == teacher.ranking(row["qid"])[:depth]
        assert row["labels"] == [float(depth - i) for i in range(depth)]  # rank 1 -> depth
        assert row["docs"] == [text_of[row["qid"]][d] for d in row["docids"]]
        assert row["query"] == query_of[row["qid"]]
    _no_duplicates(lists)


def test_reciprocal_and_score_labels(teacher, candidates):
    recip = sampling.distillation_lists(teacher, candidates[:3], depth=20, labels="reciprocal")
    scores = sampling.distillation_lists(teacher, candidates[:3], depth=20, labels="score")
    for r, s in zip(recip, scores):
        assert r["labels"] == pytest.approx([1 / rank for rank in range(1, 21)])  # RankGPT: 1/(i+1), i 0-based
        assert s["labels"] == [teacher[s["qid"]][d] for d in s["docids"]]
        assert s["labels"] == sorted(s["labels"], reverse=True)


def test_per_list_top_keeps_the_teacher_head(teacher, candidates):
    lists = sampling.distillation_lists(teacher, candidates, depth=50, per_list=8, cut="teacher")
    for row in lists:
        assert row["docids"] == teacher.ranking(row["qid"])[:8]
        assert row["labels"] == [50.0 - i for i in range(8)]


def test_random_sampling_is_a_seeded_subset_in_teacher_order(teacher, candidates):
    kw = dict(depth=50, per_list=8, sampling="random", cut="teacher")
    lists = sampling.distillation_lists(teacher, candidates, seed=1, **kw)
    again = sampling.distillation_lists(teacher, candidates, seed=1, **kw)
    other = sampling.distillation_lists(teacher, candidates, seed=2, **kw)
    assert lists["docids"] == again["docids"]
    assert lists["docids"] != other["docids"]
    for row in lists:
        ranking = teacher.ranking(row["qid"])
        ranks = [ranking.index(d) + 1 for d in row["docids"]]
        assert len(ranks) == 8 and ranks == sorted(ranks) and max(ranks) <= 50
        assert row["labels"] == [50.0 - r + 1 for r in ranks]
    # a query's list does not depend on which other queries are built
    alone = sampling.distillation_lists(teacher, candidates[5:6], seed=1, **kw)
    assert alone[0]["docids"] == lists[5]["docids"]
    _no_duplicates(lists)


def test_hard_negatives_come_from_the_first_stage_below_the_cut(teacher, candidates):
    lists = sampling.distillation_lists(teacher, candidates, depth=10, per_list=16, sampling="hard", cut="teacher")
    bm25 = {c.qid: c.docids for c in candidates}
    for row in lists:
        top = teacher.ranking(row["qid"])[:10]
        assert row["docids"][:10] == top
        assert row["docids"][10:] == [d for d in bm25[row["qid"]] if d not in top][:6]
        assert row["labels"] == [float(10 - i) for i in range(10)] + [0.0] * 6
    _no_duplicates(lists)


def _subsample_rule(teacher_file, first_stage_file, k):
    """The rule of utils/subsample.py (webis-de/rank-distillm at 07105cf), restated with pandas:
    keep the teacher run's rows whose first-stage rank is <= k, rank them again by teacher score
    (method "first"), sort by query and rank. Returns ``{qid: [docid, ...]}``."""
    import pandas as pd

    names = ["qid", "q0", "docid", "rank", "score", "tag"]
    teacher = pd.read_csv(teacher_file, sep=r"\s+", names=names, dtype={"qid": str, "docid": str}).set_index(["qid", "docid"]).sort_index()
    first = pd.read_csv(first_stage_file, sep=r"\s+", names=names, dtype={"qid": str, "docid": str}).set_index(["qid", "docid"])
    merged = teacher.merge(first[["rank"]], on=["qid", "docid"], suffixes=["", "_first_stage"])
    cut = merged.loc[merged["rank_first_stage"] <= k].reset_index()
    cut["rank"] = cut.groupby("qid")["score"].rank(ascending=False, method="first").astype(int)
    cut = cut.sort_values(["qid", "rank"])
    return {q: list(g["docid"]) for q, g in cut.groupby("qid", sort=False)}


@pytest.mark.parametrize("depth", [10, 20, 50])
def test_first_stage_cut_is_the_papers_subsample_rule(runs_dir, teacher, candidates, depth):
    """The paper's top-k (utils/subsample.py): the teacher's order of the *first stage's* top-k, on DL20.

    The RankVicuna run has tied scores (it keeps the BM25 scores in position order); the rule
    breaks ties by passage id, the book by the run's rank column, so tied passages may swap.
    """
    teacher_file, bm25_file = runs_dir / "trec-dl-2020/rankvicuna-7b.run", runs_dir / "trec-dl-2020/bm25.run"
    expected = _subsample_rule(teacher_file, bm25_file, depth)
    lists = sampling.distillation_lists(teacher, candidates, depth=depth)  # cut="first-stage", the default
    assert lists.num_rows == 54 == len(expected)
    bm25 = {c.qid: c.docids for c in candidates}
    changed = 0
    for row in lists:
        score = teacher[row["qid"]]
        assert [score[d] for d in row["docids"]] == [score[d] for d in expected[row["qid"]]]
        assert set(row["docids"]) == set(expected[row["qid"]]) == set(bm25[row["qid"]][:depth])
        assert row["labels"] == [float(depth - i) for i in range(len(row["docids"]))]
        changed += row["docids"] != teacher.ranking(row["qid"])[:depth]
    assert changed > 40  # the teacher's own top-k is another list for most queries


def test_teacher_passage_missing_from_candidates_is_an_error(runs_dir, teacher):
    shallow = data.load_candidates(DL20, runs_dir / "trec-dl-2020/bm25.run", depth=50, max_queries=2)
    with pytest.raises(data.DataError, match=r"rankvicuna-7b\.run line \d+: the teacher ranked passage \d+ for query \d+, but it is not among"):
        sampling.distillation_lists(teacher, shallow, depth=20)


def test_depth_larger_than_the_lists_is_an_error(teacher, candidates):
    with pytest.raises(data.DataError, match=r"rankvicuna-7b\.run line \d+: depth 101 is larger than the teacher's list for query \d+ \(100 passages\)"):
        sampling.distillation_lists(teacher, candidates[:2], depth=101, cut="teacher")
    with pytest.raises(data.DataError, match=r"rankvicuna-7b\.run line \d+: depth 101 is larger than the first-stage list of query \d+ \(100 candidates\)"):
        sampling.distillation_lists(teacher, candidates[:2], depth=101)
    with pytest.raises(ValueError, match="cut: unknown cut 'bm25'"):
        sampling.distillation_lists(teacher, candidates[:2], cut="bm25")
    with pytest.raises(ValueError, match="sampling: unknown sampling 'best'"):
        sampling.distillation_lists(teacher, candidates[:2], sampling="best")
    with pytest.raises(ValueError, match=r"sampling='top': per_list \(30\) is larger than depth \(20\)"):
        sampling.distillation_lists(teacher, candidates[:2], depth=20, per_list=30)
    with pytest.raises(ValueError, match="per_list larger than depth"):
        sampling.distillation_lists(teacher, candidates[:2], depth=20, per_list=10, sampling="hard")


def test_relevance_lists_hold_exactly_one_judged_positive(candidates, qrels):
    lists = sampling.relevance_lists(DL20, candidates, negatives=7, seed=42)
    assert lists.num_rows == len({c.qid for c in candidates if any(qrels[c.qid].get(d, 0) >= 2 for d in c.docids)})
    for row in lists:
        grades = [qrels[row["qid"]].get(d, 0) for d in row["docids"]]
        assert len(row["docids"]) == 8 and row["labels"] == [1.0] + [0.0] * 7
        assert grades[0] >= 2 and all(g == 0 for g in grades[1:])
        assert sum(g >= 2 for g in grades) == 1
    _no_duplicates(lists)


def test_relevance_lists_one_per_positive(candidates, qrels):
    lists = sampling.relevance_lists(DL20, candidates[:5], negatives=3, per_positive=True)
    relevant = sum(qrels[c.qid].get(d, 0) >= 2 for c in candidates[:5] for d in c.docids)
    assert lists.num_rows == relevant
    assert len(set(zip(lists["qid"], (ids[0] for ids in lists["docids"])))) == relevant


def test_graded_lists_carry_the_qrels(candidates, qrels):
    lists = sampling.graded_lists(DL20, candidates)
    assert lists.num_rows == 54
    for row, cand in zip(lists, candidates):
        assert row["docids"] == cand.docids
        assert row["labels"] == [float(qrels[cand.qid].get(d, 0)) for d in cand.docids]
    sub = sampling.graded_lists(DL20, candidates, per_list=10)
    assert all(len(ids) == 10 and set(ids) <= set(c.docids) for ids, c in zip(sub["docids"], candidates))


def test_triples_repair_the_msmarco_encoding_like_ftfy(data_dir):
    ftfy = pytest.importorskip("ftfy")
    path = data_dir / "msmarco-train-triples-100.tsv"
    lists = sampling.triples_lists(path)
    assert lists.num_rows == 100 and lists["labels"][0] == [1.0, 0.0]
    assert lists[0]["query"] == "is a little caffeine ok during pregnancy"
    assert lists[0]["docs"][0].startswith("We don\u2019t know a lot about the effects of caffeine")
    raw = path.read_text(encoding="utf-8").splitlines()
    assert sum("\u00e2\x80\x99" in line for line in raw) > 10  # the raw file has mojibake (don\u00e2\x80\x99t) ...
    for row, line in zip(lists, raw):  # ... repaired exactly as a reference implementation does
        assert "\t".join([row["query"], *row["docs"]]) == ftfy.fix_encoding(line)
    assert sampling.triples_lists(path, limit=7).num_rows == 7


def test_bad_triples_line_is_named(tmp_path):
    bad = tmp_path / "triples.tsv"
    bad.write_text("q\tpos\tneg\nonly two\tfields\n", encoding="utf-8")
    with pytest.raises(data.DataError, match=r"triples\.tsv line 2: expected 3 tab-separated fields"):
        sampling.triples_lists(bad)


def test_released_parquet_gives_the_same_lists(tmp_path, runs_dir, teacher, candidates):
    import pyarrow as pa
    import pyarrow.parquet as pq

    qids = [c.qid for c in candidates[:3]]
    rows = [(q, d, s) for q in qids for d, s in teacher[q].items()][::-1]  # shuffled order on disk
    path = tmp_path / "rank-distillm.parquet"
    pq.write_table(pa.table({"qid": [r[0] for r in rows], "docno": [r[1] for r in rows], "score": [r[2] for r in rows]}), path)
    released = sampling.released_lists(path, DL20, depth=20, cut="teacher")
    expected = sampling.distillation_lists(teacher, candidates[:3], depth=20, cut="teacher")
    assert sorted(released["qid"]) == sorted(qids)
    by_qid = {row["qid"]: row for row in expected}
    for row in released:
        assert row == by_qid[row["qid"]]
    # the paper's cut needs the first stage's ranks, which the released file lacks: given, the lists are the same
    with pytest.raises(ValueError, match="needs the first-stage ranks"):
        sampling.released_lists(path, DL20, depth=20)
    first = sampling.released_lists(path, DL20, depth=20, first_stage=f"parquet:{runs_dir}/trec-dl-2020/bm25.run")
    by_qid = {row["qid"]: row for row in sampling.distillation_lists(teacher, candidates[:3], depth=20)}
    for row in first:
        assert row == by_qid[row["qid"]]
    pq.write_table(pa.table({"qid": ["1"], "doc": ["2"]}), path)
    with pytest.raises(data.DataError, match="missing column\\(s\\) docno, score"):
        sampling.read_released(path)


def test_summary_known_values(teacher, candidates):
    info = sampling.summary(sampling.distillation_lists(teacher, candidates, depth=20))
    assert info == {
        "lists": 54, "queries": 54, "passages_per_list_min": 20, "passages_per_list_mean": 20.0,
        "passages_per_list_max": 20, "passages": 1080, "label_min": 1.0, "label_max": 20.0,
    }


def test_list_table_joins_ranks_and_qrels(teacher, candidates, qrels):
    lists = sampling.distillation_lists(teacher, candidates[:2], depth=10, cut="teacher")
    table = sampling.list_table(lists, teacher, candidates, qrels)
    assert len(table) == 20
    first = table.iloc[0]
    assert first["teacher_rank"] == 1 and first["label"] == 10.0
    assert first["first_stage_rank"] == candidates[0].docids.index(first["docid"]) + 1
    assert table["teacher_rank"].tolist()[:10] == list(range(1, 11))


# --------------------------------------------------------------------------- what the lists contain (list_stats)


def test_summary_table_has_readable_columns(teacher, candidates):
    lists = sampling.distillation_lists(teacher, candidates, depth=20)
    stage1 = sampling.relevance_lists(DL20, candidates, negatives=7)
    table = list_stats.summary_table({"distillation": lists, "stage 1": stage1})
    assert list(table.columns) == ["lists", "queries", "passages per list", "passages", "targets"]
    assert table.loc["distillation"].tolist() == [54, 54, "20", 1080, "1\u201320"]
    assert table.loc["stage 1", "passages per list"] == "8" and table.loc["stage 1", "targets"] == "0\u20131"
    assert table.loc["stage 1", "lists"] == stage1.num_rows == sampling.summary(stage1)["lists"]


def test_judgement_classes():
    assert [list_stats.judgement(g) for g in (3, 2, 1, 0, None, math.nan)] == [
        "relevant (2-3)", "relevant (2-3)", "marginal (1)", "non-relevant (0)", "unjudged", "unjudged"]


def test_depth_table_against_the_qrels(teacher, candidates):
    qrels = data.load_qrels(DL20)
    table = list_stats.depth_table({k: sampling.distillation_lists(teacher, candidates, depth=k) for k in (10, 100)},
                                   candidates, qrels)
    assert list(table.index) == [10, 100]
    assert table["passages per list"].tolist() == [10, 100]
    # the paper's cut keeps exactly the first stage's top-k: its deepest passage is BM25's rank k
    assert table["deepest first-stage rank"].tolist() == [10, 100]
    assert table[list_stats.JUDGEMENT_ORDER].sum(axis=1).tolist() == pytest.approx([1.0, 1.0])
    # at depth 100 the lists hold the whole BM25 top-100: counted from the qrels directly
    relevant = [sum(qrels[c.qid].get(d, 0) >= 2 for d in c.docids) for c in candidates]
    unjudged = sum(d not in qrels[c.qid] for c in candidates for d in c.docids) / sum(len(c) for c in candidates)
    assert table.loc[100, "relevant per list"] == pytest.approx(sum(relevant) / len(relevant))
    assert table.loc[100, "unjudged"] == pytest.approx(unjudged)
    # the top of BM25's list holds a larger share of relevant passages than the whole top-100
    assert table.loc[10, "relevant (2-3)"] > table.loc[100, "relevant (2-3)"]


def test_cli_build_dataset(tmp_path, runs_dir, capsys):
    out = tmp_path / "D"
    argv = ["build-dataset", "--dataset", DL20, "--teacher", str(runs_dir / "trec-dl-2020/rankvicuna-7b.run"),
            "--candidates", str(runs_dir / "trec-dl-2020/bm25.run"), "--depth", "20", "--out", str(out)]
    assert main(argv) == 0
    assert "54 queries, 54 lists, passages per list 20-20 (mean 20.0), labels 1..20" in capsys.readouterr().out
    saved = datasets.load_from_disk(str(out))
    teacher = data.read_run(runs_dir / "trec-dl-2020/rankvicuna-7b.run")
    bm25 = data.read_run(runs_dir / "trec-dl-2020/bm25.run")
    assert saved.num_rows == 54
    for row in saved:  # the paper's cut: the teacher's order of BM25's top-20
        assert row["labels"] == [float(20 - i) for i in range(20)]
        top = set(bm25.ranking(row["qid"])[:20])
        assert row["docids"] == [d for d in teacher.ranking(row["qid"]) if d in top]
    assert main([*argv[:-4], "--depth", "200", "--out", str(out)]) == 2
    assert "depth 200 is larger than the first-stage list" in capsys.readouterr().err
    assert datasets.load_from_disk(str(out)).num_rows == 54  # a failed run leaves the old output alone
