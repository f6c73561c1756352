"""Benchmark: the cross-encoder student against the listwise LLM teacher; prints figures.

    python benchmarks/bench_rerankers.py --profile cpu            # MiniLM vs SmolLM2-135M on this CPU
    python benchmarks/bench_rerankers.py --profile gpu            # ELECTRA-base vs RankZephyr-7B (Mistral-7B), bf16
    python benchmarks/bench_rerankers.py --profile smoke --depth 10 20 --out bench.json
    python benchmarks/bench_rerankers.py --profile gpu --rows gpu-rows.jsonl   # run again to resume

Each model runs in its own subprocess (peak RSS on CPU, torch.cuda.max_memory_allocated on
GPU; for a teacher on vLLM, weights + the KV cache it used, with the engine's reservation
beside it). The teacher runs on vLLM when the profile's teacher.backend says so (auto: when
vLLM is installed and there is a GPU). --rows writes each measured row (model, backend,
depth, device) to a JSONL file as it finishes; a rerun skips the rows already there.
Timings are only as quiet as the machine: run it alone. The paper's figures (up to
173x faster, 24x less memory; Schlatt et al., ECIR 2025) are printed beside ours, labelled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402

from rank_distillm import cost_model, efficiency, scaling  # noqa: E402
from rank_distillm.profiles import load_profile  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--depth", type=int, nargs="+", default=None)
    parser.add_argument("--out", default=None, help="also write the full result as JSON here")
    parser.add_argument("--rows", default=None, help="JSONL of measured rows, written as they finish; rerun to resume")
    args = parser.parse_args(argv)

    P = load_profile(args.profile)["efficiency"]
    result = efficiency.run_bench(P, args.depth, log=lambda m: print(m, file=sys.stderr), out=args.rows)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)

    models = pd.DataFrame(result["models"])
    print("== models (memory in MiB; model_mb = peak while re-ranking - runtime baseline)")
    cols = ["name", "backend", "device", "dtype", "params", "load_seconds", "baseline_mb", "peak_mb", "model_mb",
            "graph_mb", "weights_mb", "kv_cache_mb", "engine_mb"]
    print(models[[c for c in cols if c in models]].round(1).to_string(index=False))
    if "engine_mb" in models:
        print("(vLLM: model_mb = weights + KV cache used; engine_mb = GPU memory the engine holds, its reserved pool included)")
    summary = pd.DataFrame(result["summary"])
    print("\n== latency per query (seconds) and throughput (query-passage pairs per second)")
    cols = [c for c in ["name", "backend", "depth", "runs", "median_s", "p25_s", "p75_s", "pairs_per_s", "windows",
                        "prompt_tokens", "generated_tokens"] if c in summary]
    print(summary[cols].round(4).to_string(index=False))
    print("\n== teacher / student")
    print(pd.DataFrame(result["ratios"]).round(2).to_string(index=False))
    print(f"\nthe paper's (ELECTRA-base vs RankZephyr-7B, GPU; not measured here): up to "
          f"{efficiency.PAPER_SPEEDUP:.0f}x faster, {efficiency.PAPER_MEMORY_RATIO:.0f}x less memory")

    S = cost_model.SHAPES
    settings = load_profile(args.profile)["scaling"]
    roofline = scaling.roofline(settings, settings["gpu"], decode_batch=1)  # one query's latency
    print(f"\n== cost model, top-100 (FLOP ratio = a floor for the speed-up; time ratio = roofline: {roofline.describe()})")
    rows = [cost_model.compare(S[s], S[t], cost_model.Workload(), roofline) for s, t in [
        ("MiniLM-L6 (all-MiniLM-L6-v2)", "SmolLM2-135M"), ("ELECTRA-base", "RankZephyr-7B (Mistral-7B)"),
        ("MiniLM-L6 (all-MiniLM-L6-v2)", "RankZephyr-7B (Mistral-7B)"),
        ("ELECTRA-large", "70B-class LLM (RankGPT-size stand-in)")]]
    print(pd.DataFrame(rows)[["student", "teacher", "flops_ratio", "memory_ratio", "time_ratio"]].round(1).to_string(index=False))
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, default=float))
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
