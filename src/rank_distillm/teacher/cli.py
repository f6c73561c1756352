"""``rank-distillm teach``: re-rank first-stage candidates with an LLM teacher.

    rank-distillm teach --dataset msmarco-passage/trec-dl-2020/judged \\
        --candidates ../shared/data/runs/trec-dl-2020/bm25.run \\
        --backend replay --log ../shared/data/teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl \\
        --prompt rankvicuna --out rankvicuna.run

With ``--backend replay`` the ``--log`` is read (the answers come from it); with a live
backend (``transformers``, ``vllm``) it is the window log that is appended to and resumed
from (default: ``OUT.windows.jsonl``).
"""

from __future__ import annotations

from pathlib import Path

from ..data import DataError, load_candidates, resolve_path, write_run
from .backends import BACKENDS, make_backend
from .prompts import TEMPLATES


def add_teach_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="ir_datasets id of the queries (and passages)")
    p.add_argument("--candidates", required=True, help="first-stage run file (or irds:DATASET_ID)")
    p.add_argument("--backend", required=True, choices=sorted(BACKENDS))
    p.add_argument("--model", help="hub id, local folder, .gguf file or pkg: name (transformers, vllm)")
    p.add_argument("--log", help="window log: read by replay; appended to and resumed from otherwise "
                                 "(default OUT.windows.jsonl)")
    p.add_argument("--prompt", default="rankzephyr", choices=sorted(TEMPLATES))
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--max-words", type=int, default=None, help="words per passage (default 300 * 20 / window)")
    p.add_argument("--max-new-tokens", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=8, help="queries whose windows share one backend call")
    p.add_argument("--max-queries", type=int, default=None, help="only the first N queries of the dataset")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (transformers)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per engine (vllm)")
    p.add_argument("--tag", default=None, help="run tag (default: the backend and model)")
    p.add_argument("--out", required=True, help="the re-ranked run, written atomically at the end")


def _check(args) -> None:
    """Argument errors first, before any data or model is loaded."""
    if args.backend == "replay" and not args.log:
        raise ValueError("--backend replay needs --log (the window log to answer from)")
    if args.backend != "replay" and not args.model:
        raise ValueError(f"--backend {args.backend} needs --model")


def _backend(args):
    if args.backend == "replay":
        return make_backend("replay", log_path=resolve_path(args.log))
    if args.backend == "vllm":
        return make_backend("vllm", model=args.model, tensor_parallel_size=args.tensor_parallel_size,
                            max_new_tokens=args.max_new_tokens)
    return make_backend("transformers", model_name_or_path=args.model, max_new_tokens=args.max_new_tokens,
                        threads=args.threads)


def teach_command(args) -> int:
    from .windows import sliding_window_rerank, was_repaired

    _check(args)
    out = Path(args.out)
    if args.backend == "replay":
        log_path = None  # the replayed log is read, never written
    else:
        log_path = Path(args.log) if args.log else out.with_name(out.name + ".windows.jsonl")
        if args.log and not log_path.parent.exists():
            raise DataError(f"--log {log_path}: folder {log_path.parent} does not exist")
    candidates = load_candidates(args.dataset, args.candidates, depth=args.depth, max_queries=args.max_queries)
    backend = _backend(args)
    result = sliding_window_rerank(
        candidates, backend, prompt=args.prompt, window=args.window, stride=args.stride, depth=args.depth,
        max_words=args.max_words, log_path=log_path, batch_size=args.batch_size, progress=True,
    )
    tag = args.tag or (f"{args.backend}-{Path(args.model).name}" if args.model else args.backend)
    write_run(result.run, out, tag=tag.replace(" ", "_"))
    repaired = sum(was_repaired(w["repair"]) for w in result.windows)
    print(f"{len(result.run)} queries, {len(result.windows)} windows ({result.resumed} resumed from the log, "
          f"{repaired} repaired) -> {out}" + (f"; window log {log_path}" if log_path else ""))
    return 0
