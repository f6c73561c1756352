"""The gpu profile is the paper's protocol, and its code path runs end to end at toy size on a CPU.

``gpu-mini`` differs from ``gpu`` only in data (a random tiny ELECTRA, the offline TREC data
written in the released formats): it trains stage 1 (InfoNCE, 1 + 7 drawn anew) and stage 2
(RankNet on released-format lists), keeps the last checkpoint, and its model re-ranks and is
evaluated on both years and both first stages, in one process and in two (DDP over gloo).
The teacher's shard runner answers from the replay log in two processes and merges.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rank_distillm import data, evaluation
from rank_distillm.profiles import load_profile

from .conftest import DL19, DL20

LOG = "teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl"


def _flat(node, prefix=""):
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def test_gpu_profile_is_the_papers_protocol():
    """configs/pre-finetune.yaml, finetune.yaml, re-rank.yaml of webis-de/rank-distillm at 07105cf."""
    p = load_profile("gpu")
    t, s1, s2, e = p["training"], p["training"]["stage1"], p["training"]["stage2"], p["evaluation"]
    assert (t["model"], t["head"], t["query_length"], t["passage_length"]) == ("google/electra-base-discriminator", "linear", 32, 256)
    assert (t["selection"], t["max_grad_norm"], t["separate_layers"]) == ("last", None, 0)  # held-out queries only logged
    assert (t["lr_scheduler"], t["warmup_ratio"], t["bf16"], t["seed"]) == ("constant", 0.0, True, 42)
    assert t["queries_per_batch"] * t["gradient_accumulation_steps"] == 32
    assert (s1["source"], s1["run"], s1["dataset"]) == ("run", "irds:msmarco-passage/train/rank-distillm-colbert", "msmarco-passage/train/judged")
    assert (s1["depth"], s1["negatives"], s1["relevant_grade"], s1["add_docs_not_in_ranking"]) == (200, 7, 1, True)
    assert (s1["loss"], s1["max_steps"], s1["lr"]) == ("infonce", 20000, 1e-5)
    assert (s2["source"], s2["released"]) == ("released", "irds:msmarco-passage/train/rank-distillm-rankzephyr")
    assert (s2["depth"], s2["cut"], s2["per_list"], s2["sampling"], s2["labels"]) == (100, "first-stage", None, "top", "rank")
    assert (s2["loss"], s2["epochs"], s2["max_steps"], s2["lr"]) == ("ranknet", 3, None, 1e-5)
    assert set(e["first_stages"]) == {"BM25", "ColBERTv2"} and all(set(v) == {"dl19", "dl20"} for v in e["first_stages"].values())
    assert e["baseline"] in {s["name"] for s in t["students"]}  # the distilled model, not the teacher


# what gpu-mini may change: data (sizes, files, the random model), never what picks a code path
STAND_INS = {
    "data.first_stage.dl19", "data.first_stage.dl20", "data.max_queries",
    "evaluation.batch_size", "evaluation.first_stages.BM25.dl19", "evaluation.first_stages.BM25.dl20",
    "evaluation.first_stages.ColBERTv2.dl19", "evaluation.first_stages.ColBERTv2.dl20",
    "training.model", "training.heldout_queries", "training.eval_depth", "training.eval_batch_size", "training.queries_per_batch", "training.gradient_accumulation_steps",
    "training.save_steps", "training.bf16", "training.logging_steps", "training.progress_bar", "training.students",
    "training.stage1.max_steps", "training.stage1.run", "training.stage1.dataset", "training.stage1.add_docs_not_in_ranking",
    "training.stage2.released", "training.stage2.released_queries", "training.stage2.released_max_queries",
    "name",
}


def test_gpu_mini_differs_from_gpu_only_in_data():
    gpu, mini = _flat(load_profile("gpu")), _flat(load_profile("gpu-mini"))
    assert gpu.keys() == mini.keys()
    changed = {k for k in gpu if gpu[k] != mini[k]}
    assert changed <= STAND_INS, changed - STAND_INS
    assert mini["training.stage1.run"].startswith("parquet:") and mini["training.stage2.released"].startswith("parquet:")
    assert mini["training.model"] == "random:electra-tiny"


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
            "RANK_DISTILLM_CACHE": os.environ.get("RANK_DISTILLM_CACHE", str(tmp_path / "cache"))}


def _run(cmd: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _result(stdout: str) -> dict:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and "model_path" in line]
    assert len(lines) == 1, stdout  # one process reports
    return lines[0]


@pytest.mark.slow
def test_gpu_mini_trains_once_reranks_and_is_evaluated_on_both_years_and_first_stages(tmp_path):
    out = tmp_path / "D"
    result = _result(_run([sys.executable, "-m", "rank_distillm", "train", "--profile", "gpu-mini", "--out", str(out)], tmp_path).stdout)
    assert result["processes"] == 1 and Path(result["model_path"]) == out / "final"
    metrics = json.loads((out / "metrics.json").read_text())
    s1, s2 = metrics["stages"]["stage1"], metrics["stages"]["stage2"]
    assert (s1["loss"], s1["steps"], s1["max_steps"]) == ("infonce", 2, 2)
    assert (s2["loss"], s2["epochs"], s2["selection"], s2["best_checkpoint"]) == ("ranknet", 3, "last", None)
    assert s2["heldout_ndcg10"] and metrics["train_queries"] == 4  # held-out queries monitored, not chosen on
    assert s2["pairs_per_epoch"] == 4 * 100  # released-format lists of the teacher's whole top-100
    modules = json.loads((out / "final" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["SeparateLengthsTransformer", "Pooling", "Dense"]
    # the saved model re-ranks from the command line
    run_file = tmp_path / "dl19.run"
    _run([sys.executable, "-m", "rank_distillm", "rerank", "--model", str(out / "final"), "--dataset", DL19,
          "--candidates", str(data.data_dir() / "runs/trec-dl-2019/bm25.run"), "--max-queries", "3", "--out", str(run_file)], tmp_path)
    assert len(data.read_run(run_file)) == 3
    # the paper's evaluation: both years, both first stages, tested against the distilled model
    student = type("S", (), {"name": "ELECTRA RankNet", "path": out / "final"})
    comparisons = evaluation.protocol(load_profile("gpu-mini"), [student], show_progress_bar=False)
    assert set(comparisons) == {("BM25", "dl19"), ("BM25", "dl20"), ("ColBERTv2", "dl19"), ("ColBERTv2", "dl20")}
    for (first, year), c in comparisons.items():
        assert c.baseline == "ELECTRA RankNet" and c.dataset_id == {"dl19": DL19, "dl20": DL20}[year]
        assert first in c.table.index and len(c.scores) == 6
    table = evaluation.protocol_table(comparisons)
    assert table.columns.tolist() == sorted(comparisons) and table.loc["ELECTRA RankNet"].notna().all()


def _two_cpu_processes(tmp_path: Path) -> None:
    """Skip (saying why) where accelerate cannot start two CPU processes that meet over gloo."""
    probe = tmp_path / "probe.py"
    # each rank writes its own file: two ranks printing at once interleave their lines on stdout
    probe.write_text("import sys, torch\nfrom pathlib import Path\nfrom accelerate import PartialState\n"
                     "s = PartialState(cpu=not torch.cuda.is_available())\n"
                     "Path(sys.argv[1], f'rank{s.process_index}').write_text(str(s.num_processes))\n")
    try:
        done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                               str(probe), str(tmp_path)], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"accelerate could not start two CPU processes: {error}")
    ranks = sorted(p.read_text() for p in tmp_path.glob("rank[0-9]*"))
    if ranks != ["2", "2"]:
        pytest.skip(f"accelerate could not start two CPU processes over gloo (ranks: {ranks}): {(done.stdout + done.stderr)[-400:]}")


@pytest.mark.slow
def test_gpu_mini_in_two_processes_trains_once_resumes_and_reranks(tmp_path):
    """accelerate launch (two processes, DDP over gloo): one model written, by the main process only;
    a run cut after a checkpoint resumes from it in both processes."""
    _two_cpu_processes(tmp_path)
    out = tmp_path / "D2"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "-m", "rank_distillm", "train", "--profile", "gpu-mini", "--out", str(out)]
    done = _run(launch, tmp_path)
    assert _result(done.stdout)["processes"] == 2
    assert "Traceback" not in done.stderr and "[rank1]" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["final", "metrics.json", "stage1", "stage2"]
    assert not list(out.rglob("*.partial")) and not list(out.rglob(".*.tmp"))
    stage2 = json.loads((out / "stage2" / "metrics.json").read_text())
    assert stage2["processes"] == 2 and (out / "stage2" / f"checkpoint-{stage2['steps']}" / "rng_state_1.pth").is_file()
    # cut the run after its second-to-last checkpoint, as a time limit would, and start it again
    last = stage2["steps"]
    for path in (out / "final", out / "metrics.json", out / "stage2" / "final", out / "stage2" / "metrics.json",
                 out / "stage2" / f"checkpoint-{last}"):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    again = _result(_run(launch, tmp_path).stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert again["processes"] == 2 and metrics["stages"]["stage2"]["resumed_from"].endswith(f"checkpoint-{last - 1}")
    assert metrics["stages"]["stage2"]["steps"] == last
    model = __import__("rank_distillm.student", fromlist=["load_student"]).load_student(out / "final")
    assert len(model.predict([("a query", "a passage"), ("a query", "another passage")])) == 2


@pytest.mark.slow
def test_teacher_shards_in_two_processes_replay_and_merge(tmp_path, data_dir, runs_dir):
    """The shard runner under accelerate (each process takes its shard from RANK/WORLD_SIZE) and
    with its own launcher: the merged run is the stored RankVicuna run."""
    args = ["--dataset", DL20, "--candidates", str(runs_dir / "trec-dl-2020/bm25.run"), "--backend", "replay",
            "--replay-log", str(data_dir / LOG), "--prompt", "rankvicuna", "--max-queries", "6"]
    reference = data.read_run(runs_dir / "trec-dl-2020/rankvicuna-7b.run")

    def same(run):
        assert len(run) == 6 and all(list(run[q]) == list(reference[q]) for q in run)

    _run([sys.executable, "-m", "rank_distillm.teacher.shards", "launch", "--processes", "2", "--out",
          str(tmp_path / "launched.run"), "--", *args, "--out-dir", str(tmp_path / "launched")], tmp_path)
    same(data.read_run(tmp_path / "launched.run"))
    _two_cpu_processes(tmp_path)
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "-m", "rank_distillm.teacher.shards", "run", *args, "--out-dir", str(tmp_path / "acc")], tmp_path)
    assert sorted(p.name for p in (tmp_path / "acc").glob("*.run")) == ["shard-0-of-2.run", "shard-1-of-2.run"]
    _run([sys.executable, "-m", "rank_distillm.teacher.shards", "merge", "--out-dir", str(tmp_path / "acc"),
          "--num-shards", "2", "--out", str(tmp_path / "merged.run")], tmp_path)
    same(data.read_run(tmp_path / "merged.run"))
