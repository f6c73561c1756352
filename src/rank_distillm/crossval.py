"""k-fold cross-validation over both TREC DL years (the book's): every query judged by a student that never saw it.

The paper distils on 10,000 MS MARCO queries and tests on TREC DL 2019 and 2020. Offline, the
book has the 97 judged queries of the two years, each with a stored LLM ranking of its BM25
top-100. Trained on one year and tested on the other, a student learns from 35-46 queries;
k-fold cross-validation lets each student learn from (k-1)/k of all of them and still tests
every query with a student that never saw it:

1. the queries split into ``folds`` folds, stratified by year (:func:`year_folds`);
2. fold *f*'s training queries are the other folds'. The one setting chosen on data, the number
   of epochs (0 .. ``epochs``; 0 is the untrained student), is chosen inside those training
   queries (nested): an inner student learns from the first ``inner_training`` of them and
   re-ranks the others after every epoch; the test fold is never read while choosing
   (:func:`choose_epochs`);
3. fold *f*'s student trains on all its training queries for that many epochs (each query's list
   from its own year's teacher run, the recipe of ``training.stage2``: depth, per_list,
   sampling, labels, loss, lr) and re-ranks fold *f*'s first-stage candidates;
4. the folds' runs together are one run over every query (the *pooled* run), each year scored
   against its own qrels, compared query by query with the other systems (paired t-tests, Holm).

The data-size curve trains each fold's student on ``n`` of its training queries (``curve``;
a year-stratified prefix, so a smaller set is part of a larger one) for ``epochs`` epochs;
the inner student is the curve's point at ``inner_training`` queries, trained once for both.

``strong_first_stage``: every outer student also re-ranks its test queries' top-100 of a strong
first stage (the paper's second column; :attr:`CrossvalResult.over`). ``samplers`` (the sampler study,
:mod:`rank_distillm.sampler_study`): a job with ``sampler`` (first-stage names) draws its stage-2 lists
from those first stages' top-100s, one list per query and first stage, each ordered by that first
stage's own teacher run.

``frozen_lower`` (the book's): the split student's separate layers stay frozen, their states are
computed once for every pair (:mod:`rank_distillm.passage_states`, float16), and only the upper
layers train. Each job's result (its run of the test queries, the inner scores, loss curve, wall
time, pairs/s) is cached under ``$RANK_DISTILLM_CACHE/crossval/<hash>.json``: a rerun with
nothing changed trains nothing. The profile section is ``crossval`` (``profiles/crossval.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import data, evaluation, first_stages, training
from .outputs import write_json
from .errors import ProfileError

STUDENT = "student (k-fold)"
UNTRAINED = "untrained student"
BIENCODER = "bi-encoder (zero-shot)"
BM25 = "BM25"


# --------------------------------------------------------------------------- folds


def stratified_order(year: Mapping[str, str], seed: int) -> list[str]:
    """The queries of ``year`` (``{qid: year}``) in an order whose every prefix holds the years in proportion.

    Each year's queries are shuffled (``random.Random(f"{seed}:{year}")``) and the years interleaved by
    relative position (query ``i`` of a year with ``n`` queries sits at ``(i + 0.5) / n``).
    """
    keyed = []
    for y in sorted(set(year.values())):
        own = sorted(q for q, yy in year.items() if yy == y)
        random.Random(f"{seed}:{y}").shuffle(own)
        keyed += [((i + 0.5) / len(own), y, q) for i, q in enumerate(own)]
    return [q for *_, q in sorted(keyed)]


def year_folds(year: Mapping[str, str], k: int, seed: int) -> list[list[str]]:
    """``k`` folds of the queries of ``year``, stratified by year: the :func:`stratified_order` dealt in turn."""
    if not 2 <= k <= len(year):
        raise ProfileError(f"crossval.folds: need 2 <= folds <= {len(year)} queries, got {k}")
    order = stratified_order(year, seed)
    return [order[i::k] for i in range(k)]


def fold_plan(year: Mapping[str, str], cv: Mapping) -> list[dict]:
    """Per outer fold: ``test`` (the fold), ``train`` (the other folds, in stratified order: the data-size
    curve takes its prefixes), ``inner_train`` (its first ``inner_training``: the inner student learns
    from them) and ``validate`` (the rest: they choose the number of epochs)."""
    plan = []
    for f, test in enumerate(year_folds(year, cv["folds"], cv["seed"])):
        held = set(test)
        train = stratified_order({q: y for q, y in year.items() if q not in held}, cv["seed"] + 1 + f)
        n = cv["inner_training"]
        if not 0 < n < len(train):
            raise ProfileError(f"crossval.inner_training: need 0 < inner_training < {len(train)} training queries, got {n}")
        plan.append({"test": test, "train": train, "inner_train": train[:n], "validate": train[n:]})
    return plan


def _also(cv: Mapping) -> dict:
    """What every outer student adds to its job: re-ranking the strong first stage's candidates too."""
    return {"rerank": [cv["strong_first_stage"]]} if cv.get("strong_first_stage") else {}


def inner_job(plan: Mapping, cv: Mapping) -> dict:
    """The inner student of a fold: ``inner_train`` for ``epochs`` epochs, scored on ``validate`` after each.

    It re-ranks the fold's test queries too: it is also the data-size curve's point at ``inner_training``
    queries (one job, trained once)."""
    return {"train": sorted(plan["inner_train"]), "validate": sorted(plan["validate"]), "test": sorted(plan["test"]),
            "epochs": cv["epochs"]}


def curve_job(plan: Mapping, cv: Mapping, n: int) -> dict:
    """The fold's student on its first ``n`` training queries (0: all of them), re-ranking the test fold.

    The student on all of them (the fold's own student, whatever its epochs) re-ranks the strong first
    stage's candidates too (:func:`_also`)."""
    if n == cv["inner_training"]:
        return inner_job(plan, cv)
    return {"train": sorted(plan["train"][:n] if n else plan["train"]), "validate": [], "test": sorted(plan["test"]),
            "epochs": cv["epochs"], **(_also(cv) if not n else {})}


def choose_epochs(scores: Sequence[float]) -> int:
    """The number of epochs with the best inner score (``scores[e]`` after ``e`` epochs); ties: the fewest."""
    best = max(scores)
    return next(e for e, s in enumerate(scores) if s == best)


# --------------------------------------------------------------------------- the queries of both years


@dataclass
class Pool:
    """Every query of the profile's years: its first-stage candidates, year, and the teacher runs."""

    candidates: dict[str, data.Candidates]
    year: dict[str, str]
    teacher: dict[str, Path]  # year -> teacher run file
    datasets: dict[str, str]  # year -> ir_datasets id
    stages: dict[str, dict[str, data.Candidates]] = field(default_factory=dict)  # first stage -> qid -> candidates
    stage_teacher: dict[str, dict[str, Path]] = field(default_factory=dict)  # first stage -> year -> teacher run over it

    def of(self, qids: Sequence[str], stage: str | None = None) -> list[data.Candidates]:
        """The candidates of ``qids``: the pool's first stage's, or (``stage``) those of a named first stage."""
        own = self.candidates if stage is None else self.stages[stage]
        return [own[q] for q in qids]

    def ndcg10(self, run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Per-query nDCG@10 of ``run``, each query against its own year's qrels."""
        out = {}
        for y, dataset_id in self.datasets.items():
            part = {q: dict(r) for q, r in run.items() if self.year.get(q) == y}
            if part:
                table = evaluation.per_query(part, dataset_id, ["nDCG@10"])
                out.update(dict(zip(table["qid"], table["value"])))
        missing = [q for q in run if q not in out]
        if missing:
            raise data.DataError(f"crossval: {len(missing)} queries of the run have no judgements (e.g. {missing[0]})")
        return out


_POOLS: dict[str, Pool] = {}


def stage_names(cv: Mapping) -> list[str]:
    """The named first stages a cross-validation reads: the strong one and every sampler's."""
    names = [cv["strong_first_stage"]] if cv.get("strong_first_stage") else []
    for sampler in (cv.get("samplers") or {}).values():
        names += list(sampler["first_stages"])
    return list(dict.fromkeys(names))


def load_pool(profile: dict) -> Pool:
    """Both years' candidates (``training.max_queries`` each) and teacher runs (``training.stage2.teacher``).

    The first stages of :func:`stage_names` come too, for the same queries (``stages``, and
    ``stage_teacher`` for those with a teacher run)."""
    cv = profile["crossval"]
    key = json.dumps([cv["years"], profile["data"], profile["training"]["max_queries"], stage_names(cv),
                      profile.get("evaluation", {}).get("first_stages")], sort_keys=True, default=str)
    if key not in _POOLS:
        cands, year = {}, {}
        for y in cv["years"]:
            for c in training._candidates(profile, y):
                if c.qid in cands:
                    raise data.DataError(f"crossval: query {c.qid} is in two years ({year[c.qid]}, {y})")
                cands[c.qid], year[c.qid] = c, y
        teacher = {y: data.resolve_path(profile["training"]["stage2"]["teacher"][y]) for y in cv["years"]}
        stages, stage_teacher = {}, {}
        for name in stage_names(cv):
            stages[name] = {}
            for y in cv["years"]:
                own = [q for q, yy in year.items() if yy == y]
                stages[name].update({c.qid: c for c in first_stages.candidates(profile, name, y, qids=own)})
                spec = first_stages.teacher_spec(profile, name, y)
                if spec:
                    stage_teacher.setdefault(name, {})[y] = data.resolve_path(spec)
        _POOLS[key] = Pool(cands, year, teacher, {y: profile["data"]["datasets"][y] for y in cv["years"]}, stages, stage_teacher)
    return _POOLS[key]


def fold_lists(profile: dict, pool: Pool, qids: Sequence[str], sampler: Sequence[str] | None = None,
               per_list: int | None = None):
    """The stage-2 training lists of ``qids``: each query's from its own year's teacher (``training.stage2``).

    With ``sampler`` (first-stage names): one list per query and first stage, each from that first
    stage's candidates in the order of its own teacher run (``data.first_stages.<name>.teacher``).
    ``per_list``: passages a list (default ``training.stage2.per_list``).
    """
    import datasets

    from . import sampling

    options = training.list_options(profile["training"])
    if per_list:
        options["per_list"] = per_list
    sources = [(pool.candidates, pool.teacher)] if not sampler else []
    for name in sampler or []:
        if name not in pool.stage_teacher:
            raise data.DataError(f"crossval.samplers: first stage {name!r} has no teacher run (data.first_stages.{name}.teacher)")
        sources.append((pool.stages[name], pool.stage_teacher[name]))
    parts = []
    for cands, teacher in sources:
        for y in pool.datasets:
            own = [cands[q] for q in qids if pool.year[q] == y]
            if own:
                parts.append(sampling.distillation_lists(teacher[y], own, **options))
    return datasets.concatenate_datasets(parts)


# --------------------------------------------------------------------------- one student: a job


def _states_dir(profile: dict) -> Path:
    t = profile["training"]
    model = hashlib.sha256(str(t["model"]).encode()).hexdigest()[:10]
    return data.cache_dir() / "crossval" / "states" / f"{model}-sl{t['separate_layers']}-len{t['max_length']}"


def state_pairs(profile: dict, pool: Pool) -> list[tuple[str, str]]:
    """The (query, passage) pairs the students read: every query's first-stage candidates, the strong first
    stage's (re-ranked), and the passages of the samplers' lists (``crossval.samplers``; fixed per query)."""
    cv = profile["crossval"]
    pairs = [(c.query, t) for c in pool.candidates.values() for t in c.texts]
    if cv.get("strong_first_stage"):
        pairs += [(c.query, t) for c in pool.stages[cv["strong_first_stage"]].values() for t in c.texts]
    for sampler in (cv.get("samplers") or {}).values():
        lists = fold_lists(profile, pool, sorted(pool.candidates), sampler["first_stages"], sampler.get("per_list"))
        pairs += [(q, t) for q, docs in zip(lists["query"], lists["docs"]) for t in docs]
    return list(dict.fromkeys(pairs))


def precompute_states(profile: dict, pool: Pool, progress: bool = True) -> dict:
    """The frozen layers' states of every pair of ``pool`` (its first stage's and its named first stages'), float16.

    Computed once and saved; a store saved for fewer pairs (e.g. BM25's alone) gets only the missing
    segments added. ``pairs.json`` beside it lists the digests of the pair sets it covers, so a covered
    pool is answered without tokenizing. Returns figures (``cached``: nothing was computed).
    """
    from .passage_states import StateStore, lower_fingerprint, precomputed_student

    folder = _states_dir(profile)
    pairs = state_pairs(profile, pool)
    digest = hashlib.sha256("\n".join(f"{q}\t{t}" for q, t in pairs).encode()).hexdigest()[:16]
    covered_file = folder / "pairs.json"
    covered = json.loads(covered_file.read_text()) if covered_file.is_file() else []
    student = training.new_model(profile["training"])
    fingerprint = lower_fingerprint(student[0])  # what precomputed_student checks a store against
    if (folder / "index.json").is_file():
        store = StateStore.load(folder, fingerprint=fingerprint)
        if digest in covered:
            return {"segments": len(store), "tokens": store.tokens, "bytes": store.nbytes, "seconds": 0.0, "cached": True}
    else:
        store, covered = StateStore("float16", student[0].model.config.hidden_size), []
    model = precomputed_student(student, store)
    import torch

    from .devices import default_device, use_bf16

    device = default_device()
    # computed as training computes (bf16: autocast where the CPU or GPU has it natively), stored as float16
    with torch.autocast(device_type=device if device in ("cpu", "cuda") else "cpu", dtype=torch.bfloat16,
                        enabled=bool(use_bf16(profile["training"]["bf16"]))):
        figures = model[0].precompute(pairs, progress=progress)
    if figures["segments_added"] or not (folder / "index.json").is_file():
        model[0].store.save(folder)
    write_json(covered_file, [*covered, digest])
    return {**figures, "cached": figures["segments_added"] == 0}


def _model(profile: dict):
    """A fresh student to train; with ``frozen_lower``, one that runs on the stored states."""
    student = training.new_model(profile["training"])
    if not profile["crossval"]["frozen_lower"]:
        return student
    from .passage_states import StateStore, precomputed_student

    return precomputed_student(student, StateStore.load(_states_dir(profile), fingerprint=None))


def _job_path(profile: dict, job: dict) -> Path:
    """Where a job's result is cached: keyed as a trained student is (:func:`rank_distillm.training.student_dir`)."""
    key = training._config_hash(profile, {"crossval_job": job, "frozen_lower": profile["crossval"]["frozen_lower"]})
    return data.cache_dir() / "crossval" / f"{key}.json"


def run_job(profile: dict, job: dict, threads: int | None = None) -> dict:
    """Train one student on ``job["train"]`` for ``job["epochs"]`` epochs and re-rank ``job["test"]``.

    With ``job["validate"]``, those queries are re-ranked before training and after every epoch
    (``inner``: their pooled nDCG@10, index = epochs); ``job["sampler"]`` (first-stage names): the
    stage-2 lists come from those first stages (:func:`fold_lists`), ``job["per_list"]`` passages each; ``job["rerank"]`` (first-stage
    names): the test queries' candidates of each are re-ranked too (``runs_over``). Returns (and caches)
    ``{"run", "runs_over", "inner", "train_queries", "epochs", "lists", "pairs_per_epoch", "wall_s", "pairs_per_s", "train_loss"}``.
    """
    path = _job_path(profile, job)
    if path.is_file():
        return json.loads(path.read_text())
    if threads:
        import torch

        torch.set_num_threads(threads)
    t = profile["training"]
    pool = load_pool(profile)
    model = _model(profile)
    batch = t["eval_batch_size"]

    def mean_ndcg(m, qids) -> float:
        scores = pool.ndcg10(evaluation.rerank(m, pool.of(qids), batch_size=batch, show_progress_bar=False))
        return sum(scores.values()) / len(scores)

    result = {"train_queries": len(job["train"]), "epochs": job["epochs"], "lists": 0, "pairs_per_epoch": 0,
              "wall_s": 0.0, "pairs_per_s": None, "train_loss": [], "inner": []}
    evaluator = None
    if job.get("validate"):
        result["inner"] = [mean_ndcg(model, job["validate"])]
        evaluator = training._heldout_evaluator(pool.of(job["validate"]), "", depth=profile["data"]["depth"], batch_size=batch,
                                                score=lambda run: sum(pool.ndcg10(run).values()) / len(run))
    if job["epochs"] > 0:
        lists = fold_lists(profile, pool, job["train"], job.get("sampler"), job.get("per_list"))
        stage = dict(t["stage2"], epochs=job["epochs"], max_steps=None)
        with tempfile.TemporaryDirectory() as tmp:
            m = training.train_stage(model, lists, loss_name=t["stage2"]["loss"], stage=stage, cfg=t, out_dir=Path(tmp),
                                     evaluator=evaluator, resume=False, implementation=t["implementation"], checkpoints=False)
        result.update({k: m[k] for k in ("lists", "pairs_per_epoch", "wall_s", "pairs_per_s", "train_loss")})
        result["inner"] += [h["ndcg@10"] for h in m["heldout_ndcg10"]]
    run = evaluation.rerank(model, pool.of(job["test"]), batch_size=batch, show_progress_bar=False) if job["test"] else {}
    result["run"] = {q: dict(r) for q, r in run.items()}
    result["runs_over"] = {name: {q: dict(r) for q, r in evaluation.rerank(model, pool.of(job["test"], name), batch_size=batch,
                                                                            show_progress_bar=False).items()}
                           for name in job.get("rerank", []) if job["test"]}
    write_json(path, result)
    return result


def run_jobs(items: list[tuple[dict, dict]], workers: int, desc: str) -> list[dict]:
    """:func:`run_job` for every ``(profile, job)``, ``workers`` at a time (one process each, spawn)."""
    from tqdm.auto import tqdm

    todo = list({_job_path(p, j): (p, j) for p, j in items if not _job_path(p, j).is_file()}.values())
    for p in {_states_dir(p): p for p, _ in todo if p["crossval"]["frozen_lower"]}.values():
        precompute_states(p, load_pool(p))  # once, before the students that read them
    workers = min(int(workers or 1), len(todo) or 1)
    if workers <= 1:
        for p, j in tqdm(todo, desc=desc, unit="student", disable=not todo):
            run_job(p, j)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_job, p, j, threads) for p, j in todo]
            for f in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} ({workers} processes)", unit="student"):
                f.result()
    return [run_job(p, j) for p, j in items]  # all cached now


# --------------------------------------------------------------------------- the whole cross-validation


@dataclass
class CrossvalResult:
    """What :func:`crossval` measured; every table is a ``pandas.DataFrame``."""

    folds: list[list[str]]
    year: dict[str, str]
    choices: "pandas.DataFrame"  # noqa: F821  one row per fold: queries, inner scores per epoch, chosen epochs
    scores: "pandas.DataFrame"  # noqa: F821  per-query nDCG@10 (rows: qid) of every system (columns)
    comparison: "pandas.DataFrame"  # noqa: F821  significance.paired_tests against the k-fold student
    curve: "pandas.DataFrame"  # noqa: F821  training queries -> pooled nDCG@10 with its 95% CI
    training: "pandas.DataFrame"  # noqa: F821  one row per trained student: kind, fold, queries, epochs, wall s, pairs/s
    states: dict = field(default_factory=dict)  # precompute figures (frozen_lower)
    # the fold students' jobs and results, and the untrained student's result (their runs over the strong
    # first stage: ``runs_over``; rank_distillm.sampler_study reads them)
    final_jobs: list = field(default_factory=list)
    final: list = field(default_factory=list)
    untrained: dict = field(default_factory=dict)


def crossval(profile: dict, systems: Mapping[str, Mapping[str, str]] | None = None, progress: bool = True,
             zero_shot: bool = True) -> CrossvalResult:
    """The k-fold cross-validation of ``profile["crossval"]`` (see the module docstring).

    ``systems``: stored runs to compare, ``{name: {year: run spec}}`` (default: the first stage as
    ``BM25`` and ``data.llm_runs``); the untrained student and (``zero_shot``) the zero-shot
    bi-encoder (``evaluation.zero_shot_model``) re-rank the same candidates. Tests: every system
    against the k-fold student.
    """
    import pandas as pd

    from .significance import mean_ci, paired_tests

    cv, t = profile["crossval"], profile["training"]
    pool = load_pool(profile)
    states = precompute_states(profile, pool, progress) if cv["frozen_lower"] else {}

    # 1. nested: the number of epochs, chosen on each fold's own training queries
    plan = fold_plan(pool.year, cv)
    inner_jobs = [inner_job(p, cv) for p in plan]
    inner = run_jobs([(profile, j) for j in inner_jobs], cv["workers"], "inner students")
    chosen = [choose_epochs(r["inner"]) for r in inner]

    # 2. each fold's student with its chosen epochs, and the data-size curve's students
    folds = [p["test"] for p in plan]
    final_jobs = [{**curve_job(p, cv, 0), "epochs": e} for p, e in zip(plan, chosen)]
    sizes = [n for n in cv["curve"] if n < min(len(p["train"]) for p in plan)]
    curve_jobs = [curve_job(p, cv, n) for n in [*sizes, 0] for p in plan]
    untrained_jobs = [{"train": [], "validate": [], "test": sorted(pool.candidates), "epochs": 0, **_also(cv)}]  # no fold to keep apart
    results = run_jobs([(profile, j) for j in final_jobs + curve_jobs + untrained_jobs], cv["workers"], "fold students")
    final, curve_res, untrained = results[: len(folds)], results[len(folds) : -1], results[-1:]

    def pooled(parts: list[dict]) -> dict[str, float]:
        run = {q: r for p in parts for q, r in p["run"].items()}
        return pool.ndcg10(run)

    columns = {STUDENT: pooled(final), UNTRAINED: pooled(untrained)}
    if zero_shot:
        bi_run = {}
        for y in pool.datasets:  # cached per year: chapter 06 re-ranks the same candidates with the same model
            own = [c for q, c in pool.candidates.items() if pool.year[q] == y]
            bi_run.update(evaluation.rerank_cached(profile["evaluation"]["zero_shot_model"], own, bi_encoder=True,
                                                   batch_size=t["eval_batch_size"], show_progress_bar=progress))
        columns[BIENCODER] = pool.ndcg10(bi_run)
    systems = systems if systems is not None else {BM25: profile["data"]["first_stage"], **_llm_runs(profile)}
    for name, by_year in systems.items():
        if all(y in by_year for y in pool.datasets):
            run = data.Run()
            for y in pool.datasets:
                run.update(data.read_run(data.resolve_path(by_year[y])))
            columns[name] = pool.ndcg10({q: run[q] for q in pool.candidates if q in run})
    scores = pd.DataFrame(columns).loc[sorted(pool.candidates)]
    scores = scores.dropna(axis=1)  # a stored run that lacks some queries is left out
    comparison = paired_tests(scores, baseline=STUDENT, alpha=profile["evaluation"]["alpha"])

    rows = []
    for i in range(len(sizes) + 1):  # the curve's points: each size, then all training queries
        chunk = curve_res[i * len(folds) : (i + 1) * len(folds)]
        values = list(pooled(chunk).values())
        mean, low, high = mean_ci(values)
        rows.append({"training queries": round(sum(r["train_queries"] for r in chunk) / len(chunk), 1),
                     "nDCG@10": mean, "ci_low": low, "ci_high": high, "tested queries": len(values)})
    curve = pd.DataFrame(rows)
    choices = pd.DataFrame([
        {"fold": f, "test queries": len(folds[f]), **{f"{y} test": sum(pool.year[q] == y for q in folds[f]) for y in pool.datasets},
         "inner training": len(inner_jobs[f]["train"]), "inner validation": len(inner_jobs[f]["validate"]),
         **{f"inner nDCG@10 after {e}": s for e, s in enumerate(inner[f]["inner"])}, "epochs chosen": chosen[f]}
        for f in range(len(folds))
    ]).set_index("fold")
    # one row per student trained (a curve point that is a fold's own student is the same job, trained once)
    rows, seen = [], {}
    for kind, jobs_, results_ in (("inner", inner_jobs, inner), ("final", final_jobs, final), ("curve", curve_jobs, curve_res)):
        for i, (j, r) in enumerate(zip(jobs_, results_)):
            key = _job_path(profile, j)
            if r["epochs"] == 0:
                continue
            if key in seen:
                seen[key]["student"] += f" + {kind}"
                continue
            seen[key] = {"student": kind, "fold": i % len(folds), "training queries": r["train_queries"], "epochs": r["epochs"],
                         "pairs": r["pairs_per_epoch"] * r["epochs"], "wall (s)": r["wall_s"], "pairs/s": r["pairs_per_s"]}
            rows.append(seen[key])
    training_table = pd.DataFrame(rows)
    return CrossvalResult(folds, dict(pool.year), choices, scores, comparison, curve, training_table, states,
                          final_jobs, final, untrained[0])


def _llm_runs(profile: dict) -> dict[str, dict[str, str]]:
    """``data.llm_runs`` turned round: ``{name: {year: spec}}``."""
    out: dict[str, dict[str, str]] = {}
    for y, runs in profile["data"]["llm_runs"].items():
        for name, spec in runs.items():
            out.setdefault(name, {})[y] = spec
    return out


def fold_ablation(profile: dict, variants: Sequence[Mapping], fold: int = 0, queries: int | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Students of one fold that differ only in ``variants`` (``{"loss": ..., "implementation": ...}``), same seed.

    Each trains on ``queries`` of fold ``fold``'s training queries (default: ``inner_training``, so
    that the profile's own loss is that fold's inner student) for ``crossval.epochs`` epochs
    and re-ranks the fold's test queries. One row per variant: ``loss``, ``implementation``, ``nDCG@10`` (the test
    queries' mean), ``train_loss`` (the logged curve: ``[{step, loss}]``), wall time and pairs/s.
    """
    import copy

    import pandas as pd

    pool = load_pool(profile)
    p = fold_plan(pool.year, profile["crossval"])[fold]
    job = curve_job(p, profile["crossval"], queries or profile["crossval"]["inner_training"])
    items = []
    for v in variants:
        varied = copy.deepcopy(profile)
        varied["training"]["stage2"]["loss"] = v["loss"]
        varied["training"]["implementation"] = v["implementation"]
        # every variant runs exactly as the fold's inner student (the profile's own variant is that job), with
        # its evaluation after each epoch: without it, a library RankNet run drifted 1.1 % from the book's
        items.append((varied, job))
    results = run_jobs(items, profile["crossval"]["workers"], "loss variants")
    rows = []
    for v, r in zip(variants, results):
        scores = pool.ndcg10(r["run"])
        rows.append({"loss": v["loss"], "implementation": v["implementation"], "nDCG@10": sum(scores.values()) / len(scores),
                     "test queries": len(scores), "train_loss": r["train_loss"], "wall (s)": r["wall_s"], "pairs/s": r["pairs_per_s"]})
    return pd.DataFrame(rows)


RESEARCH_LOGS = Path(__file__).parent / "research_logs"


def screening_table(inner_log: str | os.PathLike = RESEARCH_LOGS / "inner.jsonl",
                    baselines: str | os.PathLike = RESEARCH_LOGS / "baselines.json") -> "pandas.DataFrame":  # noqa: F821
    """The settings screened by the research for this chapter (``research/``: a logged record, not run by the book).

    ``inner_log``: one JSON line per (setting, outer fold, inner fold) with the inner validation
    queries' nDCG@10 (``ndcg10: {qid: value}``); ``baselines``: ``{system: {qid: nDCG@10}}`` of all
    queries. One row per setting: the inner students it trained, the validation scores it pooled,
    their mean, and the zero-shot bi-encoder's and the untrained split student's mean on the very same
    queries (``vs bi-encoder``: the setting's mean minus the bi-encoder's).
    """
    import pandas as pd

    base = json.loads(Path(baselines).read_text())
    records: dict[str, list[dict]] = {}
    for i, line in enumerate(Path(inner_log).read_text().splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise data.DataError(f"{inner_log}:{i}: not a JSON line ({e.msg})") from None
            records.setdefault(r["setting"], []).append(r)
    rows = []
    for setting, runs in records.items():
        scores = [(q, v) for r in runs for q, v in r["ndcg10"].items()]
        mean = sum(v for _, v in scores) / len(scores)
        bi = sum(base["biencoder"][q] for q, _ in scores) / len(scores)
        untrained = sum(base["untrained_split"][q] for q, _ in scores) / len(scores)
        rows.append({"setting": setting, "inner students": len(runs), "validation scores": len(scores), "nDCG@10": mean,
                     "bi-encoder, same queries": bi, "untrained split, same queries": untrained, "vs bi-encoder": mean - bi})
    return pd.DataFrame(rows).set_index("setting").sort_values("nDCG@10", ascending=False)
