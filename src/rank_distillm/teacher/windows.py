"""Sliding windows: the schedule, parsing and repairing an answer, and the re-ranking loop.

A listwise LLM sees ``window`` passages at a time. RankZephyr (``castorini/rank_llm``)
slides the window from the bottom of the top-``depth`` upwards by ``stride`` positions,
so that a relevant passage found low in the list can climb, window by window, to the top.
With depth 100, window 20 and stride 10 the windows are 80-100, 70-90, ..., 0-20 (nine).

The loop (:func:`sliding_window_rerank`) is generic over the backend: it builds each
window's prompt from the *current* order, asks the backend, applies the repaired
permutation and logs the window. Windows of one query are sequential by nature (each
depends on the one below); windows of different queries are batched into one backend call.
"""

from __future__ import annotations

import os
import time
import unicodedata
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..data import Candidates, DataError, Run, run_from_rankings
from .backends import Answer, Backend, Request
from .log import WindowLog
from .prompts import PromptTemplate, default_max_words, fit_window, get_template, ranking_tokens, render_fixed

# --------------------------------------------------------------------------- schedule


def window_schedule(n: int, window: int = 20, stride: int = 10, depth: int = 100) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` (0-based, end exclusive) in the order they are answered.

    The first window is the bottom one, ``(max(top - window, 0), top)`` with
    ``top = min(depth, n)``; each next one is ``stride`` higher; the last one starts at 0,
    or, when the stride is longer than the window (gaps between windows), is the last one
    that still ends above rank 0 (never an empty window). This is rank_llm's
    ``sliding_windows`` loop (``while end_pos > rank_start and start_pos + step !=
    rank_start``, the start clamped at ``rank_start`` inside the loop, so the clamped window
    is its last): the same windows for every depth, with one exception not copied here:
    when ``depth - window == -stride`` rank_llm's condition fails at once and it re-ranks
    nothing, where this schedule answers the one window ``(0, depth)``.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    if depth is not None and depth < 1:
        raise ValueError(f"depth ({depth}) must be positive")
    top = n if depth is None else min(depth, n)
    if top <= 1:
        return []
    out = []
    end = top
    while end > 0:
        start = max(end - window, 0)
        out.append((start, end))
        if start == 0:
            break
        end -= stride
    return out


def windows_per_query(depth: int, window: int = 20, stride: int = 10) -> int:
    """How many windows one query of ``depth`` candidates takes: the length of its :func:`window_schedule`.

    ``ceil((depth - window) / stride) + 1`` for ``depth > window`` (100 / 20 / 10: nine), one
    for ``1 < depth <= window``, none for a single passage. The cost model and the budgets
    count windows with this function.
    """
    return len(window_schedule(depth, window, stride, depth))


# --------------------------------------------------------------------------- parsing


def _ascii_digits(text: str) -> tuple[str, int]:
    """``text`` with every Unicode digit ("1²", "①", "３") as its ASCII digit, and how many were changed.

    rank_llm (``ListwiseInferenceHandler._clean_response``) maps superscript, subscript,
    circled, negative circled, fullwidth and "digit with full stop" characters to ASCII
    digits before it parses an answer; this maps every character that Unicode gives a digit
    value, which is the same table (rank_llm's rows for U+1F101..U+1F10A, "DIGIT ZERO COMMA"
    and so on, are one off; Unicode's values are used here).
    """
    out, changed = [], 0
    for c in text:
        if c.isdigit() and not ("0" <= c <= "9"):
            value = unicodedata.digit(c, None)
            if value is not None:
                out.append(str(value))
                changed += 1
                continue
        out.append(c)
    return "".join(out), changed


def answer_ids(response) -> tuple[list[int], int, str | None]:
    """The numbers an answer names, in its order: ``(ids, unicode_digits, not_text)``.

    rank_llm's reading: only the text after a reasoning model's last ``</think>`` counts;
    Unicode digits ("1²", "①", "３") are the digits they stand for (``unicode_digits``
    counts them); every other non-digit is a separator. An answer that is not text at all
    names no number (``not_text``: its type's name; None for text).
    """
    not_text = None if isinstance(response, str) else type(response).__name__
    text = response if not_text is None else ""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[-1]
    text, unicode_digits = _ascii_digits(text)
    digits = "".join(c if "0" <= c <= "9" else " " for c in text)
    return [int(x) for x in digits.split()], unicode_digits, not_text


def parse_permutation(response, n: int) -> tuple[list[int], dict]:
    """The order (0-based indices into the window) an answer asks for, and what was repaired.

    rank_llm's rules: the text after a reasoning model's last ``</think>`` is the answer;
    Unicode digits ("1²", "①", "３") count as the digits they stand for; every other
    non-digit is a separator; numbers are 1-based ids; repeated ids and ids outside ``1..n``
    are dropped, and ids the answer never names are appended in their input order.

    Every answer gives a permutation, so a labelling job never stops on one: an answer that
    is not text at all (``None``, a number in a hand-made log) or names no valid id keeps
    the window's input order. The repair record lists the dropped ``duplicates`` and
    ``out_of_range`` ids, the ``missing`` ids that were appended, ``unicode_digits`` (how
    many digits were not ASCII), ``not_text`` (the type of an answer that was not a string,
    else None) and ``no_ranking`` (no valid id at all: the input order is kept).
    """
    ids, unicode_digits, not_text = answer_ids(response)
    order: list[int] = []
    duplicates, out_of_range = [], []
    for i in ids:
        if not 1 <= i <= n:
            out_of_range.append(i)
        elif i - 1 in order:
            duplicates.append(i)
        else:
            order.append(i - 1)
    named = set(order)
    missing = [i for i in range(n) if i not in named]
    repair = {
        "duplicates": duplicates,
        "out_of_range": out_of_range,
        "missing": [i + 1 for i in missing],
        "no_ranking": not order,
        "unicode_digits": unicode_digits,
        "not_text": not_text,
    }
    return order + missing, repair


REPAIRS = ("duplicates", "out_of_range", "missing", "no_ranking", "unicode_digits", "not_text")


def was_repaired(repair: dict) -> bool:
    """Whether an answer needed any repair (it was not a clean permutation in ASCII digits)."""
    return any(repair.get(kind) for kind in REPAIRS)


def repair_counts(windows: list[dict]) -> dict:
    """How many windows needed each kind of repair, and which: ``{kind: [(qid, window), ...]}``.

    Only kinds that occurred are listed; ``windows`` are the records of a teacher run.
    """
    out: dict[str, list[tuple[str, int]]] = {}
    for w in windows:
        for kind in REPAIRS:
            if w["repair"].get(kind):
                out.setdefault(kind, []).append((str(w["qid"]), int(w["window"])))
    return out


# --------------------------------------------------------------------------- the loop


@dataclass
class TeacherResult:
    """What a teacher run produced.

    ``run``: the re-ranked lists (score ``len - rank + 1``, so rank 1 of 100 scores 100);
    ``windows``: one record per window (resumed and new), per query in schedule order;
    ``resumed``: how many windows came from the log rather than the backend.
    """

    run: Run
    windows: list[dict] = field(default_factory=list)
    resumed: int = 0


class _Query:
    def __init__(self, cand: Candidates, schedule: list[tuple[int, int]]):
        if len(cand.texts) != len(cand.docids):
            raise DataError(f"query {cand.qid}: {len(cand.docids)} passages but {len(cand.texts)} texts")
        self.cand = cand
        self.order = list(range(len(cand.docids)))  # indices into cand, current ranking
        self.schedule = schedule
        self.next = 0

    @property
    def done(self) -> bool:
        return self.next >= len(self.schedule)

    def window_docids(self) -> list[str]:
        start, end = self.schedule[self.next]
        return [self.cand.docids[i] for i in self.order[start:end]]

    def apply(self, permutation: list[int]) -> None:
        start, end = self.schedule[self.next]
        block = self.order[start:end]
        self.order[start:end] = [block[j] for j in permutation]
        self.next += 1


def _prompt_tokenizer(backend):
    """The tokenizer a backend's prompts are counted with: its own, or its vLLM engine's."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None and hasattr(getattr(backend, "llm", None), "get_tokenizer"):
        tokenizer = backend.llm.get_tokenizer()
    return tokenizer


def sliding_window_rerank(
    candidates: list[Candidates],
    backend: Backend,
    *,
    prompt: str | PromptTemplate = "rankzephyr",
    window: int = 20,
    stride: int = 10,
    depth: int = 100,
    max_words: int | None = None,
    log_path: str | os.PathLike | WindowLog | None = None,
    batch_size: int = 8,
    progress: bool = True,
    context_size: int | None = None,
    tokenizer=None,
) -> TeacherResult:
    """Re-rank each query's candidates listwise with sliding windows.

    ``candidates`` come from :func:`rank_distillm.data.load_candidates` (best first).
    ``max_words`` is the per-passage word budget (default: rank_llm's ``300 * 20 / window``).
    ``log_path``: the window log (a path, or a :class:`~rank_distillm.teacher.log.WindowLog`
    already opened, which the caller closes); windows already in it are re-applied, not asked
    again, so an interrupted job resumes where it stopped. The log must come from the same
    candidates and settings: a window whose passages differ, or a log written with another
    model, prompt template or ``max_words``, is an error. Each new window records those three.
    ``batch_size``: how many queries' windows go into one backend call.
    ``context_size`` (RankZephyr's: 4096): a window whose prompt leaves less than a full
    answer's tokens (:func:`~rank_distillm.teacher.prompts.ranking_tokens`) gets a smaller word
    budget per passage until it fits, as rank_llm does (:func:`~rank_distillm.teacher.prompts.fit_window`);
    prompts are counted with ``tokenizer`` (default: the backend's). ``None``: no such check.
    Passages below ``depth`` keep their first-stage order under the re-ranked top.
    """
    template = get_template(prompt)
    if max_words is None:
        max_words = default_max_words(window)
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be positive")
    seen = set()
    for cand in candidates:
        if cand.qid in seen:
            raise DataError(f"query {cand.qid} appears twice in the candidates")
        seen.add(cand.qid)
    queries = [_Query(c, window_schedule(len(c), window, stride, depth)) for c in candidates]
    settings = {"model": getattr(backend, "model_name", None), "template": template.name, "max_words": max_words,
                "context_size": context_size}
    if context_size:
        tokenizer = tokenizer or _prompt_tokenizer(backend)
        if tokenizer is None:
            raise ValueError(f"context_size {context_size}: backend {backend!r} has no tokenizer to count the prompt with")

    def window_messages(query: str, texts: list[str]):
        if not context_size:
            return template.messages(query, texts, max_words)
        return fit_window(template, query, texts, max_words, tokenizer=tokenizer, context_size=context_size,
                          output_tokens=ranking_tokens(tokenizer, len(texts)))[0]

    own_log = not isinstance(log_path, WindowLog)
    log = WindowLog(log_path) if own_log else log_path
    records: dict[str, list[dict]] = {q.cand.qid: [] for q in queries}
    resumed = 0
    bar = None
    try:
        log.check_settings(settings)
        # 1. re-apply what the log already holds (the same repair as when it was written)
        for q in queries:
            while not q.done:
                record = log.get(q.cand.qid, q.next)
                if record is None:
                    break
                docids = q.window_docids()
                if list(record["docids"]) != docids:
                    raise DataError(
                        f"{log.path} line {record.get('_line', '?')}: window {q.next} of query {q.cand.qid} was "
                        f"logged for other passages than the current ones; the log belongs to other candidates "
                        f"or settings (window, stride, depth), so use a new log"
                    )
                permutation, repair = parse_permutation(record["response"], len(docids))
                record["repair"] = repair
                q.apply(permutation)
                records[q.cand.qid].append(record)
                resumed += 1
        # 2. ask the backend for the rest, several queries per call
        total = sum(len(q.schedule) for q in queries)
        pending = [q for q in queries if not q.done]
        bar = tqdm(total=total, initial=resumed, unit="window", desc="teacher", disable=not progress, dynamic_ncols=True)
        done_queries = sum(q.done for q in queries)
        active: list[_Query] = []
        while pending or active:
            while len(active) < batch_size and pending:
                active.append(pending.pop(0))
            requests = []
            for q in active:
                docids = q.window_docids()
                start, end = q.schedule[q.next]
                texts = [q.cand.texts[i] for i in q.order[start:end]]
                messages = window_messages(q.cand.query, texts)
                requests.append(Request(q.cand.qid, q.next, start, end, docids, messages, render_fixed(template, messages)))
            t0 = time.perf_counter()
            answers = backend.generate(requests)
            elapsed = time.perf_counter() - t0
            if len(answers) != len(requests):
                raise RuntimeError(f"backend {backend!r} answered {len(answers)} of {len(requests)} windows")
            for q, req, ans in zip(active, requests, answers):
                permutation, repair = parse_permutation(ans.response, len(req.docids))
                record = {
                    "qid": req.qid, "window": req.window, "start": req.start, "end": req.end,
                    "docids": req.docids, "prompt": ans.prompt, "response": ans.response, "repair": repair,
                    "prompt_tokens": ans.prompt_tokens, "generated_tokens": ans.generated_tokens,
                    "seconds": ans.seconds if ans.seconds is not None else elapsed / len(requests),
                    "batch": len(requests), "backend": backend.name, **settings,
                }
                q.apply(permutation)
                log.append(record)
                records[req.qid].append(record)
            bar.update(len(requests))
            finished = [q for q in active if q.done]
            done_queries += len(finished)
            active = [q for q in active if not q.done]
            bar.set_postfix(queries=f"{done_queries}/{len(queries)}")
    finally:
        if bar is not None:
            bar.close()  # before any error message, so that it ends on a line of its own
        if own_log:
            log.close()
    rankings = {q.cand.qid: [q.cand.docids[i] for i in q.order] for q in queries}
    windows = [r for q in queries for r in records[q.cand.qid]]
    return TeacherResult(run=run_from_rankings(rankings), windows=windows, resumed=resumed)


def replay_records(candidates: list[Candidates], records: list[dict], *, prompt: str, window: int, stride: int,
                   depth: int, what: str = "the records", lists: str = "the candidates") -> TeacherResult:
    """Replay recorded windows (``prompt``/``response`` dicts, in the order they ran) through :func:`sliding_window_rerank`.

    The records are the windows query by query, in the order of ``candidates``, bottom window
    first; each response is applied to the current list exactly as a live teacher's would be.
    How the data folder's DL20 window log is rebuilt from RankVicuna's raw prompt log
    (:mod:`rank_distillm.sources`). A count of records that is not the schedule's is a
    :class:`DataError` naming ``what`` and ``lists``.
    """
    offsets, n = {}, 0
    for c in candidates:
        offsets[c.qid] = n
        n += len(window_schedule(len(c), window, stride, depth))
    if n != len(records):
        raise DataError(f"{what}: {len(records)} windows, but {lists} make {n}")

    class Recorded(Backend):
        """Answers a window with the record at its place in the recorded log."""

        name = "recorded"

        def generate(self, requests):
            picked = [records[offsets[r.qid] + r.window] for r in requests]
            return [Answer(response=p["response"], prompt=p["prompt"]) for p in picked]

    return sliding_window_rerank(candidates, Recorded(), prompt=prompt, window=window, stride=stride, depth=depth,
                                 progress=False)
