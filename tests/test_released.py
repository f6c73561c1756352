"""The released Rank-DistiLLM files: ir_datasets ids as lightning-ir registers them, the parquet
schema read and written, the paper's evaluation runs fetched at a pinned commit and checked, and
the paper's stage-1 lists (1 judged-relevant + 7, drawn anew at every access) on TREC DL 2020."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rank_distillm import data, released
from rank_distillm.single_relevant import SingleRelevantSampler, single_relevant_lists

from .conftest import DL20


def test_released_files_are_ir_datasets_ids_with_their_md5():
    """The ids of lightning-ir's register_rank_distillm, with its URL and md5 (nothing downloaded)."""
    for name, (file_name, md5) in released.FILES.items():
        dataset = data.irds_dataset(f"msmarco-passage/train/{name}")
        assert dataset.has_scoreddocs() and dataset.has_queries() and dataset.has_qrels() and dataset.has_docs()
        download = dataset.scoreddocs_handler()._cache._streamer
        assert download.expected_md5 == md5
        urls = [getattr(m, "url", None) for m in download.mirrors]
        assert f"https://huggingface.co/datasets/webis/rank-distillm/resolve/main/{file_name}" in urls
    assert released.FILES["rank-distillm-rankzephyr"][1] == "38f69a3c8a5ed21c639e882a6c2eff7c"
    assert released.FILES["rank-distillm-colbert"][1] == "1e927d52af085516bf5a3de2865809d5"


def test_an_id_reads_its_file_once_it_is_in_place(tmp_path, monkeypatch, runs_dir):
    """What ir_datasets downloads (a file in the released schema) is read through the id: here
    the file is put where the download would land, in a separate IR_DATASETS_HOME."""
    import ir_datasets

    home = tmp_path / "irds"
    shutil.copytree(data.setup_ir_datasets(), home)
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    monkeypatch.setattr(ir_datasets.util, "home_path", lambda: home)
    monkeypatch.setattr(ir_datasets.registry, "_registered", dict(ir_datasets.registry._registered))
    for name in released.FILES:
        ir_datasets.registry._registered.pop(released.PREFIX + name, None)
    teacher = data.read_run(runs_dir / "trec-dl-2020/rankvicuna-7b.run")
    released.write_released(teacher, home / "msmarco-passage/train/rank-distillm-rankzephyr.parquet")
    via_id = data.read_run(f"irds:{released.RANKZEPHYR}")
    assert {q: list(d) for q, d in via_id.items()} == {q: list(d) for q, d in teacher.items()}


def test_released_schema_round_trip_and_errors(tmp_path, runs_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = data.read_run(runs_dir / "trec-dl-2020/bm25.run")
    path = released.write_released(run, tmp_path / "bm25.parquet")
    schema = pq.read_schema(path)
    assert schema.names == ["qid", "docno", "score"]
    assert [str(t) for t in schema.types] == ["string", "string", "double"]
    back = data.read_run(path)  # a .parquet file takes the released reader
    assert {q: list(d.items()) for q, d in back.items()} == {q: list(d.items()) for q, d in run.items()}
    assert data.read_run(f"parquet:{runs_dir}/trec-dl-2020/bm25.run") == back  # the same through parquet:
    # extra columns (a rank) are ignored, integer ids are read as strings
    pq.write_table(pa.table({"qid": [1, 1], "docno": [7, 8], "score": [1.0, 2.0], "rank": [2, 1]}), tmp_path / "x.parquet")
    assert list(released.read_released(tmp_path / "x.parquet")["1"]) == ["8", "7"]
    pq.write_table(pa.table({"qid": ["1", "1"], "docno": ["7", "7"], "score": [1.0, 2.0]}), tmp_path / "dup.parquet")
    with pytest.raises(data.DataError, match=r"dup\.parquet row 1: passage 7 listed twice for query 1"):
        released.read_released(tmp_path / "dup.parquet")


def test_top_lists_keep_each_querys_best_first(runs_dir):
    run = data.read_run(runs_dir / "trec-dl-2019/bm25.run")
    table = released.top_lists(f"parquet:{runs_dir}/trec-dl-2019/bm25.run", depth=7)
    lists = dict(zip(table.column("qid").to_pylist(), table.column("docids").to_pylist()))
    assert lists.keys() == run.keys()
    for qid, docids in lists.items():
        assert docids == run.ranking(qid)[:7]


def test_github_files_are_checked_against_their_git_blob_id(tmp_path, monkeypatch):
    COMMIT = "0123abc" + "0" * 33  # a full commit id: a spec pins one
    content = b"19335 Q0 8412684 1 32.25 bm25\n19335 Q0 7267248 2 28.07 bm25\n"
    blob = released.git_blob_id(content)
    if shutil.which("git"):
        assert blob == subprocess.run(["git", "hash-object", "--stdin"], input=content, capture_output=True).stdout.decode().strip()
    mirror = tmp_path / "mirror" / f"owner/repo/{COMMIT}/data"
    mirror.mkdir(parents=True)
    (mirror / "x.run").write_bytes(content)
    monkeypatch.setenv(released.GITHUB_RAW_ENV, (tmp_path / "mirror").as_uri())
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(data.DataError, match="checksum mismatch"):
        data.read_run(f"github:owner/repo/{COMMIT}/data/x.run#{'0' * 40}")
    assert not (tmp_path / f"cache/github/owner/repo/{COMMIT}/data/x.run").exists()  # nothing kept
    run = data.read_run(f"github:owner/repo/{COMMIT}/data/x.run#{blob}")
    assert run.ranking("19335") == ["8412684", "7267248"]
    assert (tmp_path / f"cache/github/owner/repo/{COMMIT}/data/x.run").read_bytes() == content


# --------------------------------------------------------------------------- the paper's stage 1


@pytest.fixture(scope="module")
def stage1(runs_dir):
    return single_relevant_lists(f"parquet:{runs_dir}/trec-dl-2020/bm25.run", DL20, depth=100, negatives=7,
                                 relevant_grade=1, add_docs_not_in_ranking=False, seed=1)


def test_single_relevant_lists_draw_anew_at_every_access(stage1, runs_dir):
    qrels = data.load_qrels(DL20)
    bm25 = data.read_run(runs_dir / "trec-dl-2020/bm25.run")
    assert stage1.num_rows == 54  # every DL20 query has a passage judged >= 1 in the BM25 top-100
    draws = [stage1[3] for _ in range(5)]
    for row in draws:
        grades = qrels[row["qid"]]
        assert len(row["docids"]) == len(row["docs"]) == 8 and row["labels"] == [1.0] + [0.0] * 7
        assert grades[row["docids"][0]] >= 1  # the positive: judged relevant (lightning-ir: relevance > 0)
        assert all(grades.get(d, 0) == 0 for d in row["docids"][1:])  # negatives: judged 0 or unjudged ...
        assert set(row["docids"][1:]) <= set(bm25.ranking(row["qid"]))  # ... from the run's top-depth
        assert len(set(row["docids"])) == 8
    assert len({tuple(r["docids"]) for r in draws}) > 1  # a fresh sample at every access
    texts = data.passage_texts(draws[0]["docids"])
    assert draws[0]["docs"] == [texts[d] for d in draws[0]["docids"]]


def test_single_relevant_positives_beyond_the_run(stage1):
    """add_docs_not_in_ranking: a judged-relevant passage the run missed can be the positive,
    never a negative; without it only ranked positives count."""
    judged, grades = ["a", "x", "b"], [2, 0, 1]
    ranked = ["b", "c", "d", "e"]
    with_added = SingleRelevantSampler(negatives=2, relevant_grade=1, add_docs_not_in_ranking=True, seed=0)
    without = SingleRelevantSampler(negatives=2, relevant_grade=1, add_docs_not_in_ranking=False, seed=0)
    assert with_added.positives(ranked, judged, grades) == ["a", "b"]
    assert without.positives(ranked, judged, grades) == ["b"]
    seen = {tuple(with_added.draw(ranked, judged, grades)) for _ in range(50)}
    assert {s[0] for s in seen} == {"a", "b"} and all(set(s[1:]) <= {"c", "d", "e"} for s in seen)
    assert SingleRelevantSampler(relevant_grade=2, add_docs_not_in_ranking=False).positives(ranked, judged, grades) == []


def test_stage1_lists_train_through_the_trainer_columns(stage1):
    from rank_distillm.training import training_columns

    ds = training_columns(stage1)
    row = ds[0]
    assert list(row) == ["query", "docs", "labels"] and len(row["docs"]) == 8


def test_summary_of_lists_drawn_on_access(stage1):
    from rank_distillm import sampling

    info = sampling.summary(stage1)
    assert (info["lists"], info["queries"], info["passages"]) == (54, 54, 54 * 8)
    assert (info["passages_per_list_min"], info["passages_per_list_max"], info["label_min"], info["label_max"]) == (8, 8, 0.0, 1.0)
