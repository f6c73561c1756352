"""Efficiency: latency, throughput and peak memory of a cross-encoder student and an LLM teacher.

The harness times the re-ranking of one query's top-``k`` (``k`` in the profile's depths),
the student and the teacher each in a process of its own. One module per job:

- :mod:`.specs`: a profile's ``student`` / ``teacher`` entry (model, device, ``from_config``);
- :mod:`.student_runtimes`: the student in PyTorch (``CrossEncoder.predict``), as an
  exported ONNX graph run by ONNX Runtime or OpenVINO (fp32, bf16, int8; ``-noarena``: ONNX
  Runtime's CPU memory arena off), or on precomputed passage states;
- :mod:`.quantize`: the int8 graphs (dynamic, static with calibration, NNCF);
- :mod:`.precomputed`: re-ranking on stored passage states, and what the store costs;
- :mod:`.teacher_engines`: the teacher on the book's own backends (``transformers`` or
  vLLM), every answer exactly as long as a complete ranking when the profile forces it;
- :mod:`.memory`: what a row's memory figures mean (peak RSS, CUDA allocator, or for vLLM
  the weights plus the KV cache used);
- :mod:`.harness`: :func:`measure` (in this process), :func:`measure_in_subprocess`, and
  the resumable JSONL rows of a benchmark;
- :mod:`.report`: :func:`run_bench` (the profile's benchmark), :func:`summarise`,
  :func:`ratios`;
- :mod:`.limits`: the machine's measured limits (matrix-multiply peak per precision, memory
  bandwidth);
- :mod:`.variants`: the student's variants side by side (speed, memory, nDCG@10 with a
  paired test, share of the peak) and the teacher's two phases against the limits;
- :mod:`.tradeoff`: every system's nDCG@10 against its seconds per query (measured here, or
  estimated by the cost model at this CPU's measured peak);
- :mod:`.cli`: ``rank-distillm bench``.

Devices, dtypes and the memory meters are :mod:`rank_distillm.devices`'; the cost model that
explains the ratios is :mod:`rank_distillm.cost_model`.
"""

from .cli import add_bench_arguments, bench_command
from .harness import (
    BENCH_ROW_FIELDS,
    append_bench_row,
    bench_key,
    combine_records,
    measure,
    measure_in_subprocess,
    read_bench_rows,
)
from .memory import KV_BLOCK, VLLM_MEMORY, ModelMemory
from .limits import bf16_native, hardware, limits_table, matmul_peak, measure_limits, memory_bandwidth
from .precomputed import MSMARCO_PASSAGES, PrecomputedStudent, corpus_bytes, passage_tokens, storage
from .report import (
    PAPER_MEMORY_RATIO,
    PAPER_SPEEDUP,
    LABELS,
    bench_candidates,
    quality_candidates,
    ratios,
    readable,
    run_bench,
    summarise,
)
from .specs import model_name, spec_device, student_under_test, use_config
from .student_runtimes import (
    GRAPHS,
    NOARENA,
    STUDENT_BACKENDS,
    OnnxStudent,
    compute_dtype,
    count_parameters,
    export_graph,
    graph_path,
    load_cross_encoder,
    onnx_folder,
    split_backend,
    student_scorer,
)
from .teacher_engines import (
    TEACHER_BACKENDS,
    LoadedTeacher,
    load_teacher,
    load_vllm_teacher,
    teacher_backend,
    teacher_tokenizer,
    time_phases,
    vllm_engine_args,
)
from .tradeoff import ESTIMATED, MEASURED, estimated_llm_seconds, seconds_per_query, teacher_comparison, tradeoff_table
from .variants import fast_student, quality_runs, teacher_phases, variant_table

__all__ = [
    "add_bench_arguments", "bench_command",
    "BENCH_ROW_FIELDS", "append_bench_row", "bench_key", "combine_records", "measure", "measure_in_subprocess",
    "read_bench_rows",
    "KV_BLOCK", "VLLM_MEMORY", "ModelMemory",
    "bf16_native", "hardware", "limits_table", "matmul_peak", "measure_limits", "memory_bandwidth",
    "MSMARCO_PASSAGES", "PrecomputedStudent", "corpus_bytes", "passage_tokens", "storage",
    "LABELS", "PAPER_MEMORY_RATIO", "PAPER_SPEEDUP", "bench_candidates", "quality_candidates", "ratios", "readable",
    "run_bench", "summarise",
    "model_name", "spec_device", "student_under_test", "use_config",
    "GRAPHS", "NOARENA", "STUDENT_BACKENDS", "OnnxStudent", "compute_dtype", "count_parameters", "export_graph",
    "graph_path",
    "load_cross_encoder", "onnx_folder", "split_backend", "student_scorer",
    "TEACHER_BACKENDS", "LoadedTeacher", "load_teacher", "load_vllm_teacher", "teacher_backend", "teacher_tokenizer",
    "time_phases", "vllm_engine_args",
    "ESTIMATED", "MEASURED", "estimated_llm_seconds", "seconds_per_query", "teacher_comparison", "tradeoff_table",
    "fast_student", "quality_runs", "teacher_phases", "variant_table",
]
