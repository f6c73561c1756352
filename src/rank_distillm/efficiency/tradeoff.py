"""Effectiveness against cost: every system of the book on one plot, nDCG@10 against seconds per query.

The re-rankers' effectiveness comes from their runs over the same queries (TREC DL 2019, the
BM25 top-100: the stored LLM runs, the students' and the zero-shot bi-encoder's re-rankings
of chapter 6); their cost is the seconds one query's top-100 takes **on this machine**:

- *measured* for the models that run here (the students' runtimes, the bi-encoder,
  SmolLM2's windows);
- *estimated* for the stored LLM runs, whose models cannot run here: the cost model's
  roofline (:mod:`rank_distillm.cost_model`) at this CPU's *measured* peak and bandwidth
  (:mod:`.limits`), for a model of their shape, all of the peak used (so an optimistic bound:
  a real run is slower).

BM25 is the first stage every system starts from: no re-ranking cost, a reference line.
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence

from ..cost_model import ModelShape, Roofline, Workload, llm_cost
from .limits import hardware

MEASURED = "measured on this CPU"
ESTIMATED = "estimated (cost model at this CPU's measured peak)"


def seconds_per_query(rerank, candidates: Sequence, depth: int) -> float:
    """Median seconds of ``rerank(candidates)`` over the queries, each query's top-``depth`` alone (after a warm-up)."""
    import statistics

    from ..data import Candidates

    cut = [Candidates(c.qid, c.query, c.docids[:depth], c.texts[:depth]) for c in candidates]
    rerank(cut[:1])
    times = []
    for c in cut:
        t0 = time.perf_counter()
        rerank([c])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def estimated_llm_seconds(limits: dict, shape: ModelShape, workload: Workload, dtype: str = "bfloat16") -> float:
    """Seconds of one query's sliding-window re-ranking by an LLM of ``shape`` on this CPU: the roofline at its measured peak.

    ``dtype``: the precision whose measured peak the prefill may reach (bf16 where native, else
    fp32); the weights are read at ``shape.bytes_per_param`` bytes each in every decoding step.
    """
    peaks = limits["matmul_ops_per_s"]
    dtype = dtype if peaks.get(dtype) else "float32"
    return Roofline(hardware(limits, dtype), utilisation=1.0, decode_batch=1).seconds(llm_cost(shape, workload))


def tradeoff_table(ndcg: Mapping[str, float], seconds: Mapping[str, tuple[float | None, str]],
                   kinds: Mapping[str, str]) -> "pd.DataFrame":  # noqa: F821
    """One row per system: ``nDCG@10``, ``seconds per query`` (``None``: not timed), how the cost was had, the kind of system."""
    import pandas as pd

    rows = []
    for name, value in ndcg.items():
        s, how = seconds.get(name, (None, "no re-ranking cost"))
        rows.append({"system": name, "kind": kinds.get(name, ""), "nDCG@10": value, "seconds per query": s, "cost": how})
    return pd.DataFrame(rows).set_index("system")


def teacher_comparison(limits: dict, teacher: ModelShape, workload: Workload, student_seconds: float, student_mb: float,
                       gpu: Roofline, student: ModelShape) -> "pd.DataFrame":  # noqa: F821
    """The student against the teacher that labelled its data, an LLM that cannot run here: two estimates.

    Row ``this CPU``: the student's *measured* seconds per query and memory (MiB) against the teacher's
    *estimated* ones (:func:`estimated_llm_seconds` at this CPU's measured peak; the cost model's weights,
    KV cache and activations). Row ``GPU``: both by the cost model on ``gpu`` (e.g. the scaling profile's
    A100). Columns: ``student s``, ``teacher s``, ``speed-up``, ``student MiB``, ``teacher MiB``,
    ``memory ratio``, ``how``, and ``FLOP ratio`` (arithmetic alone, the same on any hardware: the
    roofline's speed-up on a GPU ignores what a small student pays per batch, so the two bound it).
    """
    import pandas as pd

    from ..cost_model import encoder_cost

    t_cost = llm_cost(teacher, workload)
    s_cost = encoder_cost(student, workload)
    cpu_teacher_s = estimated_llm_seconds(limits, teacher, workload)
    rows = [
        {"where": "this CPU", "student s": student_seconds, "teacher s": cpu_teacher_s,
         "student MiB": student_mb, "teacher MiB": t_cost["memory_bytes"] / 2**20,
         "how": "student measured; teacher estimated at this CPU's measured peak"},
        {"where": "GPU", "student s": gpu.seconds(s_cost), "teacher s": gpu.seconds(t_cost),
         "student MiB": s_cost["memory_bytes"] / 2**20, "teacher MiB": t_cost["memory_bytes"] / 2**20,
         "how": f"both estimated by the cost model: {gpu.describe()}"},
    ]
    table = pd.DataFrame(rows).set_index("where")
    table.insert(2, "speed-up", table["teacher s"] / table["student s"])
    table.insert(5, "memory ratio", table["teacher MiB"] / table["student MiB"])
    table.insert(3, "FLOP ratio", t_cost["flops"] / s_cost["flops"])  # the same on any hardware: a lower estimate
    return table
