"""Data parallelism for the teacher: shards of the queries, one process per GPU, one merge.

A listwise teacher labels queries independently, so the cheapest way to use ``G`` GPUs is
``G`` processes that each re-rank a *shard* of the queries with their own engine (a 7B
model in bf16 fits one 40-80 GB GPU; a larger one uses a tensor-parallel group of GPUs
per shard) and their own window log, and a last step that merges the shard runs.

Layout of the output folder, for shard ``i`` of ``n``::

    shard-i-of-n.windows.jsonl   the shard's window log (append-only; the resume point)
    shard-i-of-n.run             the shard's run, written atomically when the shard is done
    shard-i-of-n.json            its manifest: the queries it holds and their global positions

A shard that is interrupted (pre-emption, a time limit, ``kill -9``) is simply started
again with the same arguments: the windows in its log are re-applied and only the rest is
asked. :func:`merge_shards` refuses to merge unless every shard is complete, and writes
the merged run (queries in their original order) atomically.

Command line (the SLURM script in ``cluster/`` calls the same)::

    python -m rank_distillm.teacher.shards run --shard 0 --num-shards 4 --dataset ID --candidates RUN \\
        --backend vllm --model castorini/rank_zephyr_7b_v1_full --out-dir teacher/
    python -m rank_distillm.teacher.shards merge --num-shards 4 --out-dir teacher/ --out teacher.run
    python -m rank_distillm.teacher.shards launch --gpus 0,1,2,3 -- --dataset ID --candidates RUN ...

``--shard``/``--num-shards`` default to the environment of a SLURM array task
(``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``), of ``torchrun`` (``RANK``/``WORLD_SIZE``)
or of ``srun`` (``SLURM_PROCID``/``SLURM_NTASKS``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ..data import Candidates, DataError, Run, load_candidates, load_queries, read_run, write_run
from ..outputs import write_text
from .cli import parse_tokens

# --------------------------------------------------------------------------- splitting


def split(items: list, shard: int, num_shards: int) -> list:
    """Shard ``shard`` of ``num_shards``: every ``num_shards``-th item, starting at ``shard``.

    Round-robin keeps the shards within one query of each other in size and spreads any
    order in the list (e.g. by difficulty) evenly.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise DataError(f"shard {shard} of {num_shards}: need 0 <= shard < num_shards")
    return items[shard::num_shards]


def shard_from_env(env: dict | None = None) -> tuple[int, int] | None:
    """``(shard, num_shards)`` from a SLURM array task, ``torchrun`` or ``srun``; else None."""
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" in env:
        task = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        if "SLURM_ARRAY_TASK_COUNT" in env:
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        else:
            count = int(env["SLURM_ARRAY_TASK_MAX"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0)) + 1
        return task, count
    for rank, size in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank in env and size in env:
            return int(env[rank]), int(env[size])
    return None


def shard_name(shard: int, num_shards: int) -> str:
    width = len(str(num_shards - 1))
    return f"shard-{shard:0{width}d}-of-{num_shards}"


def shard_paths(out_dir: str | os.PathLike, shard: int, num_shards: int) -> dict[str, Path]:
    """The log, run and manifest paths of one shard."""
    stem = Path(out_dir) / shard_name(shard, num_shards)
    return {"log": stem.with_suffix(".windows.jsonl"), "run": stem.with_suffix(".run"),
            "manifest": stem.with_suffix(".json")}


def shard_done(out_dir: str | os.PathLike, shard: int, num_shards: int) -> bool:
    """True when the shard's run and manifest are written (both appear only at the end)."""
    paths = shard_paths(out_dir, shard, num_shards)
    return paths["run"].is_file() and paths["manifest"].is_file()


# --------------------------------------------------------------------------- one shard


def shard_candidates(dataset_id: str, candidates_run: str | os.PathLike | Run, shard: int, num_shards: int,
                     depth: int | None = 100, max_queries: int | None = None) -> tuple[list[Candidates], list[int]]:
    """The candidates of one shard, with texts, and their positions in the whole query list.

    The whole list is that of :func:`rank_distillm.data.load_candidates` (the dataset's
    query order, cut to ``max_queries``); only the shard's queries get their passages
    loaded, so each process reads ``1 / num_shards`` of the texts.
    """
    run = candidates_run if isinstance(candidates_run, Run) else read_run(candidates_run)
    queries = load_queries(dataset_id)
    unknown = [q for q in run if q not in queries]
    if unknown:
        raise DataError(f"{run.where(unknown[0])}: query {unknown[0]} is not in dataset {dataset_id}")
    order = [q for q in queries if q in run][:max_queries]
    positions = split(list(range(len(order))), shard, num_shards)
    subset = Run({order[i]: run[order[i]] for i in positions}, source=run.source)
    subset.line_of = run.line_of
    return load_candidates(dataset_id, subset, depth=depth), positions


def run_shard(candidates: list[Candidates], backend, out_dir: str | os.PathLike, shard: int, num_shards: int,
              positions: list[int] | None = None, tag: str = "teacher", **teacher_kwargs) -> Path:
    """Re-rank one shard's candidates into its own log and run; returns the run's path.

    ``teacher_kwargs`` go to :func:`rank_distillm.teacher.windows.sliding_window_rerank`
    (``prompt``, ``window``, ``stride``, ``depth``, ``batch_size``, ...). Started again
    after an interruption, it resumes from the shard's log.
    """
    from .windows import sliding_window_rerank

    paths = shard_paths(out_dir, shard, num_shards)
    paths["log"].parent.mkdir(parents=True, exist_ok=True)
    result = sliding_window_rerank(candidates, backend, log_path=paths["log"], **teacher_kwargs)
    positions = list(range(len(candidates))) if positions is None else positions
    if len(positions) != len(candidates):
        raise ValueError(f"{len(positions)} positions for {len(candidates)} queries")
    write_run(result.run, paths["run"], tag=tag)
    manifest = {"shard": shard, "num_shards": num_shards, "qids": [c.qid for c in candidates],
                "positions": positions, "windows": len(result.windows), "resumed": result.resumed}
    write_text(paths["manifest"], json.dumps(manifest) + "\n")
    return paths["run"]


# --------------------------------------------------------------------------- merge


def merge_shards(out_dir: str | os.PathLike, num_shards: int, out: str | os.PathLike | None = None,
                 log_out: str | os.PathLike | None = None, tag: str = "teacher") -> Run:
    """One run from all shards, queries in their original order; written atomically to ``out``.

    Every shard must be complete (its run and manifest written) and hold exactly the
    queries its manifest names; a missing or unfinished shard, or a query in two shards,
    is a :class:`DataError` that names it. ``log_out`` also concatenates the shard logs
    (queries in the same order) into one window log, e.g. for replay or auditing.
    """
    placed: dict[int, tuple[str, dict]] = {}
    owner: dict[str, str] = {}
    logs = []
    missing = [shard_name(i, num_shards) for i in range(num_shards) if not shard_done(out_dir, i, num_shards)]
    if missing:
        raise DataError(f"{out_dir}: shard(s) {', '.join(missing)} not finished (no run/manifest yet); "
                        f"run them again with the same arguments to resume them from their logs")
    for i in range(num_shards):
        paths = shard_paths(out_dir, i, num_shards)
        manifest = json.loads(paths["manifest"].read_text())
        run = read_run(paths["run"])
        if set(run) != set(manifest["qids"]):
            raise DataError(f"{paths['run']}: holds {len(run)} queries but its manifest names {len(manifest['qids'])}")
        for qid, pos in zip(manifest["qids"], manifest["positions"]):
            if qid in owner:
                raise DataError(f"query {qid} is in {owner[qid]} and in {paths['run']}")
            owner[qid] = str(paths["run"])
            placed[pos] = (qid, run[qid])
        logs.append(paths["log"])
    if sorted(placed) != list(range(len(placed))):
        raise DataError(f"{out_dir}: the shards' query positions have gaps; were they made with different --num-shards?")
    merged = Run({qid: docs for _, (qid, docs) in sorted(placed.items())}, source=str(out) if out else None)
    if out is not None:
        write_run(merged, out, tag=tag)
    if log_out is not None:
        from .log import read_log

        by_qid: dict[str, list[str]] = {}
        for path in logs:
            for record in read_log(path):
                record.pop("_line", None)
                by_qid.setdefault(str(record["qid"]), []).append(json.dumps(record, ensure_ascii=False))
        write_text(Path(log_out), "".join(line + "\n" for qid in merged for line in by_qid.get(qid, [])))
    return merged


# --------------------------------------------------------------------------- command line


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of one shard's job (shared by ``run`` and ``launch``)."""
    p.add_argument("--dataset", required=True, help="ir_datasets id of the queries (and passages)")
    p.add_argument("--candidates", required=True, help="first-stage run: a TREC run file or irds:DATASET_ID")
    p.add_argument("--out-dir", required=True, help="folder for the shard logs, runs and manifests")
    p.add_argument("--backend", default="vllm", choices=["vllm", "transformers", "replay"])
    p.add_argument("--model", help="model name or path (vllm, transformers)")
    p.add_argument("--replay-log", help="window log to answer from (replay)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per shard (vllm)")
    p.add_argument("--max-model-len", type=int, default=None,
                   help="vLLM's context length (RankZephyr's: 4096; default: the model's own)")
    p.add_argument("--prompt", default="rankzephyr")
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64, help="queries whose windows go into one engine call")
    p.add_argument("--max-new-tokens", type=parse_tokens, default=120,
                   help="a number or 'ranking' (a full answer's length for the window, as rank_llm); default 120")
    p.add_argument("--min-new-tokens", type=parse_tokens, default=None, help="a number or 'ranking'; default none")
    p.add_argument("--context-size", type=int, default=None,
                   help="shrink the words per passage until prompt and answer fit (rank_llm; RankZephyr: 4096)")
    p.add_argument("--prepare-only", action="store_true",
                   help="load the shard's candidates (downloads, docs store) and stop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rank_distillm.teacher.shards",
                                     description="data-parallel teacher: shards of the queries, then a merge")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("run", help="re-rank one shard (resumes from its log)")
    p.add_argument("--shard", type=int, help="this shard (default: from SLURM/torchrun)")
    p.add_argument("--num-shards", type=int, help="number of shards (default: from SLURM/torchrun)")
    add_run_arguments(p)
    m = sub.add_parser("merge", help="merge finished shards into one run, atomically")
    m.add_argument("--out-dir", required=True)
    m.add_argument("--num-shards", type=int, required=True)
    m.add_argument("--out", required=True, help="the merged run file")
    m.add_argument("--log-out", help="also write the merged window log here")
    la = sub.add_parser("launch", help="one process per GPU (or GPU group) on this machine, then merge")
    la.add_argument("--gpus", default="", help="comma-separated GPU ids, e.g. 0,1,2,3 (empty: --processes CPU processes)")
    la.add_argument("--processes", type=int, default=None, help="number of shards when --gpus is empty")
    la.add_argument("--out", required=True, help="the merged run file")
    la.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the arguments of `run`")
    return parser


def _make_backend(args):
    from .backends import live_backend, make_backend

    if args.backend == "replay":
        if not args.replay_log:
            raise DataError("--backend replay needs --replay-log")
        return make_backend("replay", log_path=args.replay_log)
    if not args.model:
        raise DataError(f"--backend {args.backend} needs --model")
    engine = {"max_model_len": args.max_model_len} if args.max_model_len else {}
    return live_backend(args.backend, args.model, tensor_parallel_size=args.tensor_parallel_size, engine=engine,
                        max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens)


def launch_commands(gpus: str, processes: int | None, tensor_parallel: int, run_args: list[str]) -> list[tuple[dict, list[str]]]:
    """``[(environment, command), ...]``: one ``run`` per GPU group (``tensor_parallel`` GPUs each)."""
    ids = [g for g in gpus.split(",") if g.strip()]
    if ids:
        if len(ids) % tensor_parallel:
            raise DataError(f"{len(ids)} GPUs do not split into groups of {tensor_parallel}")
        groups = [",".join(ids[i:i + tensor_parallel]) for i in range(0, len(ids), tensor_parallel)]
    else:
        groups = [None] * (processes or 1)
    out = []
    for shard, group in enumerate(groups):
        env = {} if group is None else {"CUDA_VISIBLE_DEVICES": group}
        out.append((env, [sys.executable, "-m", "rank_distillm.teacher.shards", "run", "--shard", str(shard),
                          "--num-shards", str(len(groups)), *run_args]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.action == "merge":
            merged = merge_shards(args.out_dir, args.num_shards, args.out, args.log_out)
            print(f"merged {args.num_shards} shards: {len(merged)} queries -> {args.out}")
            return 0
        if args.action == "launch":
            run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
            run_parser = argparse.ArgumentParser(prog="run")
            add_run_arguments(run_parser)
            shard_args = run_parser.parse_args(run_args)
            jobs = launch_commands(args.gpus, args.processes, shard_args.tensor_parallel_size, run_args)
            procs = [subprocess.Popen(cmd, env={**os.environ, **env}) for env, cmd in jobs]
            codes = [p.wait() for p in procs]
            if any(codes):
                print(f"shards exited with {codes}; run the same command again to resume", file=sys.stderr)
                return 1
            merged = merge_shards(shard_args.out_dir, len(jobs), args.out)
            print(f"merged {len(jobs)} shards: {len(merged)} queries -> {args.out}")
            return 0
        if args.shard is None or args.num_shards is None:
            found = shard_from_env()
            if found is None:
                raise DataError("give --shard and --num-shards (or run under a SLURM array, srun or torchrun)")
            args.shard = found[0] if args.shard is None else args.shard
            args.num_shards = found[1] if args.num_shards is None else args.num_shards
        name = shard_name(args.shard, args.num_shards)
        if shard_done(args.out_dir, args.shard, args.num_shards):
            print(f"{name}: already done ({shard_paths(args.out_dir, args.shard, args.num_shards)['run']})")
            return 0
        candidates, positions = shard_candidates(args.dataset, args.candidates, args.shard, args.num_shards,
                                                 depth=args.depth, max_queries=args.max_queries)
        print(f"{name}: {len(candidates)} queries", flush=True)
        if args.prepare_only:
            return 0
        path = run_shard(candidates, _make_backend(args), args.out_dir, args.shard, args.num_shards, positions,
                         prompt=args.prompt, window=args.window, stride=args.stride, depth=args.depth,
                         batch_size=args.batch_size, progress=sys.stderr.isatty(),
                         context_size=args.context_size if args.backend != "replay" else None)
        print(f"{name}: done -> {path}")
        return 0
    except (DataError, ValueError, ImportError) as error:
        print(f"shards {args.action}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
