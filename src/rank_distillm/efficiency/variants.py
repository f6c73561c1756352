"""The student's variants side by side: speed, memory, effectiveness, and how much of the machine each uses.

From a benchmark's result (:func:`.report.run_bench`) and the fp32 student's re-ranking of the
same queries (the reference, e.g. :func:`rank_distillm.evaluation.rerank_cached`):

- :func:`variant_table`: one row per student backend at the deepest depth: seconds per
  query, pairs per second, speed-up over ``CrossEncoder.predict`` (the ``torch`` row) on the
  same queries, memory, the largest score difference from the fp32 student on the timed
  queries, and for the variants that re-ranked the quality queries nDCG@10, its difference
  from the fp32 student and a paired t-test (:func:`rank_distillm.evaluation.compare`, Holm);
  with the machine's measured limits (:mod:`.limits`), the FLOP rate each reaches and its
  share of the peak of the precision it computes in.
- :func:`teacher_phases`: the LLM's prefill against the FLOP peak and its decoding against
  the memory bandwidth.
- :func:`fast_student`: the fastest variant within a loss budget (nDCG@10 measured on every
  quality query, not the precomputed mode, which is reported on its own).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..cost_model import ModelShape, encoder_pair_flops, llm_decode_step, llm_prefill_flops
from ..data import Run
from .student_runtimes import compute_dtype

EXACT = 1e-3  # a variant whose scores stay this close to the fp32 student's re-ranks as it does


def quality_runs(quality: Mapping[str, dict], candidates: Sequence) -> dict[str, Run]:
    """``{backend: run}`` of the variants' quality passes (scores of each query's top-``depth``)."""
    by_qid = {c.qid: c for c in candidates}
    runs = {}
    for backend, q in quality.items():
        run = Run()
        for qid, scores in zip(q["qids"], q["scores"]):
            run[qid] = dict(zip(by_qid[qid].docids[: len(scores)], scores))
        runs[backend] = run
    return runs


def _max_difference(rows: Sequence[dict], candidates: Mapping[str, object], reference: Mapping[str, dict]) -> float | None:
    """Largest ``|score - reference score|`` over the rows that kept their scores (``None`` without any)."""
    worst = None
    for r in rows:
        if "scores" not in r or r["qid"] not in reference:
            continue
        ref = reference[r["qid"]]
        for docid, score in zip(candidates[r["qid"]].docids, r["scores"]):
            if docid in ref:
                worst = max(worst or 0.0, abs(score - ref[docid]))
    return worst


def variant_table(result: dict, reference: Run, dataset_id: str, timed: Sequence, quality: Sequence = (),
                  shape: ModelShape | None = None, tokens: Sequence[int] = (), limits: dict | None = None,
                  joint_layers: int | None = None, alpha: float = 0.05) -> "pd.DataFrame":  # noqa: F821
    """One row per student backend at the deepest depth (see the module docstring).

    ``reference``: the fp32 student's run over the quality queries; ``timed``: the candidates
    the benchmark timed (their scores are compared with the reference's); ``quality``: the
    quality queries' candidates. ``shape``, ``tokens`` (the timed pairs' token counts) and
    ``limits``: for FLOP rates and shares of the peak; ``joint_layers``: the layers the
    ``precomputed`` backend runs per pair.
    """
    import pandas as pd

    from ..evaluation import compare

    summary = pd.DataFrame(result["summary"])
    students = summary[summary["kind"] == "student"]
    depth = int(students["depth"].max())
    at = students[students["depth"] == depth].set_index("backend")
    models = {m["backend"]: m for m in result["models"] if m["kind"] == "student"}
    rows_by = {}
    for r in result["rows"]:
        if r["kind"] == "student" and r["depth"] == depth:
            rows_by.setdefault(r["backend"], []).append(r)
    timed_by = {c.qid: c for c in timed}
    runs = quality_runs(result.get("quality", {}), quality)
    tests = None
    if runs:
        tests = compare({"fp32": reference, **runs}, dataset_id, baseline="fp32", measures=["nDCG@10"],
                        qids=[c.qid for c in quality], alpha=alpha).table
    torch_s = at.loc["torch", "median_s"] if "torch" in at.index else None
    out = []
    for backend, row in at.iterrows():
        m = models.get(backend, {})
        line = {"backend": backend, "computes in": compute_dtype(backend), "depth": depth,
                "seconds per query": row["median_s"], "pairs per second": row["pairs_per_s"],
                "speed-up over CrossEncoder.predict": torch_s / row["median_s"] if torch_s else None,
                "memory (MiB)": m.get("model_mb"), "max score difference": _max_difference(rows_by.get(backend, []), timed_by, reference)}
        if shape is not None and len(tokens):
            layers = joint_layers if backend == "precomputed" else None
            flops = row["pairs_per_s"] * encoder_pair_flops(shape, tokens, layers)
            line["GFLOP/s"] = flops / 1e9
            if limits:
                peak = limits["matmul_ops_per_s"].get(line["computes in"])
                line["share of peak"] = flops / peak if peak else None
        if tests is not None and backend in tests.index:
            t = tests.loc[backend]
            line.update({"nDCG@10": t["nDCG@10"], "nDCG@10 loss": tests.loc["fp32", "nDCG@10"] - t["nDCG@10"],
                         "p (paired t-test)": t["p_holm"]})
        out.append(line)
    table = pd.DataFrame(out).set_index("backend")
    if tests is not None:
        table.attrs["fp32_ndcg10"] = float(tests.loc["fp32", "nDCG@10"])
        table.attrs["quality_queries"] = len(quality)
    return table


def fast_student(table: "pd.DataFrame", max_loss: float = 0.005) -> str:  # noqa: F821
    """The fastest backend whose nDCG@10 loss on the quality queries is at most ``max_loss``.

    Candidates: the variants whose nDCG@10 was measured on every quality query, and ``torch``
    itself (the reference, no loss), so that the answer is ``torch`` when no variant keeps
    within the budget. ``precomputed`` is reported on its own.
    """
    loss = table["nDCG@10 loss"] if "nDCG@10 loss" in table else None
    ok = table.index == "torch"
    if loss is not None:
        ok = ok | ((loss <= max_loss) & (table.index != "precomputed")).to_numpy()
    if not ok.any():
        raise ValueError("fast_student: the table has no torch row (the reference) and no variant within the budget")
    return str(table[ok]["seconds per query"].idxmin())


def teacher_phases(phases: dict, shape: ModelShape, limits: dict, dtype: str = "float32") -> "pd.DataFrame":  # noqa: F821
    """The LLM's prefill (FLOP/s against the matmul peak) and decoding (bytes/s against the copy bandwidth).

    ``phases``: :func:`.teacher_engines.time_phases`' figures; ``shape``: the teacher's, with the
    bytes per parameter it runs in (its weights are what every decoding step reads).
    """
    import pandas as pd

    prompt = phases["prompt_tokens"]
    prefill = llm_prefill_flops(shape, prompt) / phases["prefill_s"]
    step = llm_decode_step(shape, prompt + phases["new_tokens"] / 2)
    per_token = phases["decode_s_per_token"]
    # a few tokens after a long prompt can time at zero on a busy machine: no rate then
    decode_bytes = step["bytes"] / per_token if per_token > 0 else float("nan")
    decode_flops = step["flops"] / per_token if per_token > 0 else float("nan")
    peak, bandwidth = limits["matmul_ops_per_s"][dtype], limits["bytes_per_s"]
    return pd.DataFrame([
        {"phase": f"prefill ({prompt} prompt tokens)", "bound by": "arithmetic", "seconds": phases["prefill_s"],
         "GFLOP/s": prefill / 1e9, "GB/s": None, "share of peak": prefill / peak},
        {"phase": "decoding (per token)", "bound by": "memory bandwidth", "seconds": phases["decode_s_per_token"],
         "GFLOP/s": decode_flops / 1e9, "GB/s": decode_bytes / 1e9, "share of peak": decode_bytes / bandwidth},
    ]).set_index("phase")
