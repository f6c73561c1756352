"""The hardware's measured limits: how fast this machine multiplies matrices, and how fast it moves memory.

A benchmark says how fast a model runs; only against the machine's own limit does it say how
much faster it *could* run. Two micro-benchmarks give that limit (the roofline's two sides,
Williams et al., 2009):

- :func:`matmul_peak`: the best rate of one large square matrix product ``C = A B``
  (``n x n``, ``2 n^3`` operations) on all cores, in the precision a runtime computes in:
  ``float32`` and ``bfloat16`` through ``torch.mm`` (oneDNN; bf16 only where the CPU computes
  it natively: AVX512-BF16 or AMX), ``int8`` through ONNX Runtime's ``MatMulInteger`` on
  ``uint8 x int8`` (the kernel its int8 students use; VNNI or AMX where the CPU has them).
  Nothing a model does runs faster than this: its share of this peak says how much of the
  machine a runtime uses.
- :func:`memory_bandwidth`: the best rate of copying a buffer much larger than the caches
  (``bytes`` read plus ``bytes`` written). An LLM's decoding reads every weight once per
  generated token, so its speed is bound by this, not by arithmetic.

:func:`measure_limits` runs both; :func:`hardware` turns the result into a
:class:`rank_distillm.cost_model.Hardware`, so that the one roofline of the cost model can
time a job on this machine. The best of several repeats is kept (a limit is a best case;
other load on the machine only lowers it).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

from ..cost_model import Hardware

MATMUL_DTYPES = ("float32", "bfloat16", "int8")


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: first-call allocations, kernel selection, page faults
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX; oneDNN's own check)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _int8_matmul(n: int, threads: int) -> Callable[[], object]:
    """ONNX Runtime's ``MatMulInteger`` on a ``uint8`` activation and an ``int8`` weight, as a runnable."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["C"])], "int8_matmul",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.INT32, [n, n])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    return lambda: session.run(None, {"A": a})


def matmul_peak(dtype: str = "float32", n: int = 2048, repeats: int = 5, threads: int | None = None) -> float | None:
    """Operations per second of an ``n x n`` matrix product in ``dtype`` on ``threads`` cores (default: all).

    ``2 n^3`` operations over the best of ``repeats`` timed runs. ``bfloat16`` gives ``None``
    on a CPU that would only emulate it.
    """
    if dtype not in MATMUL_DTYPES:
        raise ValueError(f"matmul_peak: dtype {dtype!r} is none of {MATMUL_DTYPES}")
    import torch

    threads = threads or os.cpu_count() or 1
    if dtype == "int8":
        run = _int8_matmul(n, threads)
    else:
        if dtype == "bfloat16" and not bf16_native():
            return None
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
        b = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
        run = lambda: torch.mm(a, b)  # noqa: E731
    try:
        seconds = _best_seconds(run, repeats)
    finally:
        if dtype != "int8":
            torch.set_num_threads(before)
    return 2 * n**3 / seconds


def memory_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second of copying a ``mib`` MiB buffer into another (read + write counted), best of ``repeats``."""
    import numpy as np

    src = np.ones(mib * 2**20 // 4, dtype=np.float32)
    dst = np.zeros_like(src)  # both touched before timing: no page faults in the timed copies
    return 2 * src.nbytes / _best_seconds(lambda: np.copyto(dst, src), repeats)


def measure_limits(dtypes: Sequence[str] = MATMUL_DTYPES, n: int = 2048, repeats: int = 5, copy_mib: int = 512) -> dict:
    """This machine's limits: ``{"matmul_ops_per_s": {dtype: ops/s or None}, "bytes_per_s", "threads", "cpu"}``."""
    peaks = {d: matmul_peak(d, n, repeats) for d in dtypes}
    return {"matmul_ops_per_s": peaks, "bytes_per_s": memory_bandwidth(copy_mib, repeats),
            "threads": os.cpu_count() or 1, "cpu": cpu_name(), "matmul_n": n, "copy_mib": copy_mib}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def hardware(limits: dict, dtype: str = "float32") -> Hardware:
    """The measured limits as a cost-model :class:`~rank_distillm.cost_model.Hardware` (peak of ``dtype``)."""
    peak = limits["matmul_ops_per_s"].get(dtype)
    if peak is None:
        raise ValueError(f"no measured {dtype} peak on this machine (measured: {sorted(limits['matmul_ops_per_s'])})")
    return Hardware(f"{limits['cpu']} ({limits['threads']} cores, measured, {dtype})", peak, limits["bytes_per_s"])



def limits_table(limits: dict) -> "pd.DataFrame":  # noqa: F821
    """The measured limits as a table: one row per limit, its value and unit."""
    import pandas as pd

    rows = [{"limit": f"matrix multiply ({dtype})", "measured": (v / 1e9 if v else None),
             "unit": "GOP/s" if dtype == "int8" else "GFLOP/s",
             "how": "ONNX Runtime MatMulInteger, uint8 x int8" if dtype == "int8" else "torch.mm"}
            for dtype, v in limits["matmul_ops_per_s"].items()]
    rows.append({"limit": "memory copy", "measured": limits["bytes_per_s"] / 1e9, "unit": "GB/s",
                 "how": f"numpy copy of {limits['copy_mib']} MiB (read + write)"})
    return pd.DataFrame(rows).set_index("limit")
