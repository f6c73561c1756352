"""``rank-distillm teach``: re-rank first-stage candidates with an LLM teacher.

    rank-distillm teach --dataset msmarco-passage/trec-dl-2020/judged \\
        --candidates ../shared/data/runs/trec-dl-2020/bm25.run \\
        --backend replay --log ../shared/data/teacher-logs/trec-dl-2020/rankvicuna-7b.windows.dl20.jsonl \\
        --prompt rankvicuna --out rankvicuna.run

With ``--backend replay`` the ``--log`` is read (the answers come from it); with a live
backend (``transformers``, ``vllm``) it is the window log that is appended to and resumed
from (default: ``OUT.windows.jsonl``).

``--profile NAME`` takes every setting from the profile's ``teacher`` section (the paper's
labelling job with ``gpu``: RankZephyr through vLLM over the top-100 of 10,000 MS MARCO
training queries); arguments given on the command line win::

    rank-distillm teach --profile gpu --candidates colbertv2-train-top100.run --out rankzephyr.run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DataError, load_candidates, resolve_path, run_tag, write_run
from .backends import BACKENDS, RANKING, live_backend, make_backend
from .prompts import TEMPLATES

# what an argument is when neither the command line nor a profile sets it
DEFAULTS = {"prompt": "rankzephyr", "window": 20, "stride": 10, "depth": 100, "max_words": None,
            "max_new_tokens": 120, "min_new_tokens": None, "context_size": None, "batch_size": 8, "max_queries": None,
            "threads": None, "model": None, "tensor_parallel_size": 1}
# arguments taken from the field of the same name in the profile's teacher section
PROFILE_FIELDS = ("dataset", "candidates", "backend", "model", "prompt", "window", "stride", "depth", "max_words",
                  "max_new_tokens", "min_new_tokens", "context_size", "batch_size", "threads")


def add_teach_arguments(p) -> None:
    from ..cli_types import add_force_argument, positive_int, trec_tag

    p.add_argument("--profile", help="take the settings from this profile's teacher section (smoke, cpu, gpu, "
                                     "a variant such as colab, or a YAML file); explicit arguments win")
    p.add_argument("--dataset", help="ir_datasets id of the queries (and passages); required without --profile")
    p.add_argument("--candidates", help="first-stage run file (or irds:DATASET_ID); required without --profile")
    p.add_argument("--backend", choices=sorted(BACKENDS), help="required without --profile")
    p.add_argument("--model", help="hub id, local folder, .gguf file or pkg: name (transformers, vllm)")
    p.add_argument("--log", help="window log: read by replay; appended to and resumed from otherwise "
                                 "(default OUT.windows.jsonl)")
    p.add_argument("--prompt", choices=sorted(TEMPLATES), help="default rankzephyr")
    p.add_argument("--window", type=positive_int, help="default 20")
    p.add_argument("--stride", type=positive_int, help="default 10")
    p.add_argument("--depth", type=positive_int, help="default 100")
    p.add_argument("--max-words", type=positive_int, help="words per passage (default 300 * 20 / window)")
    p.add_argument("--max-new-tokens", type=parse_tokens, help="a number or 'ranking' (the length of a full answer "
                                                         "for the window, rank_llm's); default 120")
    p.add_argument("--min-new-tokens", type=parse_tokens, help="a number or 'ranking'; default none")
    p.add_argument("--context-size", type=positive_int, help="shrink the words per passage until a prompt and a full "
                                                             "answer fit this many tokens, as rank_llm does (RankZephyr: "
                                                             "4096); default: no check")
    p.add_argument("--batch-size", type=positive_int, help="queries whose windows share one backend call (default 8)")
    p.add_argument("--max-queries", type=positive_int, help="only the first N queries of the dataset")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (transformers)")
    p.add_argument("--tensor-parallel-size", type=positive_int, help="GPUs per engine (vllm; default 1)")
    p.add_argument("--tag", default=None, type=trec_tag, help="run tag (default: the backend and model)")
    p.add_argument("--out", required=True, help="the re-ranked run, written atomically at the end")
    add_force_argument(p)


def parse_tokens(text: str) -> int | str:
    """A ``--max-new-tokens``/``--min-new-tokens`` value: a number, or ``ranking``."""
    from ..cli_types import positive_int

    if text == RANKING:
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or {RANKING!r}, got {text!r}") from None


def _missing_candidates(profile: str, dataset: str) -> DataError:
    return DataError(
        f"teacher.candidates is not set in profile {profile!r}: it labels {dataset} from a first-stage run "
        f"you supply (e.g. the ColBERTv2 top-100 released with Rank-DistiLLM, or a BM25 run); give "
        f"--candidates RUN, or a profile file with {{base: {profile}, teacher: {{candidates: RUN}}}}"
    )


def resolve_arguments(args) -> argparse.Namespace:
    """The arguments with every setting filled: the command line, else ``--profile``, else :data:`DEFAULTS`.

    From a profile also ``max_queries`` (its ``live_queries`` when set, else ``max_queries``)
    and ``engine`` (vLLM engine arguments). A setting that is still missing is an error
    naming the argument, or the profile field it would come from.
    """
    out = argparse.Namespace(**vars(args))
    out.engine = {}
    settings = None
    if getattr(args, "profile", None):
        from ..profiles import load_profile

        settings = load_profile(args.profile)["teacher"]
        for field in PROFILE_FIELDS:
            if getattr(out, field, None) is None:
                setattr(out, field, settings[field])
        if out.max_queries is None:
            out.max_queries = settings["live_queries"] or settings["max_queries"]
        out.engine = dict(settings["engine"] or {})
    for arg, value in DEFAULTS.items():
        if getattr(out, arg, None) is None:
            setattr(out, arg, value)
    if out.candidates is None and settings is not None:
        raise _missing_candidates(args.profile, settings["dataset"])
    for arg in ("dataset", "candidates", "backend"):
        if getattr(out, arg) is None:
            raise DataError(f"--{arg} is required (or --profile NAME to take it from a profile)")
    if out.backend not in BACKENDS:
        raise DataError(f"backend {out.backend!r}: use one of {sorted(BACKENDS)}")
    return out


def profile_candidates(settings: dict, depth: int | None = None, profile: str = "this profile"):
    """The candidates a profile's ``teacher`` section names: ``dataset``, ``candidates``, ``max_queries``.

    ``depth`` defaults to the section's; ``candidates: null`` (the gpu profile: a run you
    supply) is an error that says how to give one.
    """
    if not settings.get("candidates"):
        raise _missing_candidates(profile, settings["dataset"])
    return load_candidates(settings["dataset"], settings["candidates"],
                           depth=settings["depth"] if depth is None else depth, max_queries=settings["max_queries"])


def profile_backend(settings: dict):
    """The live backend of a profile's ``teacher`` section: its model, answer lengths, threads and engine."""
    return live_backend(settings["backend"], settings["model"], max_new_tokens=settings["max_new_tokens"],
                        threads=settings["threads"], engine=settings["engine"], min_new_tokens=settings["min_new_tokens"])


def profile_job(settings: dict, candidates, backend, name: str = "profile", *, progress: bool = True):
    """A profile's teacher job, as ``rank-distillm teach --profile`` runs it: ``(TeacherResult, run file)``.

    The section's window settings (``prompt``, ``window``, ``stride``, ``depth``, ``max_words``,
    ``batch_size``, ``context_size``) over the first ``live_queries`` of ``candidates`` (all of
    them when null). Windows go to ``$RANK_DISTILLM_CACHE/teacher/live-NAME.windows.jsonl`` and
    the run beside it (``live-NAME.run``). A measurement on a few queries (``live_queries`` set)
    starts afresh; a labelling job (all queries) resumes from its log.
    """
    from ..data import cache_dir
    from .windows import sliding_window_rerank

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(str(name)).stem) or "profile"
    log_path = cache_dir() / "teacher" / f"live-{safe}.windows.jsonl"
    if settings["live_queries"]:
        candidates = candidates[: settings["live_queries"]]
        log_path.unlink(missing_ok=True)
    result = sliding_window_rerank(
        candidates, backend, prompt=settings["prompt"], window=settings["window"], stride=settings["stride"],
        depth=settings["depth"], max_words=settings["max_words"], batch_size=settings["batch_size"],
        context_size=settings["context_size"], log_path=log_path, progress=progress)
    tag = run_tag(f"{settings['backend']}-{Path(str(settings['model'])).name}")
    return result, write_run(result.run, log_path.with_name(f"live-{safe}.run"), tag=tag)


def _check(args) -> None:
    """Argument errors first, before any data or model is loaded."""
    if args.backend == "replay" and not args.log:
        raise DataError("--backend replay needs --log (the window log to answer from)")
    if args.backend != "replay" and not args.model:
        raise DataError(f"--backend {args.backend} needs --model")


def _backend(args):
    if args.backend == "replay":
        return make_backend("replay", log_path=resolve_path(args.log))
    return live_backend(args.backend, args.model, max_new_tokens=args.max_new_tokens, threads=args.threads,
                        tensor_parallel_size=args.tensor_parallel_size, engine=args.engine,
                        min_new_tokens=args.min_new_tokens)


def _repair_note(windows: list[dict], shown: int = 3) -> str:
    """``'; repairs: unicode_digits 2 (query 1037496 window 3, ...), ...'`` or ``''``."""
    from .windows import repair_counts

    parts = []
    for kind, where in repair_counts(windows).items():
        named = ", ".join(f"query {q} window {w}" for q, w in where[:shown])
        parts.append(f"{kind} {len(where)} ({named}{', ...' if len(where) > shown else ''})")
    return "; repairs: " + "; ".join(parts) if parts else ""


def teach_command(args) -> int:
    from ..outputs import RUN_FILE, WINDOW_LOG, check_target
    from .log import WindowLog
    from .prompts import default_max_words
    from .windows import sliding_window_rerank, was_repaired

    args = resolve_arguments(args)
    _check(args)
    for name in ("window", "stride", "depth", "max_words", "max_new_tokens", "min_new_tokens", "context_size",
                 "batch_size", "max_queries"):
        value = getattr(args, name)  # from the command line (checked there) or from a profile file
        if value is None or (name.endswith("new_tokens") and value == RANKING):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            also = f" or {RANKING!r}" if name.endswith("new_tokens") else ""
            raise DataError(f"teacher.{name} (--{name.replace('_', '-')}) must be a whole number >= 1{also}, not {value!r}")
    if args.max_words is None:
        args.max_words = default_max_words(args.window)
    candidates_file = None if str(args.candidates).startswith("irds:") else resolve_path(args.candidates)
    replay_log = resolve_path(args.log) if args.backend == "replay" else None
    # the outputs first, before any data or model is loaded: a bad --out must not cost the work
    out = check_target(args.out, RUN_FILE, force=args.force, inputs=[candidates_file, replay_log])
    if args.backend == "replay":
        log_path = None  # the replayed log is read, never written
    else:
        log_path = Path(args.log) if args.log else out.with_name(out.name + ".windows.jsonl")
        if args.log and not log_path.parent.exists():
            raise DataError(f"--log {log_path}: folder {log_path.parent} does not exist")
        check_target(log_path, WINDOW_LOG, inputs=[candidates_file, out], option="--log")
    context_size = args.context_size if args.backend != "replay" else None
    settings = {"model": args.model, "template": args.prompt, "max_words": args.max_words, "context_size": context_size}
    with WindowLog(log_path) as log:  # locked now: a second job on this log stops here, before any work
        log.check_settings(settings)
        candidates = load_candidates(args.dataset, args.candidates, depth=args.depth, max_queries=args.max_queries)
        backend = _backend(args)
        result = sliding_window_rerank(
            candidates, backend, prompt=args.prompt, window=args.window, stride=args.stride, depth=args.depth,
            max_words=args.max_words, log_path=log, batch_size=args.batch_size, progress=True, context_size=context_size,
        )
    tag = args.tag or (f"{args.backend}-{Path(args.model).name}" if args.model else args.backend)
    write_run(result.run, out, tag=run_tag(tag))
    repaired = sum(was_repaired(w["repair"]) for w in result.windows)
    print(f"{len(result.run)} queries, {len(result.windows)} windows ({result.resumed} resumed from the log, "
          f"{repaired} repaired) -> {out}" + (f"; window log {log_path}" if log_path else "")
          + _repair_note(result.windows))
    return 0
