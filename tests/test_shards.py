"""Data-parallel teacher: shards, interruption, resume and merge on the real DL20 log (replay)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rank_distillm.data import DataError, read_run, write_run
from rank_distillm.teacher import shards
from rank_distillm.teacher.backends import ReplayBackend, VLLMBackend
from rank_distillm.teacher.log import read_log
from rank_distillm.teacher.windows import sliding_window_rerank

from .conftest import DL20


@pytest.fixture(scope="module")
def dl20(data_dir):
    log = data_dir / "teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl"
    return SimpleNamespace(log=log, bm25=data_dir / "runs/trec-dl-2020/bm25.run",
                           reference=read_run(data_dir / "runs/trec-dl-2020/rankvicuna-7b.run"))


class Interrupted(Exception):
    pass


class StopAfter:
    """A backend that answers ``calls`` batches through another one, then dies (a pre-emption)."""

    name = "replay"

    def __init__(self, inner, calls):
        self.inner, self.calls, self.windows = inner, calls, 0

    def generate(self, requests):
        if self.calls == 0:
            raise Interrupted
        self.calls -= 1
        self.windows += len(requests)
        return self.inner.generate(requests)


def _rankings(run):
    return {q: list(docs) for q, docs in run.items()}


def test_split_is_a_partition():
    items = list(range(11))
    parts = [shards.split(items, i, 3) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items
    assert [len(p) for p in parts] == [4, 4, 3]
    with pytest.raises(ValueError, match="shard 3 of 3"):
        shards.split(items, 3, 3)


def test_shard_from_environment():
    assert shards.shard_from_env({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4)
    assert shards.shard_from_env({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4",
                                  "SLURM_ARRAY_TASK_MAX": "7"}) == (1, 4)
    assert shards.shard_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2)
    assert shards.shard_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == (0, 8)
    assert shards.shard_from_env({}) is None


def test_two_shards_one_interrupted_resumed_and_merged_equal_single_process(dl20, tmp_path):
    # single process: all 54 queries in one job
    cands, _ = shards.shard_candidates(DL20, dl20.bm25, 0, 1)
    single = sliding_window_rerank(cands, ReplayBackend(dl20.log), prompt="rankvicuna", progress=False)
    assert _rankings(single.run) == _rankings(dl20.reference)
    write_run(single.run, tmp_path / "single.run", tag="teacher")

    out = tmp_path / "shards"
    c0, p0 = shards.shard_candidates(DL20, dl20.bm25, 0, 2)
    c1, p1 = shards.shard_candidates(DL20, dl20.bm25, 1, 2)
    assert len(c0) == 27 and len(c1) == 27 and not {c.qid for c in c0} & {c.qid for c in c1}
    shards.run_shard(c0, ReplayBackend(dl20.log), out, 0, 2, p0, prompt="rankvicuna", progress=False)

    # shard 1 dies after 3 batches of 4 queries (12 windows), mid-write of the next line
    dying = StopAfter(ReplayBackend(dl20.log), calls=3)
    with pytest.raises(Interrupted):
        shards.run_shard(c1, dying, out, 1, 2, p1, prompt="rankvicuna", batch_size=4, progress=False)
    log1 = shards.shard_paths(out, 1, 2)["log"]
    assert len(read_log(log1)) == dying.windows == 12
    with open(log1, "a") as f:
        f.write('{"qid": "half a line')
    assert not shards.shard_done(out, 1, 2)
    with pytest.raises(DataError, match="shard-1-of-2 not finished"):
        shards.merge_shards(out, 2, tmp_path / "merged.run")
    assert not (tmp_path / "merged.run").exists()

    # resumed: only the windows not in the log are asked
    counting = StopAfter(ReplayBackend(dl20.log), calls=10**6)
    shards.run_shard(c1, counting, out, 1, 2, p1, prompt="rankvicuna", batch_size=4, progress=False)
    assert counting.windows == 27 * 9 - 12
    assert json.loads(shards.shard_paths(out, 1, 2)["manifest"].read_text())["resumed"] == 12

    merged = shards.merge_shards(out, 2, tmp_path / "merged.run", log_out=tmp_path / "merged.jsonl")
    assert list(merged) == list(single.run)  # the original query order
    assert (tmp_path / "merged.run").read_bytes() == (tmp_path / "single.run").read_bytes()
    assert _rankings(read_run(tmp_path / "merged.run")) == _rankings(dl20.reference)
    original = {(r["qid"], r["window"]): r["response"] for r in read_log(dl20.log)}
    joined = read_log(tmp_path / "merged.jsonl")
    assert len(joined) == 486 and {(r["qid"], r["window"]): r["response"] for r in joined} == original


def test_merge_refuses_a_query_in_two_shards(dl20, tmp_path):
    for i in range(2):
        cands, pos = shards.shard_candidates(DL20, dl20.bm25, i, 2, max_queries=4)
        shards.run_shard(cands, ReplayBackend(dl20.log), tmp_path, i, 2, pos, prompt="rankvicuna", progress=False)
    assert len(shards.merge_shards(tmp_path, 2)) == 4
    m0, m1 = (shards.shard_paths(tmp_path, i, 2)["manifest"] for i in range(2))
    bad = json.loads(m1.read_text())
    bad["qids"][0] = json.loads(m0.read_text())["qids"][0]
    m1.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="holds 2 queries but|is in"):
        shards.merge_shards(tmp_path, 2)


def test_command_line_under_a_slurm_array(dl20, tmp_path, monkeypatch, capsys):
    args = ["run", "--dataset", DL20, "--candidates", str(dl20.bm25), "--out-dir", str(tmp_path),
            "--backend", "replay", "--replay-log", str(dl20.log), "--prompt", "rankvicuna", "--max-queries", "6"]
    for task in ("1", "0"):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        assert shards.main(args) == 0
    assert "shard-0-of-2: done" in capsys.readouterr().out
    assert shards.main(args) == 0 and "already done" in capsys.readouterr().out
    assert shards.main(["merge", "--out-dir", str(tmp_path), "--num-shards", "2", "--out", str(tmp_path / "m.run")]) == 0
    merged = read_run(tmp_path / "m.run")
    assert len(merged) == 6 and all(list(merged[q]) == list(dl20.reference[q]) for q in merged)
    assert shards.main(["merge", "--out-dir", str(tmp_path), "--num-shards", "3", "--out", str(tmp_path / "x.run")]) == 2
    assert "not finished" in capsys.readouterr().err
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert shards.main([*args, "--backend", "vllm"]) == 2  # no --model


def test_launch_groups_gpus_for_tensor_parallelism():
    jobs = shards.launch_commands("0,1,2,3", None, 2, ["--dataset", "d"])
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in jobs] == ["0,1", "2,3"]
    assert jobs[1][1][-6:] == ["--shard", "1", "--num-shards", "2", "--dataset", "d"]
    assert len(shards.launch_commands("", 3, 1, [])) == 3
    with pytest.raises(ValueError, match="groups of 2"):
        shards.launch_commands("0,1,2", None, 2, [])


class FakeVLLM:
    """vLLM's ``LLM`` as the backend calls it: ``generate(prompts, sampling_params)`` returning
    ``RequestOutput``-shaped objects; it answers from the stored RankVicuna log by exact prompt."""

    def __init__(self, log):
        self.by_prompt = {r["prompt"]: r["response"] for r in read_log(log)}
        self.calls = []

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        assert isinstance(prompts, list) and sampling_params.temperature == 0.0
        self.calls.append(len(prompts))
        outs = []
        for prompt in prompts:
            text = self.by_prompt[prompt]
            completion = SimpleNamespace(text=text, token_ids=list(range(len(text.split()))))
            outs.append(SimpleNamespace(prompt=prompt, prompt_token_ids=[0] * len(prompt.split()), outputs=[completion]))
        return outs


def test_vllm_backend_shard_with_a_fake_engine(dl20, tmp_path):
    engine = FakeVLLM(dl20.log)
    cands, pos = shards.shard_candidates(DL20, dl20.bm25, 1, 3, max_queries=9)
    path = shards.run_shard(cands, VLLMBackend(llm=engine), tmp_path, 1, 3, pos, prompt="rankvicuna",
                            batch_size=3, progress=False)
    run = read_run(path)
    assert list(run) == [c.qid for c in cands] and all(list(run[q]) == list(dl20.reference[q]) for q in run)
    assert engine.calls == [3] * 9  # 3 queries' windows per engine call, 9 windows each
    assert all(r["backend"] == "vllm" and r["generated_tokens"] > 0 for r in read_log(shards.shard_paths(tmp_path, 1, 3)["log"]))
