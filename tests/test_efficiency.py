"""Efficiency: the harness on tiny models, the cost model against hand-computed FLOPs,
the exported / quantised student against the PyTorch one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rank_distillm import cost_model as cm
from rank_distillm import efficiency as eff
from rank_distillm.data import Candidates

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
    before = eff.peak_rss_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert eff.peak_rss_mb() >= before + 60 or eff.peak_rss_mb() >= eff.rss_mb() >= 60
    del block
    assert eff.reset_peak_rss()
    assert eff.peak_rss_mb() < eff.rss_mb() + 30  # the 64 MiB block no longer counts


# --------------------------------------------------------------------------- cost model


def test_windows_match_the_teachers_schedule():
    from rank_distillm.teacher import window_schedule

    for depth in (2, 10, 20, 21, 30, 50, 95, 100):
        for window, stride in ((20, 10), (10, 5), (4, 2)):
            assert cm.windows(depth, window, stride) == len(window_schedule(depth, window, stride, depth)), (depth, window, stride)
    assert cm.windows(100) == 9 and cm.windows(20) == 1 and cm.windows(1) == 0


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
    small = cm.compare(cm.SHAPES["ELECTRA-base"], cm.SHAPES["SmolLM2-135M"])
    big = cm.compare(cm.SHAPES["ELECTRA-base"], cm.SHAPES["RankZephyr-7B (Mistral-7B)"])
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
    backend = eff.load_teacher(spec)
    by_depth = {r["depth"]: r for r in result["rows"]}
    assert by_depth[10]["windows"] == cm.windows(10, 10, 5) == 1
    assert by_depth[20]["windows"] == cm.windows(20, 10, 5) == 3
    full = eff.ranking_tokens(backend.tokenizer, 10)
    assert full >= 10 * 3  # "[1] > [2] > ..." is several tokens per id
    assert by_depth[20]["generated_tokens"] == 3 * full  # forced: a full ranking per window
    assert by_depth[20]["prompt_tokens"] > 2 * by_depth[10]["prompt_tokens"]
    assert all(r["seconds"] > 0 for r in result["rows"])


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
    assert eff._use_config(spec) and not eff._use_config({**spec, "from_config": None})
    model = eff.load_student(spec)
    assert model.model.config.model_type == "electra"
    assert eff.count_parameters(model) == pytest.approx(cm.SHAPES["ELECTRA-base"].params, rel=0.01)
    assert model.predict([("a query", "a passage")]).shape == (1,)


def test_unknown_kind_and_architecture():
    with pytest.raises(ValueError, match="kind"):
        eff.measure("oracle", {}, _candidates(1), [10])
    with pytest.raises(ValueError, match="unknown architecture"):
        eff.build_from_config("gpt-5", "teacher")


@pytest.mark.slow
def test_bench_cli_json_with_tiny_models(tiny_student, tiny_teacher, tmp_path, data_dir, capsys):
    """The whole benchmark through the CLI, each model in its own subprocess."""
    import yaml

    from rank_distillm import cli

    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump({"base": "smoke", "efficiency": {
        "student": _student_spec(tiny_student), "teacher": _teacher_spec(tiny_teacher),
        "student_depths": [5, 10], "teacher_depths": [10], "student_backends": ["torch"],
    }}))
    assert cli.main(["bench", "--profile", str(profile), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
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


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino"])
def test_exported_student_scores_close_to_torch(backend, minilm_path, data_dir, onnx_dir, monkeypatch):
    pytest.importorskip("onnxruntime")
    if backend == "openvino":
        pytest.importorskip("openvino")
    monkeypatch.setattr(eff, "onnx_folder", lambda path: onnx_dir)
    spec = {**_student_spec(minilm_path), "max_length": 128}
    pairs = _pairs()
    torch_predict, _ = eff.student_scorer(spec, "torch")
    fast_predict, fast = eff.student_scorer(spec, backend)
    ref, got = np.asarray(torch_predict(pairs)), np.asarray(fast_predict(pairs))
    assert got.shape == ref.shape == (16,)
    assert fast.params == pytest.approx(22.7e6, rel=0.01)
    if backend == "onnx-int8":
        # int8 weights: close, not equal; the scores keep their spread relative to the error
        assert np.abs(got - ref).max() < 0.05
        assert not np.allclose(got, ref, atol=1e-6)
    else:
        np.testing.assert_allclose(got, ref, atol=2e-3)
