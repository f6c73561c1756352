"""The student's variants: the machine's limits, length-sorted batches, the precomputed passage states
on DL19, the quality pass of the harness, the variant table and the teacher's phases."""

from __future__ import annotations

import numpy as np
import pytest

from rank_distillm import cost_model as cm
from rank_distillm import data
from rank_distillm import efficiency as eff
from rank_distillm.data import Run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- limits


def test_limits_are_measured_and_become_hardware():
    peak = eff.matmul_peak("float32", n=256, repeats=1, threads=1)
    assert 1e9 < peak < 1e14  # any CPU of this century, one core
    assert eff.memory_bandwidth(mib=16, repeats=1) > 1e8
    with pytest.raises(ValueError, match="dtype 'float16'"):
        eff.matmul_peak("float16")
    limits = eff.measure_limits(dtypes=("float32", "int8"), n=128, repeats=1, copy_mib=8)
    assert limits["matmul_ops_per_s"]["int8"] > 0 and limits["threads"] >= 1
    hw = eff.hardware(limits, "float32")
    assert hw.flops_per_s == limits["matmul_ops_per_s"]["float32"] and hw.bytes_per_s == limits["bytes_per_s"]
    with pytest.raises(ValueError, match="no measured bfloat16 peak"):
        eff.hardware(limits, "bfloat16")
    table = eff.limits_table(limits)
    assert list(table["unit"]) == ["GFLOP/s", "GOP/s", "GB/s"]


# --------------------------------------------------------------------------- the cost model at measured lengths


def test_pair_flops_at_measured_lengths():
    s = cm.SHAPES["MiniLM-L6 (all-MiniLM-L6-v2)"]
    one = cm.encoder_cost(s, cm.Workload(depth=1, query_tokens=7, passage_tokens=80))["flops"]
    assert cm.encoder_pair_flops(s, [90]) == pytest.approx(one)  # 7 + 80 + 3 special tokens
    mixed = cm.encoder_pair_flops(s, [50, 130])
    assert mixed == pytest.approx((cm.encoder_pair_flops(s, [50]) + cm.encoder_pair_flops(s, [130])) / 2)
    assert mixed > cm.encoder_pair_flops(s, [90])  # attention grows with the square of the length
    assert cm.encoder_pair_flops(s, [90], layers=1) == pytest.approx(one / s.layers)
    with pytest.raises(ValueError, match="layers: 7"):
        cm.encoder_pair_flops(s, [90], layers=7)
    # the decoding step: all weights and the cache so far, per token
    t = cm.SHAPES["SmolLM2-135M"].with_bytes(4)
    step = cm.llm_decode_step(t, 1000)
    assert step["bytes"] == pytest.approx(t.params * 4 + 1000 * t.kv_bytes_per_token)


def test_teacher_phases_against_the_limits():
    t = cm.SHAPES["SmolLM2-135M"].with_bytes(4)
    limits = {"matmul_ops_per_s": {"float32": 1e11}, "bytes_per_s": 1e10}
    phases = {"prompt_tokens": 1000, "new_tokens": 33, "prefill_s": 2.0, "decode_s_per_token": 0.1}
    table = eff.teacher_phases(phases, t, limits)
    prefill, decode = table.iloc[0], table.iloc[1]
    assert prefill["share of peak"] == pytest.approx(cm.llm_prefill_flops(t, 1000) / 2.0 / 1e11)
    assert decode["GB/s"] == pytest.approx(cm.llm_decode_step(t, 1000 + 33 / 2)["bytes"] / 0.1 / 1e9)
    assert decode["share of peak"] == pytest.approx(decode["GB/s"] * 1e9 / 1e10)


# --------------------------------------------------------------------------- length-sorted batches


class _Echo:
    """A graph stand-in: the score of a pair is its number of real tokens."""

    def __call__(self, feeds):
        return feeds["attention_mask"].sum(1).astype(np.float32)


def test_graph_batches_are_sorted_by_length_and_padded_to_their_own_longest(minilm_path):
    from transformers import AutoTokenizer

    student = eff.OnnxStudent.__new__(eff.OnnxStudent)
    student.tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    student.max_length, student.passage_prefix = 64, ""
    student.input_names = ["input_ids", "attention_mask", "token_type_ids"]
    student._run = _Echo()
    pairs = [("q", "word " * n) for n in (3, 40, 1, 20, 80, 5, 2, 30)]
    feeds, order = student.batches(pairs, batch_size=3)
    lengths = [len(student.tokenizer("q", p)["input_ids"][:64]) for _, p in pairs]
    assert [f["input_ids"].shape[1] for f in feeds] == [max(lengths[i] for i in order[j:j + 3]) for j in (0, 3, 6)]
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    np.testing.assert_array_equal(student.predict(pairs, batch_size=3), lengths)  # back in the input order


# --------------------------------------------------------------------------- precomputed passage states


@pytest.fixture(scope="module")
def split_student(minilm_path):
    from rank_distillm.student import build_student

    return build_student(minilm_path, head="segment-cosine", max_length=128, separate_layers=5)


@pytest.mark.slow
def test_precomputed_states_score_like_the_student_on_dl19(split_student, data_dir):
    """Every DL19 query's BM25 top-10 (430 pairs): float32 states, indexed before the queries, score as the student."""
    data.setup_ir_datasets()
    cands = data.load_candidates(data.DL19, data_dir / "runs/trec-dl-2019/bm25.run", depth=10)
    assert len(cands) == 43
    pairs = [(c.query, t) for c in cands for t in c.texts]
    plain = np.asarray(split_student.predict(pairs, batch_size=32))
    fast = eff.PrecomputedStudent(split_student, "float32")
    figures = fast.index([t for c in cands for t in c.texts])
    assert figures["passages"] == len({d for c in cands for d in c.docids}) and figures["seconds"] > 0
    stored = len(fast.store)
    scores = fast.predict(pairs)
    assert np.abs(scores - plain).max() < 1e-3
    # at query time only the queries and the passages that a pair's truncation cuts shorter were added
    tok = split_student.tokenizer
    cut = {(q, p) for q, p in pairs if len(tok(q, "[CLS] " + p)["input_ids"]) > 128}
    assert 0 < len(cut) < len(pairs) / 2 and 43 < len(fast.store) - stored <= 43 + len(cut)  # (a cut may recur)


def test_storage_per_passage_and_extrapolation(split_student):
    passages = ["a short passage", "a somewhat longer passage about the cat that sat on the mat"]
    table = eff.storage(split_student, passages).set_index("dtype")
    tokens = eff.passage_tokens(split_student, passages)
    assert tokens == [len(split_student.tokenizer(p)["input_ids"]) for p in passages]  # [CLS] passage [SEP]
    assert table.loc["float32", "bytes_per_token"] == 4 * 384 and table.loc["int8", "bytes_per_token"] == 384 + 4
    assert table.loc["float16", "bytes"] == sum(tokens) * 2 * 384
    assert eff.corpus_bytes(table.loc["float16", "bytes_per_passage"]) == pytest.approx(
        np.mean(tokens) * 768 * eff.MSMARCO_PASSAGES)


# --------------------------------------------------------------------------- the harness's quality pass


def test_quality_pass_keeps_each_querys_scores(split_student, tmp_path):
    from tests.test_efficiency import _candidates

    split_student.save_pretrained(str(tmp_path / "split"))
    spec = {"name": "split", "model": str(tmp_path / "split"), "from_config": None, "max_length": 64, "batch_size": 8,
            "device": "cpu", "dtype": "float32", "states_dtype": "float32"}
    timed, quality = _candidates(1, 6), _candidates(2, 5)
    out = eff.measure("student", spec, timed, [3, 6], warmup=0, backend="precomputed", quality=quality, quality_depth=4)
    first, last = out["records"]
    assert "quality" not in first and last["quality"]["qids"] == ["q0", "q1"]
    assert [len(s) for s in last["quality"]["scores"]] == [4, 4] and len(last["quality"]["seconds"]) == 2
    assert [r for r in last["rows"] if r["repeat"] == 0][0]["scores"]  # the deepest rows keep their scores
    assert out["model"]["index_passages"] == 6 + 5 and out["model"]["states_dtype"] == "float32"
    pairs = [(quality[1].query, t) for t in quality[1].texts[:4]]
    np.testing.assert_allclose(last["quality"]["scores"][1], split_student.predict(pairs), atol=1e-4)


# --------------------------------------------------------------------------- the variant table


def _fake_result(bm25: Run, qids: list[str]) -> dict:
    """A benchmark result of three backends: torch (1 s), openvino exact (0.5 s), onnx-int8 reversed (0.25 s: BM25's order upside down)."""
    summary, rows, models = [], [], []
    for backend, seconds in (("torch", 1.0), ("openvino", 0.5), ("onnx-int8", 0.25)):
        summary.append({"name": "s", "kind": "student", "backend": backend, "depth": 100, "median_s": seconds,
                        "pairs_per_s": 100 / seconds})
        models.append({"name": "s", "kind": "student", "backend": backend, "model_mb": 100.0})
        docs = list(bm25[qids[0]])
        sign = -1 if backend == "onnx-int8" else 1
        rows.append({"kind": "student", "backend": backend, "depth": 100, "qid": qids[0], "repeat": 0,
                     "scores": [sign * bm25[qids[0]][d] for d in docs], "seconds": seconds, "pairs": len(docs)})
    quality = {b: {"depth": 100, "qids": qids, "seconds": [1.0] * len(qids),
                   "scores": [[(-1 if b == "onnx-int8" else 1) * bm25[q][d] for d in bm25[q]] for q in qids]}
               for b in ("openvino", "onnx-int8")}
    return {"summary": summary, "rows": rows, "models": models, "quality": quality}


def test_variant_table_measures_loss_speed_and_picks_the_fast_student(data_dir):
    data.setup_ir_datasets()
    cands = data.load_candidates(data.DL19, data_dir / "runs/trec-dl-2019/bm25.run", depth=100)
    bm25 = Run({c.qid: dict(zip(c.docids, c.scores or [100.0 - i for i in range(len(c))])) for c in cands})
    qids = [c.qid for c in cands]
    result = _fake_result(bm25, qids)
    s = cm.SHAPES["MiniLM-L6 (all-MiniLM-L6-v2)"]
    limits = {"matmul_ops_per_s": {"float32": 1e11, "int8": 4e11, "bfloat16": 2e11}, "bytes_per_s": 1e10}
    table = eff.variant_table(result, bm25, data.DL19, cands[:1], cands, s, [90] * 100, limits)
    assert table.attrs["fp32_ndcg10"] == pytest.approx(0.5058, abs=1e-4)  # BM25 on DL19, the data's reference figure
    assert table.loc["openvino", "nDCG@10 loss"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["openvino", "max score difference"] == 0.0
    assert table.loc["onnx-int8", "nDCG@10 loss"] > 0.2 and table.loc["onnx-int8", "p (paired t-test)"] < 0.01
    assert table.loc["openvino", "speed-up over CrossEncoder.predict"] == pytest.approx(2.0)
    assert table.loc["torch", "share of peak"] == pytest.approx(100 * cm.encoder_pair_flops(s, [90]) / 1e11)
    assert eff.fast_student(table, 0.005) == "openvino"  # reversed is faster, but loses too much
    assert eff.fast_student(table, 1.0) == "onnx-int8"
    assert eff.fast_student(table.drop(index="openvino"), 0.005) == "torch"  # nothing within the budget: the reference


# --------------------------------------------------------------------------- the teacher's two phases

from tests.test_efficiency import _teacher_spec, tiny_teacher  # noqa: E402,F401  (a fixture, used by name)


def test_time_phases_on_a_tiny_teacher(tiny_teacher):  # noqa: F811
    teacher = eff.load_teacher(_teacher_spec(tiny_teacher), "transformers")
    phases = eff.time_phases(teacher, "a passage about a cat " * 20, new_tokens=4)
    assert phases["prompt_tokens"] >= 100 and phases["new_tokens"] == 4
    assert phases["prefill_s"] > 0 and phases["decode_s_per_token"] >= 0
    assert eff.time_phases(teacher, "too short an answer", new_tokens=1) is None
