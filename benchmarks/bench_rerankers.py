"""Benchmark: the student's runtimes and the LLM teacher against this machine's limits; prints one table.

    python benchmarks/bench_rerankers.py --profile cpu                          # MiniLM vs SmolLM2-135M on this CPU
    python benchmarks/bench_rerankers.py --profile cpu --save run.json          # keep this run's table
    python benchmarks/bench_rerankers.py --profile cpu --previous run.json      # ... and compare the next one with it
    python benchmarks/bench_rerankers.py --profile cpu --variants onnx openvino --quality-variants onnx openvino
    python benchmarks/bench_rerankers.py --profile gpu --rows gpu-rows.jsonl    # ELECTRA-base vs RankZephyr-7B; rerun to resume

One row per runtime of the student (PyTorch's ``CrossEncoder.predict``, ONNX Runtime, OpenVINO,
int8 graphs, precomputed passage states) at the deepest depth: seconds per query, speed-up over
``CrossEncoder.predict``, memory, nDCG@10 and its loss against the fp32 student with a paired
t-test (the profile's quality variants re-rank every DL19 query's top-100), the FLOP rate at
the pairs' measured token lengths and its share of the machine's measured peak in the
precision the runtime computes in; then the teacher's prefill (against the FLOP peak) and
decoding (against the copy bandwidth), and the precomputed states' storage. The student is
the profile's first trained student when it is cached (chapter 5), else the same architecture
untrained. Each model runs in its own process. Timings are only as quiet as the machine: run it
alone. --previous prints the saved run's figures beside this run's, with the change.
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

from rank_distillm import cost_model, data, efficiency, evaluation  # noqa: E402
from rank_distillm.profiles import load_profile  # noqa: E402
from rank_distillm.student import load_student  # noqa: E402

COMPARED = ["seconds per query", "speed-up over CrossEncoder.predict", "nDCG@10", "share of peak"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--model", default=None, help="the student to time (default: the profile's first trained student)")
    parser.add_argument("--variants", nargs="*", default=None, help="replace the profile's variants")
    parser.add_argument("--quality-variants", nargs="*", default=None, help="replace the profile's quality variants")
    parser.add_argument("--rows", default=None, help="JSONL of measured rows, written as they finish; rerun to resume")
    parser.add_argument("--save", default=None, help="write this run's table (and limits) as JSON")
    parser.add_argument("--previous", default=None, help="a table saved by --save: its figures are printed beside these")
    args = parser.parse_args(argv)

    profile = load_profile(args.profile)
    P = profile["efficiency"]
    model, trained = (args.model, True) if args.model else efficiency.student_under_test(profile)
    P = {**P, "student": {**P["student"], "model": model}}
    if args.variants is not None:
        P["variants"] = args.variants
    if args.quality_variants is not None:
        P["quality_variants"] = args.quality_variants
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    log(f"[bench] student {model} ({'trained' if trained else 'untrained'})")
    L = P["limits"]
    limits = efficiency.measure_limits(n=L["matmul_n"], repeats=L["repeats"], copy_mib=L["copy_mib"])
    result = efficiency.run_bench(P, log=log, out=args.rows)

    timed, quality = efficiency.bench_candidates(P), efficiency.quality_candidates(P)
    reference = evaluation.rerank_cached(model, quality, batch_size=64, show_progress_bar=False)
    student = load_student(model)
    deepest = max(P["student_depths"])
    tokens = student.preprocess([(c.query, t) for c in timed for t in c.texts[:deepest]])["attention_mask"].sum(1).tolist()
    shape = cost_model.shape_from_config(student.model.config, bytes_per_param=4)
    table = efficiency.variant_table(result, reference, P["dataset"], timed, quality, shape, tokens, limits,
                                     joint_layers=shape.layers - getattr(student[0], "separate_layers", 0))

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(efficiency.limits_table(limits).round(1).to_string())
    print(f"\n== the student's runtimes at depth {deepest} ({len(timed)} queries timed; nDCG@10 on "
          f"{len(quality)} queries' top-{P['quality_depth']}, fp32: {table.attrs.get('fp32_ndcg10', float('nan')):.4f})")
    shown = table.copy()
    if args.previous:
        before = pd.DataFrame(json.loads(Path(args.previous).read_text())["table"]).set_index("backend")
        for col in COMPARED:
            if col in before:
                shown[f"{col} (previous)"] = before[col].reindex(shown.index)
    print(shown.round(4).to_string())
    fast = efficiency.fast_student(table, P["max_fast_loss"])
    print(f"\nfastest within {P['max_fast_loss']} nDCG@10 of fp32: {fast}")
    for name, phases in result["phases"].items():
        print(f"\n== teacher {name}: prefill and decoding against the limits (float32 weights)")
        print(efficiency.teacher_phases(phases, cost_model.SHAPES["SmolLM2-135M"].with_bytes(4), limits).round(3).to_string())
    passages = [t for c in quality for t in c.texts]
    store = efficiency.storage(student, list(dict.fromkeys(passages)))
    store["MS MARCO (GB)"] = [efficiency.corpus_bytes(b) / 1e9 for b in store["bytes_per_passage"]]
    print("\n== precomputed passage states: storage")
    print(store.round(1).to_string(index=False))
    print("\n== teacher / student")
    print(pd.DataFrame(result["ratios"]).round(2).to_string(index=False))
    print(f"\nthe paper's (ELECTRA-base vs RankZephyr-7B, GPU; not measured here): up to "
          f"{efficiency.PAPER_SPEEDUP:.0f}x faster, {efficiency.PAPER_MEMORY_RATIO:.0f}x less memory")
    if args.save:
        from rank_distillm.outputs import write_json

        write_json(args.save, {"profile": args.profile, "model": model, "limits": limits,
                               "table": table.reset_index().to_dict("records"), "fast_student": fast})
    return 0


if __name__ == "__main__":
    data.setup_ir_datasets()
    sys.exit(main())
