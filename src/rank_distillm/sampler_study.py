"""The paper's two columns and its sampler finding, with the book's k-fold students.

The paper evaluates every system over two first stages, BM25 and ColBERTv2 (its results
table), and finds that the first stage whose candidates the teacher ranks for training
matters: a strong sampler (ColBERTv2) beats BM25. Offline, the book has RankVicuna-7B over
five first stages of the same queries (:mod:`rank_distillm.first_stages`); SPLADE++ ED, the
strongest of them, stands in for ColBERTv2 (``crossval.strong_first_stage``).

* :func:`over_scores` / :func:`two_columns`: every system over BM25's candidates and over the
  strong first stage's, per year, tested against the k-fold student (paired t-tests, Holm, within
  each year and first stage). The fold students re-rank both candidate sets in the same job
  (``crossval`` jobs' ``rerank``): trained once.
* :func:`sampler_study`: students trained exactly as each fold's own student (its training queries,
  its chosen epochs, the recipe) but on lists from other first stages (``crossval.samplers``), each
  evaluated over both candidate sets; pairwise tests between the samplers (Holm within each
  candidate set) and a verdict sentence (:func:`sampler_verdict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import crossval, data, evaluation
from .crossval import BIENCODER, STUDENT, UNTRAINED, Pool

FIRST_STAGE = "first stage"
BASE_SAMPLER = "bm25"  # the k-fold student itself: its lists come from data.first_stage and training.stage2.teacher


# --------------------------------------------------------------------------- two first stages


def pooled_over(pool: Pool, parts: Sequence[Mapping], name: str) -> dict[str, float]:
    """Per-query nDCG@10 of the jobs' runs over first stage ``name``'s candidates (``runs_over``), pooled."""
    return pool.ndcg10({q: r for p in parts for q, r in p["runs_over"][name].items()})


def over_scores(profile: dict, cv: "crossval.CrossvalResult", name: str | None = None, zero_shot: bool = True,
                progress: bool = False) -> "pandas.DataFrame":  # noqa: F821
    """Per-query nDCG@10 (rows: qid) over first stage ``name``'s candidates (default ``crossval.strong_first_stage``).

    Columns: the k-fold and untrained students (their runs from the cross-validation's own jobs), the
    zero-shot bi-encoder (``zero_shot``), the first stage itself (named ``name``) and the teacher over
    it (``evaluation.teacher``, where ``data.first_stages`` has its run).
    """
    import pandas as pd

    name = name or profile["crossval"]["strong_first_stage"]
    pool = crossval.load_pool(profile)
    columns = {STUDENT: pooled_over(pool, cv.final, name), UNTRAINED: pooled_over(pool, [cv.untrained], name)}
    if zero_shot:
        bi_run = {}
        for y in pool.datasets:
            own = [c for q, c in pool.stages[name].items() if pool.year[q] == y]
            bi_run.update(evaluation.rerank_cached(profile["evaluation"]["zero_shot_model"], own, bi_encoder=True,
                                                   batch_size=profile["training"]["eval_batch_size"], show_progress_bar=progress))
        columns[BIENCODER] = pool.ndcg10(bi_run)
    columns[name] = pool.ndcg10({q: dict(zip(c.docids, c.scores)) for q, c in pool.stages[name].items()})
    if name in pool.stage_teacher:
        run = data.Run()
        for path in pool.stage_teacher[name].values():
            run.update(data.read_run(path))
        columns[profile["evaluation"]["teacher"]] = pool.ndcg10({q: run[q] for q in pool.stages[name] if q in run})
    return pd.DataFrame(columns).loc[sorted(pool.candidates)].dropna(axis=1)


def two_columns(profile: dict, cv: "crossval.CrossvalResult", strong: "pandas.DataFrame | None" = None) -> "pandas.DataFrame":  # noqa: F821
    """Every system over BM25 and over the strong first stage, per year, tested against the k-fold student.

    One row per (first stage, year, system): ``queries``, ``nDCG@10``, ``vs student`` (the system minus
    the student), ``p (Holm)`` (paired t-test, Holm-corrected within the first stage and year) and
    ``significant`` (at ``evaluation.alpha``). The first stage's own row is named ``first stage``.
    """
    import pandas as pd

    from .significance import paired_tests

    name = profile["crossval"]["strong_first_stage"]
    strong = over_scores(profile, cv) if strong is None else strong
    columns = {crossval.BM25: cv.scores.rename(columns={crossval.BM25: FIRST_STAGE}),
               name: strong.rename(columns={name: FIRST_STAGE})}
    rows = []
    for first, scores in columns.items():
        for y in profile["crossval"]["years"]:
            part = scores.loc[[q for q in scores.index if cv.year[q] == y]]
            tests = paired_tests(part, baseline=STUDENT, alpha=profile["evaluation"]["alpha"])
            for system, t in tests.iterrows():
                rows.append({"first stage": first, "year": y, "system": system, "queries": int(t["queries"]),
                             "nDCG@10": float(t["mean"]), "vs student": float(t["diff"]),
                             "p (Holm)": None if system == STUDENT else float(t["p_holm"]),
                             "significant": None if system == STUDENT else bool(t["significant"])})
    return pd.DataFrame(rows)


def lowered(table: "pandas.DataFrame", first: str) -> list[dict]:  # noqa: F821
    """The re-rankers that score *below* first stage ``first``'s own order, per year (rows of :func:`two_columns`)."""
    out = []
    for y, part in table[table["first stage"] == first].groupby("year", sort=False):
        base = float(part.loc[part["system"] == FIRST_STAGE, "nDCG@10"].iloc[0])
        for _, row in part[(part["system"] != FIRST_STAGE) & (part["nDCG@10"] < base)].iterrows():
            out.append({"year": y, "system": row["system"], "nDCG@10": row["nDCG@10"], "first stage": base,
                        "difference": row["nDCG@10"] - base})
    return out


# --------------------------------------------------------------------------- the sampler study


@dataclass
class SamplerStudy:
    """What :func:`sampler_study` measured."""

    scores: dict  # candidate set (first-stage name) -> DataFrame of per-query nDCG@10, one column per sampler
    table: "pandas.DataFrame"  # noqa: F821  one row per sampler: lists per query, pairs per epoch, nDCG@10 (CI) over each
    curve: "pandas.DataFrame"  # noqa: F821  the per-list curve: passages a list -> pairs per epoch, nDCG@10 (CI) over each
    tests: "pandas.DataFrame"  # noqa: F821  pairwise paired t-tests between the samplers, Holm within each candidate set
    verdict: str
    training: "pandas.DataFrame"  # noqa: F821  one row per sampler student: fold, epochs, lists, pairs, wall s
    strong: str | None = None  # the sampler whose lists come from the strong first stage alone
    holds: bool = False  # the paper's sampler finding at this scale (:func:`sampler_finding_holds`)


def sampler_jobs(profile: dict, cv: "crossval.CrossvalResult") -> dict[str, list[dict]]:
    """Per sampler of ``crossval.samplers``: each fold's own student's job (same queries, epochs) with ``sampler`` set.

    A fold that chose 0 epochs trains nothing, whatever the lists: its job stays the fold student's own."""
    out = {}
    for name, sampler in profile["crossval"]["samplers"].items():
        extra = {"sampler": list(sampler["first_stages"]), **({"per_list": sampler["per_list"]} if sampler.get("per_list") else {})}
        out[name] = [{**job, **extra} if job["epochs"] else job for job in cv.final_jobs]
    return out


def per_list_jobs(profile: dict, cv: "crossval.CrossvalResult") -> dict[int, list[dict]]:
    """Per point of ``crossval.per_list_curve``: each fold's own student's job with that many passages a list."""
    return {n: [{**job, "per_list": n} if job["epochs"] else job for job in cv.final_jobs]
            for n in profile["crossval"]["per_list_curve"]}


def pairwise_tests(scores: "pandas.DataFrame", alpha: float) -> "pandas.DataFrame":  # noqa: F821
    """Every pair of columns of ``scores`` (per-query scores): paired t-test, Holm across the pairs."""
    import itertools

    import pandas as pd

    from .significance import holm, mean_ci, paired_t_test

    rows = []
    for a, b in itertools.combinations(scores.columns, 2):
        d = scores[a] - scores[b]
        _, low, high = mean_ci(d.to_numpy())
        rows.append({"a": a, "b": b, "queries": len(d), "a - b": float(d.mean()), "ci_low": low, "ci_high": high,
                     "p": paired_t_test(scores[a].to_numpy(), scores[b].to_numpy())[1]})
    table = pd.DataFrame(rows)
    table["p (Holm)"] = holm(table["p"].to_numpy())
    table["significant"] = table["p (Holm)"] < alpha
    return table


def sampler_finding_holds(tests: "pandas.DataFrame", strong: str, base: str = BASE_SAMPLER) -> bool:  # noqa: F821
    """The paper's sampler finding, at this scale: ``strong``'s students significantly above ``base``'s
    (after Holm) over some candidate set, and significantly below over none."""
    rows = tests[(tests["a"] == strong) & (tests["b"] == base) & tests["significant"].astype(bool)]
    return bool((rows["a - b"] > 0).any() and not (rows["a - b"] < 0).any())


def sampler_verdict(tests: "pandas.DataFrame", strong: str, base: str = BASE_SAMPLER) -> str:  # noqa: F821
    """One sentence on the paper's sampler finding from :func:`sampler_study`'s ``tests``.

    For every sampler other than ``base`` and every candidate set: above or below ``base``'s students, and
    whether significantly (after Holm); then whether the paper's finding (a strong sampler beats BM25) holds
    here: ``strong``'s students significantly above ``base``'s over some candidate set and significantly
    below over none.
    """
    parts = []
    for first, part in tests.groupby("candidates", sort=False):
        said = []
        for _, row in part[part["b"] == base].iterrows():
            sig = bool(row["significant"])
            if abs(row["a - b"]) < 5e-5:
                said.append(f"{row['a']} the same as {base} (no difference on any query that shows at 4 digits)")
            else:
                said.append(f"{row['a']} {'above' if row['a - b'] > 0 else 'below'} {base} by {abs(row['a - b']):.4f} "
                            f"({'significantly' if sig else 'not significantly'}, p = {row['p (Holm)']:.2g} after Holm)")
        parts.append(f"over {first} candidates, {'; '.join(said)}")
    holds = sampler_finding_holds(tests, strong, base)
    return ("Students trained on lists from each sampler score, " + "; ".join(parts) + ". "
            + ("At this scale the paper's finding holds: the strong sampler's students are significantly better."
               if holds else "At this scale the paper's finding is not reproduced: the strong sampler's students are not "
               "significantly better than BM25's."))


def sampler_study(profile: dict, cv: "crossval.CrossvalResult", strong: "pandas.DataFrame | None" = None) -> SamplerStudy:  # noqa: F821
    """Train the samplers' students (:func:`sampler_jobs`), evaluate each over BM25's and the strong first stage's candidates.

    The sampler ``bm25`` is the k-fold student itself (``cv``: no training). Returns the per-query
    scores, a table (lists per query, pairs per epoch, pooled nDCG@10 with its 95% CI over each
    candidate set), the pairwise tests and the verdict (:func:`sampler_verdict`).
    """
    import pandas as pd

    from .significance import mean_ci

    cfg = profile["crossval"]
    name = cfg["strong_first_stage"]
    pool = crossval.load_pool(profile)
    jobs = sampler_jobs(profile, cv)
    curve_jobs = per_list_jobs(profile, cv)
    flat = [(profile, j) for js in [*jobs.values(), *curve_jobs.values()] for j in js]
    results = crossval.run_jobs(flat, cfg["workers"], "sampler students")
    k = len(cv.final_jobs)
    by_sampler = {BASE_SAMPLER: cv.final}
    for i, s in enumerate(jobs):
        by_sampler[s] = results[i * k : (i + 1) * k]
    by_per_list = {n: results[(len(jobs) + i) * k : (len(jobs) + i + 1) * k] for i, n in enumerate(curve_jobs)}
    by_per_list[profile["training"]["stage2"]["per_list"]] = cv.final
    strong = over_scores(profile, cv) if strong is None else strong
    scores = {crossval.BM25: pd.DataFrame({s: pool.ndcg10({q: r for p in parts for q, r in p["run"].items()})
                                           for s, parts in by_sampler.items()}).loc[sorted(pool.candidates)],
              name: pd.DataFrame({s: pooled_over(pool, parts, name) for s, parts in by_sampler.items()}).loc[sorted(pool.candidates)]}
    assert (scores[name][BASE_SAMPLER] == strong[STUDENT]).all()  # the k-fold student's own run
    def describe(parts: Sequence[Mapping], row: dict, frames: Mapping[str, "pandas.DataFrame"], column) -> dict:  # noqa: F821
        trained = [p for p in parts if p["epochs"]]
        row.update({"lists per query": round(sum(p["lists"] for p in trained) / sum(p["train_queries"] for p in trained), 2) if trained else None,
                    "pairs per epoch": round(sum(p["pairs_per_epoch"] for p in trained) / len(trained), 1) if trained else None})
        for first, frame in frames.items():
            mean, low, high = mean_ci(frame[column].to_numpy())
            row.update({f"nDCG@10 over {first}": mean, f"95% CI over {first}": (low, high)})
        return row

    recipe = profile["training"]["stage2"]["per_list"]
    rows = [describe(parts, {"sampler": s, "first stages": ", ".join(cfg["samplers"][s]["first_stages"]) if s in cfg["samplers"] else crossval.BM25,
                             "passages a list": (cfg["samplers"][s].get("per_list") if s in cfg["samplers"] else None) or recipe},
                     scores, s) for s, parts in by_sampler.items()]
    curve_frames = {first: pd.DataFrame({n: (pool.ndcg10({q: r for p in parts for q, r in p["run"].items()}) if first == crossval.BM25
                                             else pooled_over(pool, parts, first)) for n, parts in by_per_list.items()}).loc[sorted(pool.candidates)]
                    for first in scores}
    curve = pd.DataFrame([describe(parts, {"passages a list": n}, curve_frames, n) for n, parts in sorted(by_per_list.items(), key=lambda x: x[0] or 0)])
    tests = pd.concat([pairwise_tests(frame, profile["evaluation"]["alpha"]).assign(candidates=first)
                       for first, frame in scores.items()], ignore_index=True)
    # the tests read "a vs b" with b the base sampler where the base is one of the pair
    swap = tests["a"] == BASE_SAMPLER
    tests.loc[swap, ["a", "b"]] = tests.loc[swap, ["b", "a"]].to_numpy()
    tests.loc[swap, "a - b"] *= -1
    tests.loc[swap, ["ci_low", "ci_high"]] = -tests.loc[swap, ["ci_high", "ci_low"]].to_numpy()
    training = pd.DataFrame([{"sampler": s, "fold": f, "epochs": r["epochs"], "lists": r["lists"], "pairs": r["pairs_per_epoch"] * r["epochs"],
                              "wall (s)": r["wall_s"]} for s, parts in by_sampler.items() for f, r in enumerate(parts)])
    strong_sampler = next((s for s, sampler in cfg["samplers"].items() if list(sampler["first_stages"]) == [name]), None)
    return SamplerStudy(scores, pd.DataFrame(rows).set_index("sampler"), curve, tests, sampler_verdict(tests, strong_sampler),
                        training, strong_sampler, sampler_finding_holds(tests, strong_sampler))
