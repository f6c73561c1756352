"""Statistics for comparing rankers: paired t-tests with Holm correction, confidence
intervals, and agreement with a teacher's ranking.

The protocol is the paper's: two-sided paired t-tests on per-query nDCG@10 between each
system and a baseline, with the Holm-Bonferroni correction across the comparisons. The
tests come from ``scipy.stats.ttest_rel``, the correction from
``statsmodels.stats.multitest.multipletests(method="holm")``, Kendall's tau from
``scipy.stats.kendalltau``; this module only arranges their inputs and outputs. (Its name is
not ``statistics``, which would shadow the standard library's module of that name.)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its Student-t confidence interval.

    With fewer than two values the interval is undefined (``nan``).
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci: no values")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    sem = stats.sem(x)
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (``statsmodels`` ``multipletests``, method ``holm``).

    ``nan`` entries (no test) stay ``nan`` and do not count as comparisons.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def paired_t_test(x: Sequence[float], base: Sequence[float]) -> tuple[float, float]:
    """``(t, p)``: the two-sided paired t-test of ``x`` against ``base`` (``scipy.stats.ttest_rel``).

    Where every difference is the same, ``t`` is undefined (zero variance): no difference at
    all gives ``(0, 1)``, a constant non-zero one ``(+-inf, 0)``.
    """
    from scipy import stats

    d = np.asarray(x, dtype=float) - np.asarray(base, dtype=float)
    if np.allclose(d, d[0]):
        return (0.0, 1.0) if np.allclose(d, 0) else (float(np.sign(d[0]) * np.inf), 0.0)
    result = stats.ttest_rel(x, base, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def paired_tests(
    scores: "pandas.DataFrame",  # noqa: F821
    baseline: str,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> "pandas.DataFrame":  # noqa: F821
    """Each system against ``baseline`` on paired per-query scores.

    ``scores`` has one row per query and one column per system (no missing values: pair
    the queries first). Returns one row per system (index: system) with ``queries``,
    ``mean``, ``ci_low``/``ci_high`` (the mean's confidence interval), ``diff`` (mean
    minus the baseline's), ``diff_ci_low``/``diff_ci_high``, ``t``, ``p`` (two-sided paired
    t-test, ``scipy.stats.ttest_rel``), ``p_holm`` (Holm-corrected across all systems
    but the baseline) and ``significant`` (``p_holm < alpha``). The baseline's test
    columns are ``nan``. A system identical to the baseline on every query has ``p = 1``.
    """
    import pandas as pd

    if baseline not in scores.columns:
        raise ValueError(f"baseline {baseline!r} is not one of the systems {list(scores.columns)}")
    if scores.isna().any().any():
        missing = {c: int(n) for c, n in scores.isna().sum().items() if n}
        raise ValueError(f"paired tests need a score for every query and system; missing: {missing}")
    if len(scores) < 2:
        raise ValueError(f"paired tests need at least 2 queries, got {len(scores)}")
    base = scores[baseline].to_numpy(dtype=float)
    rows = []
    for system in scores.columns:
        x = scores[system].to_numpy(dtype=float)
        mean, low, high = mean_ci(x, confidence)
        row = {"system": system, "queries": len(x), "mean": mean, "ci_low": low, "ci_high": high}
        if system == baseline:
            row.update(diff=0.0, diff_ci_low=np.nan, diff_ci_high=np.nan, t=np.nan, p=np.nan)
        else:
            _, d_low, d_high = mean_ci(x - base, confidence)
            t, p = paired_t_test(x, base)
            row.update(diff=float((x - base).mean()), diff_ci_low=d_low, diff_ci_high=d_high, t=t, p=p)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("system")
    table["p_holm"] = holm(table["p"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    return table


# --------------------------------------------------------------------------- agreement


def kendall_tau(run: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Kendall's tau-b (``scipy.stats.kendalltau``) per query between two rankings.

    Each query's passages are compared by their positions in the two lists (dicts in
    rank order), over the passages that both lists hold; queries missing from either run,
    or sharing fewer than two passages, are skipped.
    """
    from scipy import stats

    out = {}
    for qid, docs in run.items():
        if qid not in reference:
            continue
        ref_pos = {d: i for i, d in enumerate(reference[qid])}
        shared = [d for d in docs if d in ref_pos]
        if len(shared) < 2:
            continue
        tau = stats.kendalltau(range(len(shared)), [ref_pos[d] for d in shared]).statistic
        out[qid] = float(tau)
    return out


def ranking_qrels(reference: Mapping[str, Mapping[str, float]], depth: int = 10) -> dict[str, dict[str, int]]:
    """A teacher's ranking as graded labels: rank 1 gets ``depth``, rank ``depth`` gets 1,
    lower ranks 0 (the paper's target ``depth - rank + 1``, cut at ``depth``)."""
    return {qid: {d: max(depth - i, 0) for i, d in enumerate(docs)} for qid, docs in reference.items()}


def teacher_ndcg(
    run: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    depth: int = 10,
) -> dict[str, float]:
    """nDCG@``depth`` per query of ``run`` against the teacher's ranking as graded labels
    (:func:`ranking_qrels`): 1.0 when the top-``depth`` equals the teacher's, in order."""
    import ir_measures

    qrels = ranking_qrels(reference, depth)
    measure = ir_measures.parse_measure(f"nDCG@{depth}")
    from .data import stated_order

    shared = stated_order({qid: docs for qid, docs in run.items() if qid in qrels})  # ties as the run states them
    return {m.query_id: float(m.value) for m in ir_measures.iter_calc([measure], qrels, shared)}


def gap_verdict(scores: "pandas.DataFrame", system: str, baseline: str, teacher: str, confidence: float = 0.95) -> dict:  # noqa: F821
    """``system`` against ``baseline`` on paired per-query ``scores``, and the share of the baseline-to-teacher gap it closed.

    ``{"queries", "mean", "diff", "diff_ci_low", "diff_ci_high", "p", "gap_closed"}``: ``p`` is the
    two-sided paired t-test (no correction: one comparison); ``gap_closed`` = ``(system - baseline) /
    (teacher - baseline)`` of the means (1: as good as the teacher; negative: below the baseline).
    """
    test = paired_tests(scores[[baseline, system]], baseline=baseline, confidence=confidence).loc[system]
    own, base, top = (float(scores[c].mean()) for c in (system, baseline, teacher))
    return {"queries": len(scores), "mean": own, "diff": own - base, "diff_ci_low": float(test["diff_ci_low"]),
            "diff_ci_high": float(test["diff_ci_high"]), "p": float(test["p"]), "gap_closed": (own - base) / (top - base)}


# --------------------------------------------------------------------------- equivalence


def tost_paired(x: Sequence[float], base: Sequence[float], margin: float, alpha: float = 0.05) -> dict:
    """Paired TOST (two one-sided t-tests): is the mean of ``x - base`` inside ``(-margin, +margin)``?

    A two-sided t-test that does not reject says only that a difference was not shown; this test
    turns the question round. Its null hypothesis is a difference of at least ``margin`` (either
    way), so a small ``p`` shows the two systems *equivalent* within the margin. ``p`` is the
    larger of the two one-sided p-values (``statsmodels.stats.weightstats.ttost_paired`` with
    ``low = -margin``, ``upp = +margin``). Equivalence at ``alpha`` is the same as the
    ``1 - 2 alpha`` confidence interval of the mean difference lying inside the margin, which
    is returned as ``ci_low`` / ``ci_high``. The margin must be fixed before the data is seen.

    Returns ``{"queries", "diff", "ci_low", "ci_high", "margin", "p", "p_lower", "p_upper", "equivalent"}``.
    """
    from scipy import stats

    if not margin > 0:
        raise ValueError(f"tost_paired: the equivalence margin must be positive, got {margin!r}")
    d = np.asarray(x, dtype=float) - np.asarray(base, dtype=float)
    if d.size < 2:
        raise ValueError(f"tost_paired needs at least 2 paired values, got {d.size}")
    mean = float(d.mean())
    if np.allclose(d, d[0]):  # no variance: the difference is known exactly
        inside = abs(mean) < margin
        p_lower = p_upper = 0.0 if inside else 1.0
        low = high = mean
    else:
        p_lower = float(stats.ttest_1samp(d, -margin, alternative="greater").pvalue)  # H0: diff <= -margin
        p_upper = float(stats.ttest_1samp(d, margin, alternative="less").pvalue)  # H0: diff >= +margin
        _, low, high = mean_ci(d, 1 - 2 * alpha)
    p = max(p_lower, p_upper)
    return {"queries": int(d.size), "diff": mean, "ci_low": float(low), "ci_high": float(high), "margin": float(margin),
            "p": p, "p_lower": p_lower, "p_upper": p_upper, "equivalent": bool(p < alpha)}
