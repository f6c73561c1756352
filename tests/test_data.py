"""The data layer on the real TREC DL data: known values, round trips, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rank_distillm import data, paths
from rank_distillm.evaluation import evaluate_run

from .conftest import DL19, DL20, REPO


@pytest.mark.parametrize(
    "dataset_id, run_file, expected",
    [
        (DL19, "trec-dl-2019/bm25.run", 0.5058),
        (DL19, "trec-dl-2019/rankvicuna-7b.run", 0.6682),
        (DL20, "trec-dl-2020/bm25.run", 0.4796),
        (DL20, "trec-dl-2020/rankvicuna-7b.run", 0.6611),
        (DL19, "trec-dl-2019/rankgpt-gpt-3.5-turbo.run", 0.6938),
        (DL20, "trec-dl-2020/rankvicuna-7b-second-run.run", 0.6549),
        (DL20, "trec-dl-2020/rankgpt-gpt-3.5-turbo.run", 0.6385),
    ],
)
def test_reference_ndcg(runs_dir, dataset_id, run_file, expected):
    result = evaluate_run(runs_dir / run_file, dataset_id, ["nDCG@10"])
    assert result["nDCG@10"] == pytest.approx(expected, abs=5e-5)
    assert data.reference_ndcg10("{data}/runs/" + run_file) == expected  # the table chapter 01 checks against


def test_reference_ndcg_is_only_for_the_data_folders_runs():
    assert len(data.REFERENCE_NDCG10) == 7
    assert data.reference_ndcg10("irds:msmarco-passage/trec-dl-2019/judged") is None
    assert data.reference_ndcg10("/elsewhere/runs/trec-dl-2019/bm25.run") is None


def test_qrels_summary_known_values():
    assert data.qrels_summary(DL19) == {"queries": 43, "judgements": 9260, "per query": 215.3,
                                        "grade 0": 5158, "grade 1": 1601, "grade 2": 1804, "grade 3": 697}


def test_queries_and_qrels_counts():
    assert len(data.load_queries(DL19)) == 43
    assert len(data.load_queries(DL20)) == 54
    assert sum(map(len, data.load_qrels(DL19).values())) == 9260
    assert sum(map(len, data.load_qrels(DL20).values())) == 11386


def test_ir_datasets_home_is_a_writable_copy(data_dir):
    home = data.setup_ir_datasets()
    assert home is not None and home != data_dir / "ir_datasets"
    assert (home / "msmarco-passage" / "collection.tsv").exists()
    assert data.setup_ir_datasets() == home  # idempotent


def test_ir_datasets_copy_is_refreshed_and_writable(data_dir, tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    monkeypatch.delenv("IR_DATASETS_HOME", raising=False)
    home = data.setup_ir_datasets()
    assert home == tmp_path / "ir_datasets"
    assert all(os.access(p, os.W_OK) for p in (home, *home.rglob("*")))
    (home / ".source").write_text("stale")  # a changed source: the copy is rebuilt
    (home / "junk").write_text("x")
    assert data.setup_ir_datasets() == home and not (home / "junk").exists()
    assert len(data.load_queries(DL19)) == 43


def test_run_round_trip(runs_dir, tmp_path):
    run = data.read_run(runs_dir / "trec-dl-2019/bm25.run")
    assert len(run) == 43 and all(len(docs) == 100 for docs in run.values())
    out = data.write_run(run, tmp_path / "copy.run", tag="copy")
    again = data.read_run(out)
    assert list(again) == list(run)
    for qid in run:
        assert again.ranking(qid) == run.ranking(qid)
        assert list(again[qid].values()) == pytest.approx(list(run[qid].values()), abs=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_write_run_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "run.txt"
    target.write_text("old content\n")

    class Boom(dict):
        def items(self):
            yield "1", {"a": 1.0}
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        data.write_run(Boom(), target)
    assert target.read_text() == "old content\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_candidates_follow_the_run(runs_dir):
    run = data.read_run(runs_dir / "trec-dl-2020/bm25.run")
    cands = data.load_candidates(DL20, run, depth=20, max_queries=3)
    assert len(cands) == 3
    for c in cands:
        assert c.docids == run.ranking(c.qid)[:20]
        assert len(c.texts) == 20 and all(c.texts)
        assert c.query == data.load_queries(DL20)[c.qid]


def test_run_order_by_score_then_rank(tmp_path):
    path = tmp_path / "r.run"
    path.write_text("1 Q0 a 2 1.0 t\n1 Q0 b 1 1.0 t\n1 Q0 c 3 2.0 t\n")
    assert data.read_run(path).ranking("1") == ["c", "b", "a"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("1 Q0 a 1 1.0\n", "line 1: expected 6 fields"),
        ("1 Q0 a 1 1.0 t\n1 Q0 b x 1.0 t\n", "line 2: rank 'x'"),
        ("1 Q0 a 1 1.0 t\n1 Q0 a 2 0.5 t\n", "line 2: passage a listed twice"),
        ("", "empty"),
    ],
)
def test_malformed_run_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.run"
    path.write_text(content)
    with pytest.raises(data.DataError, match=message) as info:
        data.read_run(path)
    assert str(path) in str(info.value)


def test_missing_run_file(tmp_path):
    with pytest.raises(data.DataError, match="run file not found"):
        data.read_run(tmp_path / "nope.run")


def test_unknown_query_names_line(runs_dir, tmp_path):
    lines = (runs_dir / "trec-dl-2019/bm25.run").read_text().splitlines()[:3]
    lines.append("999999 Q0 8412684 1 1.0 bad")
    path = tmp_path / "r.run"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"line 4: query 999999 is not in dataset"):
        data.load_candidates(DL19, path)


def test_missing_passage_names_line(runs_dir, tmp_path):
    lines = (runs_dir / "trec-dl-2019/bm25.run").read_text().splitlines()[:3]
    qid = lines[0].split()[0]
    lines.append(f"{qid} Q0 123456789 4 0.1 bad")
    path = tmp_path / "r.run"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"line 4: passage 123456789 .* not in the docs store"):
        data.load_candidates(DL19, path)


def test_no_data_names_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(data.DataError, match="is not a folder"):
        data.data_dir()
    monkeypatch.delenv(data.DATA_ENV)
    monkeypatch.setattr(paths, "_candidate_data_dirs", lambda: iter([tmp_path / "nothing"]))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("RANK_DISTILLM_OFFLINE", "1")
    assert data.data_dir(required=False) is None
    with pytest.raises(data.DataError, match="point RANK_DISTILLM_DATA at a data folder.* or allow the download"):
        data.data_dir()
    # without a data folder, only the runs that do not live in one can be read
    specs = {"stored": "{data}/runs/trec-dl-2019/bm25.run", "official": "irds:msmarco-passage/trec-dl-2019/judged"}
    assert data.available_runs(specs) == {"official": specs["official"]}


def test_available_runs_with_a_data_folder():
    specs = {"stored": "{data}/runs/trec-dl-2019/bm25.run", "official": "irds:msmarco-passage/trec-dl-2019/judged"}
    assert data.available_runs(specs) == specs


def test_cli_evaluate_json(runs_dir):
    out = subprocess.run(
        [sys.executable, "-m", "rank_distillm.cli", "evaluate", "--dataset", DL19,
         "--run", str(runs_dir / "trec-dl-2019/bm25.run"), "--json"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    result = json.loads(out.stdout)
    assert result["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    assert set(result) == {"nDCG@10", "RR(rel=2)@10", "R(rel=2)@100"}


def test_cli_error_is_clear(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rank_distillm.cli", "evaluate", "--dataset", DL19, "--run", str(tmp_path / "x.run")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode == 2
    assert "run file not found" in out.stderr and "Traceback" not in out.stderr
