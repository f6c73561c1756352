"""Re-ranking, measures and comparisons on the real TREC DL data and the real MiniLM weights."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import ir_measures
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from rank_distillm import data, evaluation
from rank_distillm.data import Candidates

from .conftest import DL19, DL20, REPO


@pytest.fixture(scope="module")
def dl19_candidates():
    return data.load_candidates(DL19, "{data}/runs/trec-dl-2019/bm25.run", depth=12, max_queries=2)


@pytest.fixture(scope="module")
def minilm_cross(minilm_path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(minilm_path, num_labels=1, device="cpu")


# --------------------------------------------------------------------------- re-ranking


class LengthScorer:
    """A stand-in cross-encoder whose score is the passage length (known order)."""

    def predict(self, pairs, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        return np.array([float(len(p)) for _, p in pairs])


def test_rerank_orders_by_score_with_known_scorer():
    cands = [Candidates("q1", "query", ["a", "b", "c", "d"], ["xx", "xxxx", "x", "xxxx"]),
             Candidates("q2", "other", ["e"], ["y"])]
    run = evaluation.rerank(LengthScorer(), cands, show_progress_bar=False)
    assert run.ranking("q1") == ["b", "d", "a", "c"]  # ties (b, d) keep the candidate order
    assert run["q1"] == {"b": 4.0, "d": 4.0, "a": 2.0, "c": 1.0} and run.ranking("q2") == ["e"]


def test_rerank_with_minilm_cross_encoder(minilm_cross, dl19_candidates):
    run = evaluation.rerank(minilm_cross, dl19_candidates, batch_size=5, show_progress_bar=False)
    assert list(run) == [c.qid for c in dl19_candidates]
    for c in dl19_candidates:
        assert sorted(run[c.qid]) == sorted(c.docids) and len(run[c.qid]) == len(c)  # every candidate kept
        scores = list(run[c.qid].values())
        assert scores == sorted(scores, reverse=True)
        # the scores are the model's own, whatever the batching and length sorting
        direct = minilm_cross.predict([(c.query, t) for t in c.texts], batch_size=len(c), show_progress_bar=False)
        assert [run[c.qid][d] for d in c.docids] == pytest.approx(direct.tolist(), abs=1e-4)
    assert len({round(s, 6) for s in run[dl19_candidates[0].qid].values()}) > 1  # not a constant head


def test_rerank_with_bi_encoder_is_cosine(minilm_path, dl19_candidates):
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(minilm_path, device="cpu")
    run = evaluation.rerank(model, dl19_candidates[:1], show_progress_bar=False)
    c = dl19_candidates[0]
    cos = util.cos_sim(model.encode([c.query]), model.encode(c.texts))[0].tolist()
    assert [run[c.qid][d] for d in c.docids] == pytest.approx(cos, abs=1e-4)
    assert run.ranking(c.qid) == [c.docids[i] for i in np.argsort(cos, kind="stable")[::-1]]


def test_rerank_cached_reads_the_second_time(minilm_path, dl19_candidates, tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    first = evaluation.rerank_cached(minilm_path, dl19_candidates[:1], show_progress_bar=False)
    assert len(list((tmp_path / "reranked").glob("*.run"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(evaluation, "load_reranker", fail)
    again = evaluation.rerank_cached(minilm_path, dl19_candidates[:1], show_progress_bar=False)
    assert again.ranking(dl19_candidates[0].qid) == first.ranking(dl19_candidates[0].qid)
    with pytest.raises(AssertionError, match="loaded again"):  # other candidates: a new key
        evaluation.rerank_cached(minilm_path, dl19_candidates[1:], show_progress_bar=False)


# --------------------------------------------------------------------------- measures


def test_measures_by_hand_on_a_tiny_run():
    qrels = data.load_qrels(DL19)
    qid = sorted(qrels)[0]
    judged = qrels[qid]
    non = [d for d, g in judged.items() if g == 0][:2]
    rel = sorted((d for d, g in judged.items() if g >= 2), key=lambda d: -judged[d])[:1]
    ranking = non + rel  # first relevant (grade >= 2) passage at rank 3
    run = data.run_from_rankings({qid: ranking})
    got = evaluation.evaluate_run(run, DL19, ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@100", "AP(rel=2)"])
    grade = judged[rel[0]]
    ideal = sorted(judged.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    n_rel = sum(g >= 2 for g in judged.values())
    assert got["nDCG@10"] == pytest.approx((grade / math.log2(4)) / idcg)
    assert got["RR(rel=2)@10"] == pytest.approx(1 / 3)
    assert got["R(rel=2)@100"] == pytest.approx(1 / n_rel)
    assert got["AP(rel=2)"] == pytest.approx((1 / 3) / n_rel)


def test_compare_done_when_values(runs_dir):
    runs = {"bm25": runs_dir / "trec-dl-2019/bm25.run", "rankvicuna": runs_dir / "trec-dl-2019/rankvicuna-7b.run",
            "rankgpt": runs_dir / "trec-dl-2019/rankgpt-gpt-3.5-turbo.run"}
    result = evaluation.compare(runs, DL19, baseline="rankvicuna")
    table = result.table
    assert table.loc["bm25", "nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    assert table.loc["rankvicuna", "nDCG@10"] == pytest.approx(0.6682, abs=5e-5)
    assert table.loc["rankgpt", "nDCG@10"] == pytest.approx(0.6938, abs=5e-5)
    for name, path in runs.items():  # every mean equals evaluate_run's
        assert dict(table.loc[name, list(evaluation.DEFAULT_MEASURES)]) == pytest.approx(evaluation.evaluate_run(path, DL19))
    # the per-query values straight from ir_measures, then scipy and statsmodels
    qrels, ndcg = data.load_qrels(DL19), ir_measures.parse_measure("nDCG@10")
    values = {n: {m.query_id: m.value for m in ir_measures.iter_calc([ndcg], qrels, data.read_run(p))} for n, p in runs.items()}
    qids = sorted(values["rankvicuna"])
    raw = [stats.ttest_rel([values[n][q] for q in qids], [values["rankvicuna"][q] for q in qids]).pvalue for n in ("bm25", "rankgpt")]
    assert list(table.loc[["bm25", "rankgpt"], "p"]) == pytest.approx(raw)
    assert list(table.loc[["bm25", "rankgpt"], "p_holm"]) == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert table.loc["rankvicuna", "kendall_tau"] == pytest.approx(1.0)
    assert table.loc["rankvicuna", "baseline_ndcg@10"] == pytest.approx(1.0)
    assert 0 < table.loc["bm25", "kendall_tau"] < 1 and not result.notes
    assert "rankvicuna (baseline)" in result.format() and "-" in result.format().splitlines()[1]


def test_compare_notes_a_run_that_lacks_queries(runs_dir, tmp_path):
    lines = (runs_dir / "trec-dl-2020/bm25.run").read_text().splitlines()
    dropped = list(dict.fromkeys(line.split()[0] for line in lines))[:3]
    short = tmp_path / "short.run"
    short.write_text("\n".join(line for line in lines if line.split()[0] not in dropped) + "\n")
    runs = {"teacher": runs_dir / "trec-dl-2020/rankvicuna-7b.run", "short": short}
    with pytest.warns(UserWarning, match="lacks 3 of the 54 queries"):
        result = evaluation.compare(runs, DL20)
    assert any(dropped[0] in n for n in result.notes)
    assert result.table.loc["short", "nDCG@10"] == pytest.approx(evaluation.evaluate_run(short, DL20)["nDCG@10"])
    assert result.table.loc["teacher", "nDCG@10"] == pytest.approx(0.6611, abs=5e-5)  # over its 54
    assert len(result.scores) == 51 and result.table.loc["short", "queries"] == 51


def test_compare_restricted_to_given_queries(runs_dir):
    qids = list(data.load_queries(DL19))[:5]
    runs = {"t": runs_dir / "trec-dl-2019/rankvicuna-7b.run", "b": runs_dir / "trec-dl-2019/bm25.run"}
    result = evaluation.compare(runs, DL19, qids=qids)
    assert not result.notes and list(result.scores.index) == sorted(qids)
    sub = {q: data.read_run(runs["b"])[q] for q in qids}
    assert result.table.loc["b", "nDCG@10"] == pytest.approx(evaluation.evaluate_run(sub, DL19)["nDCG@10"])


def test_compare_bad_input(runs_dir):
    with pytest.raises(ValueError, match="baseline 'x' is not one of"):
        evaluation.compare({"b": runs_dir / "trec-dl-2019/bm25.run"}, DL19, baseline="x")
    with pytest.raises(data.DataError, match="none of its queries"):
        evaluation.compare({"b": runs_dir / "trec-dl-2020/bm25.run"}, DL19)
    with pytest.raises(ValueError, match="expected NAME=FILE"):
        evaluation.parse_run_specs(["bm25.run"])


def test_paper_table_is_labelled():
    table = evaluation.paper_table()
    assert table.index.name == "system (paper)"
    assert table.loc["RankZephyr", ("BM25", "DL19")] == 0.719


# --------------------------------------------------------------------------- CLI


def _cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "rank_distillm.cli", *map(str, args)],
                          capture_output=True, text=True, check=check, cwd=REPO)


def test_cli_compare_json(runs_dir):
    out = _cli("compare", "--dataset", DL19, "--run", f"bm25={runs_dir / 'trec-dl-2019/bm25.run'}",
               "--run", f"rankvicuna={runs_dir / 'trec-dl-2019/rankvicuna-7b.run'}", "--baseline", "rankvicuna", "--json")
    result = json.loads(out.stdout)
    bm25, vicuna = result["systems"]["bm25"], result["systems"]["rankvicuna"]
    assert round(bm25["nDCG@10"], 4) == 0.5058 and round(vicuna["nDCG@10"], 4) == 0.6682
    a = evaluation.per_query(runs_dir / "trec-dl-2019/bm25.run", DL19, ["nDCG@10"]).set_index("qid")["value"]
    b = evaluation.per_query(runs_dir / "trec-dl-2019/rankvicuna-7b.run", DL19, ["nDCG@10"]).set_index("qid")["value"]
    assert bm25["p_holm"] == pytest.approx(stats.ttest_rel(a, b[a.index]).pvalue)
    assert bm25["significant"] is True and vicuna["p_holm"] is None and result["queries"] == 43


def test_cli_compare_errors_are_clear(runs_dir):
    out = _cli("compare", "--dataset", DL19, "--run", "bm25", check=False)
    assert out.returncode == 2 and "expected NAME=FILE" in out.stderr and "Traceback" not in out.stderr
    out = _cli("compare", "--dataset", DL19, "--run", f"b={runs_dir / 'trec-dl-2019/bm25.run'}", "--baseline", "zz", check=False)
    assert out.returncode == 2 and "baseline 'zz'" in out.stderr


def test_cli_rerank(minilm_path, runs_dir, tmp_path):
    out_file = tmp_path / "minilm.run"
    out = _cli("rerank", "--model", minilm_path, "--dataset", DL19, "--candidates", runs_dir / "trec-dl-2019/bm25.run",
               "--depth", 5, "--max-queries", 1, "--out", out_file)
    assert "re-ranked 1 queries (5 passages)" in out.stdout
    run, bm25 = data.read_run(out_file), data.read_run(runs_dir / "trec-dl-2019/bm25.run")
    qid = next(iter(run))
    assert qid == next(iter(data.load_queries(DL19))) and sorted(run[qid]) == sorted(bm25.ranking(qid)[:5])


def test_student_runs_use_each_students_test_year(minilm_path, dl19_candidates, tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    datasets = {"dl19": DL19, "dl20": DL20}
    students = [SimpleNamespace(name="s", loss="ranknet", train_year="dl20", test_year=DL19, path=minilm_path)]
    runs = evaluation.student_runs(students, {"dl19": dl19_candidates[:1]}, datasets, show_progress_bar=False)
    c = dl19_candidates[0]
    assert list(runs) == ["dl19"] and sorted(runs["dl19"]["s"][c.qid]) == sorted(c.docids)
    students[0].test_year = "dl20"
    with pytest.raises(ValueError, match="student 's': test_year 'dl20' is none of"):
        evaluation.student_runs(students, {"dl19": dl19_candidates[:1]}, datasets, show_progress_bar=False)
