"""Efficiency: the harness on tiny models, the cost model against hand-computed FLOPs,
the exported / quantised student against the PyTorch one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rank_distillm import cost_model as cm
from rank_distillm import devices
from rank_distillm import efficiency as eff
from rank_distillm.data import Candidates, DataError
from rank_distillm.efficiency import report, student_runtimes
from rank_distillm.teacher.backends import ranking_tokens
from tests.test_teacher import FakeVLLM

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory, minilm_path):
    """A 2-layer BERT cross-encoder (random weights) with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-student")
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A 2-layer Llama causal LM (random weights) with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rank_distillm.models import SMOLLM2_GGUF, gguf_parts

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-teacher")
    tok_folder, gguf = gguf_parts(SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(tok_folder, gguf_file=gguf)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _candidates(n_queries=2, depth=25):
    words = "the cat sat on a mat while a dog barked at the moon over the river bank".split()
    out = []
    for q in range(n_queries):
        texts = [" ".join(words[(i + q) % 7 :] * 2) + f" passage {i}" for i in range(depth)]
        out.append(Candidates(f"q{q}", f"what did the cat do {q}", [f"d{q}-{i}" for i in range(depth)], texts))
    return out


def _student_spec(path):
    return {"name": "tiny-student", "model": path, "from_config": None, "max_length": 64, "batch_size": 8,
            "device": "cpu", "dtype": "float32"}


def _teacher_spec(path):
    return {"name": "tiny-teacher", "model": path, "from_config": None, "device": "cpu", "dtype": "float32",
            "prompt": "rankzephyr", "window": 10, "stride": 5, "max_words": 20, "force_full_ranking": True,
            "max_new_tokens": 30}


# --------------------------------------------------------------------------- memory


def test_peak_rss_sees_an_allocation_and_resets():
    assert devices.reset_peak_rss()
    assert devices.peak_rss_mb() < devices.rss_mb() + 30  # the peak starts again from what is resident now
    before = devices.rss_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert devices.rss_mb() >= before + 60  # the block is resident ...
    del block
    assert devices.rss_mb() < before + 30  # ... and freed (numpy hands a block this large back to the system)
    assert devices.peak_rss_mb() >= before + 60  # the peak still holds it
    assert devices.reset_peak_rss()
    assert devices.peak_rss_mb() < before + 30  # after a reset it no longer counts


def test_memory_meter_on_the_cpu_sees_what_ran_between_start_and_stop():
    meter = devices.MemoryMeter("cpu")
    meter.start()
    base = devices.rss_mb()
    block = np.ones(48 * 2**20 // 8)
    del block
    assert meter.stop() >= base + 45 and meter.what == "peak RSS (VmHWM)"
    meter.start()
    assert meter.stop() < base + 30


# --------------------------------------------------------------------------- cost model


def test_windows_per_query_matches_the_closed_form():
    """The teacher's schedule, counted, against ``ceil((k - w) / s) + 1`` (one window up to ``w``, none for one passage)."""
    from rank_distillm.teacher import windows_per_query

    for depth in (1, 2, 10, 20, 21, 30, 50, 95, 100):
        for window, stride in ((20, 10), (10, 5), (4, 2)):
            closed = 0 if depth < 2 else 1 if depth <= window else math.ceil((depth - window) / stride) + 1
            assert windows_per_query(depth, window, stride) == closed, (depth, window, stride)
            assert cm.Workload(depth=depth, window=window, stride=stride).windows == closed


def test_workload_from_measured_tokens_round_trips():
    """What a teacher run measured (tokens per window) is what the workload built from it gives back."""
    measured = {"depth": 50, "windows": 4, "prompt_tokens": 4 * 1832.0, "generated_tokens": 4 * 81.0}
    w = cm.Workload.from_measurement(measured, depth=100)
    assert (w.depth, w.window, w.stride, w.windows) == (100, 20, 10, 9)
    prompt, generated = cm.llm_window_tokens(w)
    assert prompt == pytest.approx(1832.0) and generated == 81
    assert w.passage_tokens == pytest.approx((1832 - 150 - 2 * 10) / 20 - 4)
    shallow = cm.Workload.from_measurement({"depth": 10, "windows": 1, "prompt_tokens": 700.0, "generated_tokens": 41.0})
    assert cm.llm_window_tokens(shallow, 10) == (pytest.approx(700.0), 41)  # a window of 10 passages
    with pytest.raises(ValueError, match="no tokens for its 20 passages"):
        cm.Workload.from_window_tokens(100, 10, 20)


def test_encoder_flops_by_hand():
    s = cm.ModelShape("toy", params=1000, embedding_params=200, layers=2, hidden=8, intermediate=16, heads=2,
                      kv_dim=8, vocab=10, bytes_per_param=4)
    w = cm.Workload(depth=5, query_tokens=3, passage_tokens=4, batch=5)
    seq = 3 + 4 + 3
    per_pair = seq * (2 * 800 + 2 * 2 * seq * 8)  # 2N + 2 * layers * context * d per token
    cost = cm.encoder_cost(s, w)
    assert cost["flops"] == 5 * per_pair == 5 * 10 * (1600 + 320)
    assert cost["weights_bytes"] == 4000


def test_llm_flops_by_hand():
    s = cm.ModelShape("toy", params=1000, embedding_params=200, layers=2, hidden=8, intermediate=16, heads=2,
                      kv_dim=4, vocab=10, bytes_per_param=2)
    w = cm.Workload(depth=30, query_tokens=2, passage_tokens=5, window=20, stride=10, prompt_overhead_tokens=10,
                    id_tokens=1, generated_tokens_per_id=2)
    prompt, generated = cm.llm_window_tokens(w)
    assert (prompt, generated) == (10 + 4 + 20 * 6, 40)
    prefill = prompt * (1600 + 2 * 2 * (prompt / 2) * 8)
    decode = generated * (1600 + 2 * 2 * (prompt + generated / 2) * 8) + generated * 2 * 10 * 8
    cost = cm.llm_cost(s, w)
    assert cost["windows"] == 2
    assert cost["flops"] == pytest.approx(2 * (prefill + decode))
    assert cost["kv_cache_bytes"] == 2 * 2 * 4 * (prompt + generated) * 2
    assert cost["generated_tokens"] == 80


def test_roofline_by_hand():
    """One window, its phases timed by hand: prefill compute bound, decoding memory bound, batch shares the weights."""
    s = cm.ModelShape("toy", params=1000, embedding_params=200, layers=2, hidden=8, intermediate=16, heads=2,
                      kv_dim=4, vocab=10, bytes_per_param=2)
    w = cm.Workload(depth=20, query_tokens=2, passage_tokens=5, window=20, prompt_overhead_tokens=10, id_tokens=1,
                    generated_tokens_per_id=2)
    cost = cm.llm_cost(s, w)
    prompt, generated = 134, 40
    prefill_flops = prompt * (1600 + 2 * 2 * (prompt / 2) * 8)
    decode_flops = generated * (1600 + 2 * 2 * (prompt + generated / 2) * 8) + generated * 2 * 10 * 8
    kv_read = generated * 2 * 2 * 4 * 2 * (prompt + generated) / 2  # on average half the answer beyond the prompt
    gpu = cm.Hardware("X", flops_per_s=1e6, bytes_per_s=1e5)
    for batch in (1, 4):
        r = cm.Roofline(gpu, utilisation=0.5, decode_batch=batch)
        prefill = max(prefill_flops / 5e5, 2000 / 5e4)
        decode = max(decode_flops / 5e5, (kv_read + generated * 2000 / batch) / 5e4)
        assert r.seconds(cost) == pytest.approx(prefill + decode)
    assert cm.Hardware.from_datasheet({"name": "A100", "bf16_tflops": 312, "memory_bandwidth_gbs": 2039}) == \
        cm.Hardware("A100", 312e12, 2039e9)
    with pytest.raises(ValueError, match="utilisation"):
        cm.Roofline(gpu, utilisation=0)


def test_rankzephyr_decoding_at_batch_one_reads_the_weights_once_a_token():
    """A published-figure check: a 7B model in bf16 on an A100 (2,039 GB/s) decodes at most ~140 tokens/s alone."""
    zephyr = cm.SHAPES["RankZephyr-7B (Mistral-7B)"]
    a100 = cm.Hardware.from_datasheet({"name": "A100", "bf16_tflops": 312, "memory_bandwidth_gbs": 2039})
    w = cm.Workload()
    cost = cm.llm_cost(zephyr, w)
    decode = next(p for p in cost["phases"] if p["name"] == "decode")
    tokens = cost["generated_tokens"]
    seconds = cm.Roofline(a100, utilisation=1.0).seconds({**cost, "phases": [decode]})
    assert tokens / seconds == pytest.approx(2039e9 / (zephyr.params * 2), rel=0.05)  # ~141 tokens/s
    assert 130 < tokens / seconds < 141


def test_shapes_match_real_configs(minilm_path):
    import torch
    from transformers import AutoConfig, AutoModel, MistralConfig, MistralForCausalLM

    with torch.device("meta"):
        mistral = MistralForCausalLM(MistralConfig())
    real = sum(p.numel() for p in mistral.parameters())
    assert cm.SHAPES["RankZephyr-7B (Mistral-7B)"].params == pytest.approx(real, rel=0.005)
    assert cm.shape_from_config(MistralConfig()).params == pytest.approx(real, rel=0.005)
    minilm = AutoModel.from_pretrained(minilm_path)
    real = sum(p.numel() for p in minilm.parameters())
    assert cm.shape_from_config(AutoConfig.from_pretrained(minilm_path)).params == pytest.approx(real, rel=0.02)


def test_compare_ratios_are_consistent_and_grow_with_the_teacher():
    roofline = cm.Roofline(cm.Hardware("A100", 312e12, 2039e9), utilisation=0.4)
    small = cm.compare(cm.SHAPES["ELECTRA-base"], cm.SHAPES["SmolLM2-135M"], cm.Workload(), roofline)
    big = cm.compare(cm.SHAPES["ELECTRA-base"], cm.SHAPES["RankZephyr-7B (Mistral-7B)"], cm.Workload(), roofline)
    for r in (small, big):
        assert r["flops_ratio"] == pytest.approx(r["teacher_GFLOPs"] / r["student_GFLOPs"])
        assert r["memory_ratio"] == pytest.approx(r["teacher_memory_MB"] / r["student_memory_MB"])
    assert big["flops_ratio"] > 20 * small["flops_ratio"] and big["memory_ratio"] > 10 * small["memory_ratio"]
    # sequential decoding makes the LLM slower than its FLOPs alone say
    assert big["time_ratio"] > big["flops_ratio"]


# --------------------------------------------------------------------------- harness


def test_student_measure_in_process(tiny_student):
    cands = _candidates()
    result = eff.measure("student", _student_spec(tiny_student), cands, [5, 20], repeats=2, warmup=1)
    rows, model = result["rows"], result["model"]
    assert len(rows) == 2 * 2 * 2  # depths x queries x repeats
    assert all(r["seconds"] > 0 for r in rows)
    assert sorted({r["pairs"] for r in rows}) == [5, 20]
    assert model["params"] > 1e6 and model["peak_mb"] >= model["loaded_mb"] > model["baseline_mb"] > 0
    summary = eff.summarise(rows, [model])
    assert list(summary["depth"]) == [5, 20]
    assert (summary["pairs_per_s"] > 0).all() and (summary["min_s"] <= summary["median_s"]).all()


def test_teacher_measure_counts_windows_and_forced_tokens(tiny_teacher):
    spec = _teacher_spec(tiny_teacher)
    cands = _candidates(1)
    result = eff.measure("teacher", spec, cands, [10, 20], repeats=1, warmup=0)
    backend = eff.load_teacher(spec).backend
    by_depth = {r["depth"]: r for r in result["rows"]}
    assert by_depth[10]["windows"] == 1
    assert by_depth[20]["windows"] == 3  # 10-20, 5-15, 0-10
    full = ranking_tokens(backend.tokenizer, 10)
    assert full >= 10 * 3  # "[1] > [2] > ..." is several tokens per id
    assert by_depth[20]["generated_tokens"] == 3 * full  # forced: a full ranking per window
    assert by_depth[20]["prompt_tokens"] > 2 * by_depth[10]["prompt_tokens"]
    assert all(r["seconds"] > 0 for r in result["rows"])


# --------------------------------------------------------------------------- the teacher on vLLM


class FakeTokensVLLM(FakeVLLM):
    """test_teacher's stand-in for vLLM's ``LLM``, given prompts as token ids (``{"prompt_token_ids": [...]}``,
    vLLM's ``TokensPrompt``), as the harness sends them; it writes ``max_tokens`` tokens, as vLLM
    does with ``min_tokens = max_tokens`` and ``ignore_eos``."""

    def generate(self, prompts, sampling_params):
        self.calls.append(("generate", len(prompts), sampling_params))
        out = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            answer = [ids[i % len(ids)] for i in range(sampling_params.max_tokens)]
            out.append(SimpleNamespace(prompt=None, prompt_token_ids=ids,
                                       outputs=[SimpleNamespace(text="", token_ids=answer)]))
        return out


def test_teacher_backend_is_chosen_by_the_profile(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    assert eff.teacher_backend({"backend": "transformers"}, "cuda") == "transformers"
    assert eff.teacher_backend({"backend": "vllm"}, "cpu") == "vllm"
    assert eff.teacher_backend({"backend": "auto"}, "cpu") == "transformers"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    assert eff.teacher_backend({"backend": "auto"}, "cuda") == "vllm"
    assert eff.teacher_backend({}, "cuda:1") == "vllm"  # auto is the default
    assert eff.teacher_backend({"backend": "auto"}, "cpu") == "transformers"  # vLLM is for GPUs
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert eff.teacher_backend({"backend": "auto"}, "cuda") == "transformers"
    with pytest.raises(ValueError, match="teacher.backend"):
        eff.teacher_backend({"backend": "llama.cpp"}, "cpu")
    from rank_distillm.profiles import load_profile

    for size in ("smoke", "cpu", "gpu"):  # every size has the fields; on this CPU auto is transformers
        t = load_profile(size)["efficiency"]["teacher"]
        assert t["backend"] == "auto" and t["gpu_memory_utilization"] and t["max_model_len"]


def test_vllm_teacher_with_a_fake_engine(tiny_teacher):
    """The teacher timed through vLLM's ``LLM.generate``: the prompts of transformers, forced answers, honest memory."""
    spec = {**_teacher_spec(tiny_teacher), "backend": "vllm"}
    cands = _candidates(1)
    fake = FakeTokensVLLM()
    result = eff.measure("teacher", spec, cands, [10, 20], repeats=1, warmup=0, engine=fake)
    ref = eff.measure("teacher", {**spec, "backend": "transformers"}, cands, [10, 20], repeats=1, warmup=0)
    model, rows = result["model"], {r["depth"]: r for r in result["rows"]}
    assert model["backend"] == "vllm" and {r["backend"] for r in result["rows"]} == {"vllm"}
    assert len(fake.calls) == 1 + 3  # one engine call per window: 1 window at depth 10, 3 at depth 20
    full = ranking_tokens(eff.load_teacher(spec, "transformers").backend.tokenizer, 10)
    for _, n, params in fake.calls:
        assert n == 1 and params.temperature == 0 and params.max_tokens == params.min_tokens == full
        assert params.detokenize is False  # the backend decodes the answer itself
    for r in ref["rows"]:  # the same windows and forced answers; the same prompt, token for token, for one window
        # (later windows hold the passages that the earlier answers put on top, and the two answer differently)
        assert rows[r["depth"]]["windows"] == r["windows"]
        assert rows[r["depth"]]["generated_tokens"] == r["generated_tokens"] == r["windows"] * full
    assert rows[10]["prompt_tokens"] == ref["rows"][0]["prompt_tokens"]
    # memory: weights + the KV cache of the longest window, not what the engine reserves
    assert model["params"] == ref["model"]["params"]
    assert model["weights_mb"] == pytest.approx(model["params"] * 4 / 2**20)  # float32 on this CPU
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_teacher)
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    longest = max(r["max_window_tokens"] for r in result["rows"])
    assert model["kv_cache_mb"] == pytest.approx(math.ceil(longest / 16) * 16 * per_token / 2**20)
    assert model["model_mb"] == model["peak_mb"] == pytest.approx(model["weights_mb"] + model["kv_cache_mb"])
    assert model["engine_mb"] is None and "KV cache" in model["memory"]  # no GPU here to read the engine's share
    assert [rec["depth"] for rec in result["records"]] == [10, 20]


@pytest.mark.slow
def test_vllm_engine_of_the_gpu_profile_offline(tmp_path, monkeypatch, data_dir):
    """The gpu profile's teacher on vLLM without the hub: Mistral-7B's config, dummy weights, token-id prompts."""
    import sys
    import types

    class Engine(FakeTokensVLLM):
        made = []

        def __init__(self, model, **kwargs):
            super().__init__()
            self.model, self.kwargs = model, kwargs
            Engine.made.append(self)

    fake = types.ModuleType("vllm")
    from rank_distillm.teacher.backends import _GreedySampling

    fake.LLM, fake.SamplingParams = Engine, _GreedySampling
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    from rank_distillm.profiles import load_profile

    spec = {**load_profile("gpu")["efficiency"]["teacher"], "backend": "vllm", "device": "cpu", "max_words": 20}
    result = eff.measure("teacher", spec, _candidates(1), [10], warmup=0)
    (engine,) = Engine.made
    assert Path(engine.model, "config.json").exists()
    assert engine.kwargs["load_format"] == "dummy" and engine.kwargs["skip_tokenizer_init"]
    assert engine.kwargs["dtype"] == "bfloat16" and engine.kwargs["max_model_len"] == 4096
    assert engine.kwargs["gpu_memory_utilization"] == 0.9 and engine.kwargs["enable_prefix_caching"] is False
    (_, _, params), = engine.calls
    assert params.detokenize is False and params.min_tokens == params.max_tokens > 10
    model = result["model"]
    assert model["params"] == pytest.approx(cm.SHAPES["RankZephyr-7B (Mistral-7B)"].params, rel=0.005)
    assert model["weights_mb"] == pytest.approx(model["params"] * 2 / 2**20)  # bf16
    tokens = result["rows"][0]["max_window_tokens"]
    assert model["kv_cache_mb"] == pytest.approx(math.ceil(tokens / 16) * 16 * 2 * 32 * 8 * 128 * 2 / 2**20)


def test_vllm_missing_is_a_clear_error_in_the_harness(tiny_teacher):
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="vllm backend needs vLLM"):
            eff.load_teacher({**_teacher_spec(tiny_teacher), "backend": "vllm"}, "vllm")
    else:  # pragma: no cover - on a GPU machine with vLLM
        pytest.skip("vLLM is installed")


# --------------------------------------------------------------------------- resumable rows


def _tiny_profile(tiny_student, tiny_teacher):
    from rank_distillm.profiles import load_profile

    P = load_profile("smoke")["efficiency"]
    return {**P, "student": _student_spec(tiny_student), "teacher": _teacher_spec(tiny_teacher), "warmup": 0,
            "student_depths": [5, 10, 20], "teacher_depths": [10], "student_backends": ["torch"], "variants": []}


class Interrupted(Exception):
    pass


def _in_process(calls, stop_after=None):
    """measure_in_subprocess, run in this process; ``stop_after`` rows written in all, then an interruption."""
    written = []

    def fake(kind, spec, qs, depths, repeats=1, warmup=1, backend=None, timeout=None, out=None, quality=None,
             quality_depth=None):
        calls.append((kind, list(depths)))

        def on_record(rec):
            if stop_after is not None and len(written) == stop_after:
                raise Interrupted(f"killed before the row of {rec['name']} at depth {rec['depth']} was written")
            eff.append_bench_row(out, rec)
            written.append(eff.bench_key(rec))

        return eff.measure(kind, spec, qs, depths, repeats, warmup, backend, on_record=on_record if out else None,
                           quality=quality, quality_depth=quality_depth)

    return fake


def test_an_interrupted_benchmark_resumes_where_it_stopped(tiny_student, tiny_teacher, tmp_path, data_dir,
                                                             monkeypatch):
    P = _tiny_profile(tiny_student, tiny_teacher)
    full_file, rows_file = tmp_path / "full.jsonl", tmp_path / "rows.jsonl"
    calls = []
    monkeypatch.setattr(report, "measure_in_subprocess", _in_process(calls))
    full = eff.run_bench(P, out=full_file, log=lambda m: None)
    full_keys = [eff.bench_key(r) for r in eff.read_bench_rows(full_file)]
    assert len(full_keys) == 3 + 1 and calls == [("student", [5, 10, 20]), ("teacher", [10])]

    # interrupted after two rows (the student at depths 5 and 10), in the middle of writing the third
    calls.clear()
    monkeypatch.setattr(report, "measure_in_subprocess", _in_process(calls, stop_after=2))
    with pytest.raises(Interrupted):
        eff.run_bench(P, out=rows_file)
    with open(rows_file, "a") as f:
        f.write('{"name": "tiny-student", "kind": "student", "backend": "torch", "dep')  # a half-written line
    assert len(eff.read_bench_rows(rows_file, repair_tail=False)) == 2

    calls.clear()
    monkeypatch.setattr(report, "measure_in_subprocess", _in_process(calls))
    resumed = eff.run_bench(P, out=rows_file, log=lambda m: None)
    assert calls == [("student", [20]), ("teacher", [10])]  # only what was missing
    text = rows_file.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    keys = [eff.bench_key(r) for r in eff.read_bench_rows(rows_file)]
    assert sorted(keys) == sorted(full_keys) and len(set(keys)) == len(keys)
    # the same result as the uninterrupted run, timings aside
    ids = lambda result: [(r["name"], r["depth"], r["qid"]) for r in result["rows"]]  # noqa: E731
    assert ids(resumed) == ids(full)
    assert [(s["name"], s["depth"]) for s in resumed["summary"]] == [(s["name"], s["depth"]) for s in full["summary"]]
    assert [m["depths"] for m in resumed["models"]] == [m["depths"] for m in full["models"]] == [[5, 10, 20], [10]]
    assert resumed["ratios"][0]["depth"] == 10 and resumed["ratios"][0]["memory_ratio"] > 0

    # all there: nothing is measured again
    calls.clear()
    again = eff.run_bench(P, out=rows_file, log=lambda m: None)
    assert calls == [] and len(again["rows"]) == len(resumed["rows"])
    assert rows_file.read_text() == text


def test_a_damaged_rows_file_is_an_error_naming_file_and_line(tiny_student, tiny_teacher, tmp_path, data_dir,
                                                             monkeypatch):
    P = _tiny_profile(tiny_student, tiny_teacher)
    good = {"name": "tiny-student", "kind": "student", "backend": "torch", "device": "cpu", "depth": 5,
            "model": {}, "rows": []}
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "depth": 10}) + "\n")
    monkeypatch.setattr(report, "measure_in_subprocess", lambda *a, **k: pytest.fail("measured despite a damaged file"))
    with pytest.raises(DataError, match=r"rows.jsonl line 2: not valid JSON"):
        eff.run_bench(P, out=rows_file)
    rows_file.write_text(json.dumps(good) + "\n" + json.dumps({**good, "depth": 10}) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match=r"rows.jsonl line 3: .* twice \(first on line 1\)"):
        eff.read_bench_rows(rows_file)
    rows_file.write_text(json.dumps({"name": "x"}) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match=r"line 1: benchmark record lacks field"):
        eff.read_bench_rows(rows_file)


def test_ratios_are_the_ratios_of_the_parts():
    rows = [
        {"name": "s", "kind": "student", "backend": "torch", "depth": 10, "qid": "a", "seconds": 0.5, "pairs": 10},
        {"name": "s", "kind": "student", "backend": "torch", "depth": 10, "qid": "b", "seconds": 1.5, "pairs": 10},
        {"name": "t", "kind": "teacher", "backend": "transformers", "depth": 10, "qid": "a", "seconds": 30.0, "pairs": 10},
        {"name": "s", "kind": "student", "backend": "torch", "depth": 20, "qid": "a", "seconds": 2.0, "pairs": 20},
    ]
    models = [{"name": "s", "backend": "torch", "params": 1, "peak_mb": 300.0, "model_mb": 100.0},
              {"name": "t", "backend": "transformers", "params": 2, "peak_mb": 900.0, "model_mb": 700.0}]
    r = eff.ratios(eff.summarise(rows, models))
    assert list(r["depth"]) == [10]  # only depths both were timed at
    row = r.iloc[0]
    assert row["student_s"] == 1.0 and row["speedup"] == 30.0
    assert row["throughput_ratio"] == pytest.approx((20 / 2.0) / (10 / 30.0))
    assert row["memory_ratio"] == 7.0 and row["peak_ratio"] == 3.0


def test_offline_hub_student_is_built_from_its_config(tmp_path, monkeypatch):
    """No hub: ELECTRA-base's architecture with random weights, the size the cost model assumes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RANK_DISTILLM_CACHE", str(tmp_path))
    spec = {"model": "google/electra-base-discriminator", "from_config": "electra-base", "max_length": 32, "device": "cpu"}
    assert eff.use_config(spec) and not eff.use_config({**spec, "from_config": None})
    model = eff.load_cross_encoder(spec)
    assert model.model.config.model_type == "electra"
    assert eff.count_parameters(model) == pytest.approx(cm.SHAPES["ELECTRA-base"].params, rel=0.01)
    assert model.predict([("a query", "a passage")]).shape == (1,)


def test_unknown_kind_and_architecture():
    with pytest.raises(ValueError, match="kind"):
        eff.measure("oracle", {}, _candidates(1), [10])
    from rank_distillm.models import build_from_config

    with pytest.raises(ValueError, match="unknown architecture"):
        build_from_config("gpt-5", "teacher")
    with pytest.raises(ValueError, match="unknown architecture 'electra-base' for the teacher"):
        build_from_config("electra-base", "teacher")


@pytest.mark.slow
def test_bench_cli_json_with_tiny_models(tiny_student, tiny_teacher, tmp_path, data_dir, capsys):
    """The whole benchmark through the CLI, each model in its own subprocess."""
    import yaml

    from rank_distillm import cli

    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump({"base": "smoke", "efficiency": {
        "student": _student_spec(tiny_student), "teacher": _teacher_spec(tiny_teacher),
        "student_depths": [5, 10], "teacher_depths": [10], "student_backends": ["torch"], "variants": [],
    }}))
    rows_file = tmp_path / "rows.jsonl"
    assert cli.main(["bench", "--profile", str(profile), "--json", "--out", str(rows_file)]) == 0
    text = capsys.readouterr().out

    def no_nan(name):
        raise AssertionError(f"--json printed {name}: not JSON")

    out = json.loads(text, parse_constant=no_nan)  # strict JSON: a field that does not apply is null
    student_row = next(s for s in out["summary"] if s["kind"] == "student")
    assert student_row["windows"] is None and student_row["generated_tokens"] is None
    written = eff.read_bench_rows(rows_file)  # written by the measuring subprocesses, one line per depth
    assert [(r["kind"], r["depth"]) for r in written] == [("student", 5), ("student", 10), ("teacher", 10)]
    assert cli.main(["bench", "--profile", str(profile), "--json", "--out", str(rows_file)]) == 0  # resumes: all there
    again = json.loads(capsys.readouterr().out)
    assert again["rows"] == out["rows"] and len(eff.read_bench_rows(rows_file)) == 3
    assert {m["kind"] for m in out["models"]} == {"student", "teacher"}
    for m in out["models"]:
        assert m["peak_mb"] > 0 and m["model_mb"] > 0 and m["params"] > 0
    (ratio,) = out["ratios"]
    summary = {(s["kind"], s["depth"]): s for s in out["summary"]}
    assert ratio["depth"] == 10
    assert ratio["speedup"] == pytest.approx(summary["teacher", 10]["median_s"] / summary["student", 10]["median_s"])
    assert ratio["memory_ratio"] == pytest.approx(summary["teacher", 10]["model_mb"] / summary["student", 10]["model_mb"])
    assert out["paper"]["speedup"] == 173 and out["paper"]["memory_ratio"] == 24
    assert summary["teacher", 10]["generated_tokens"] > 0


def test_bench_cli_rejects_a_bad_depth(capsys):
    from rank_distillm import cli

    assert cli.main(["bench", "--profile", "smoke", "--depth", "0"]) == 2
    assert "depth" in capsys.readouterr().err


# --------------------------------------------------------------------------- faster students


def _pairs():
    from rank_distillm.data import load_candidates

    (c,) = load_candidates("msmarco-passage/trec-dl-2019/judged", eff_profile()["first_stage"], depth=16, max_queries=1)
    return [(c.query, t) for t in c.texts]


def eff_profile():
    from rank_distillm.profiles import load_profile

    return load_profile("smoke")["efficiency"]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino", "onnx-int8-noarena", "openvino-bf16",
                                     "onnx-int8-static", "openvino-int8"])
def test_exported_student_scores_close_to_torch(backend, minilm_path, data_dir, onnx_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
    if backend == "openvino-int8":
        pytest.importorskip("nncf")
    monkeypatch.setattr(student_runtimes, "onnx_folder", lambda path: onnx_dir)
    spec = {**_student_spec(minilm_path), "max_length": 128, "calibration": eff_profile()["student"]["calibration"]}
    pairs = _pairs()
    torch_predict, _ = eff.student_scorer(spec, "torch")
    fast_predict, fast = eff.student_scorer(spec, backend)
    ref, got = np.asarray(torch_predict(pairs)), np.asarray(fast_predict(pairs))
    assert got.shape == ref.shape == (16,)
    assert fast.params == pytest.approx(22.7e6, rel=0.01)
    if backend.endswith("-noarena"):
        assert fast.session_options.enable_cpu_mem_arena is False
    elif backend.startswith("onnx"):
        assert fast.session_options.enable_cpu_mem_arena is True  # ONNX Runtime's default
    if eff.compute_dtype(backend) != "float32":
        # int8 weights, bf16 products: close, not equal; the scores keep their spread relative to the error
        assert np.abs(got - ref).max() < 0.05
        assert not np.allclose(got, ref, atol=1e-6)
    else:
        np.testing.assert_allclose(got, ref, atol=2e-3)
    if backend in ("onnx-int8-static", "openvino-int8"):  # calibrated: the training year's pairs, noted beside the graph
        assert json.loads((onnx_dir / f"calibration-{backend}.json").read_text())["dataset"].endswith("trec-dl-2020/judged")


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_split_student_adds_the_passage_prefix(backend, minilm_path, data_dir, tmp_path, monkeypatch):
    """A separate_layers student tokenizes the passage with its own [CLS]; the exported graph's scorer must too."""
    pytest.importorskip("onnxruntime")
    if backend == "openvino":
        pytest.importorskip("openvino")
    from rank_distillm.student import build_student

    build_student(minilm_path, head="segment-cosine", max_length=128, separate_layers=5).save_pretrained(str(tmp_path / "split"))
    monkeypatch.setattr(student_runtimes, "onnx_folder", lambda path: tmp_path / "graphs")
    spec = {**_student_spec(str(tmp_path / "split")), "max_length": 128}
    pairs = _pairs()
    torch_predict, _ = eff.student_scorer(spec, "torch")
    fast_predict, fast = eff.student_scorer(spec, backend)
    assert fast.passage_prefix == "[CLS] "
    ref = np.asarray(torch_predict(pairs))
    # OpenVINO may compute in bf16 on a CPU that has it: relative, not absolute, agreement
    np.testing.assert_allclose(np.asarray(fast_predict(pairs)), ref, **({"rtol": 2e-3} if backend == "openvino" else {"atol": 2e-3}))
    fast.passage_prefix = ""  # without it the graph scores other inputs
    assert np.abs(np.asarray(fast_predict(pairs)) - ref).max() > 0.05


def test_teacher_comparison_puts_the_measured_student_against_the_estimated_teacher():
    """This CPU: the student's measured seconds and MiB against the 7B teacher's cost-model estimate at the measured peak;
    the GPU row: both from the cost model. A faster measured peak makes the teacher's estimate, and the speed-up, smaller."""
    from rank_distillm.efficiency.tradeoff import estimated_llm_seconds, teacher_comparison

    limits = {"matmul_ops_per_s": {"float32": 2e11, "bfloat16": None}, "bytes_per_s": 2e10, "threads": 2, "cpu": "test CPU"}
    teacher, student = cm.SHAPES["RankZephyr-7B (Mistral-7B)"], cm.SHAPES["MiniLM-L6 (all-MiniLM-L6-v2)"]
    w = cm.Workload(depth=100)
    gpu = cm.Roofline(cm.Hardware.from_datasheet({"name": "A100", "bf16_tflops": 312, "memory_bandwidth_gbs": 2039}), 0.5, 1)
    table = teacher_comparison(limits, teacher, w, student_seconds=0.8, student_mb=300.0, gpu=gpu, student=student)
    cpu = table.loc["this CPU"]
    assert cpu["teacher s"] == pytest.approx(estimated_llm_seconds(limits, teacher, w))
    assert cpu["speed-up"] == pytest.approx(cpu["teacher s"] / 0.8) and cpu["memory ratio"] == pytest.approx(cpu["teacher MiB"] / 300)
    assert cpu["teacher MiB"] > 13_000  # 7B weights in bf16 alone are 13.5 GiB
    row = table.loc["GPU"]
    assert row["speed-up"] == pytest.approx(cm.compare(student, teacher, w, gpu)["time_ratio"])
    assert list(table["FLOP ratio"]) == pytest.approx([cm.compare(student, teacher, w, gpu)["flops_ratio"]] * 2)
    faster = teacher_comparison({**limits, "matmul_ops_per_s": {"float32": 4e11}, "bytes_per_s": 4e10}, teacher, w, 0.8, 300.0, gpu,
                                student)
    assert faster.loc["this CPU", "speed-up"] < cpu["speed-up"]
