"""What a teacher run did: how far passages moved, and what its windows cost."""

from __future__ import annotations

from typing import Mapping

from .windows import was_repaired


def rank_shifts(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]):
    """One row per passage of ``after``: ``qid``, ``docid``, ``rank_before``, ``rank_after``
    (1-based) and ``moved_up`` (``rank_before - rank_after``; positive: the teacher lifted it).

    Passages that ``before`` lacks (or queries it lacks) are skipped.
    """
    import pandas as pd

    rows = []
    for qid, docs in after.items():
        ref = {d: i for i, d in enumerate(before.get(qid, {}), start=1)}
        for rank, docid in enumerate(docs, start=1):
            if docid in ref:
                rows.append({"qid": qid, "docid": docid, "rank_before": ref[docid], "rank_after": rank,
                             "moved_up": ref[docid] - rank})
    return pd.DataFrame(rows, columns=["qid", "docid", "rank_before", "rank_after", "moved_up"])


def origin_shares(ranks_before, edges=(10, 20, 50, 100)):
    """Where passages stood before: the share of ``ranks_before`` (1-based ranks) in each band of ``edges``.

    ``edges=(10, 20, 50, 100)`` gives the bands ``1-10``, ``11-20``, ``21-50`` and ``51-100``
    (a ``pandas.Series`` of shares that sum to 1); a rank beyond the last edge is an error.
    E.g. the first-stage ranks of the passages a teacher put in its top-10.
    """
    import pandas as pd

    ranks = pd.Series(ranks_before, dtype=float)
    if ranks.empty:
        raise ValueError("origin_shares: no ranks")
    if ranks.isna().any() or ranks.min() < 1 or ranks.max() > edges[-1]:
        raise ValueError(f"origin_shares: ranks must lie between 1 and {edges[-1]}, got {ranks.min():g} to {ranks.max():g}")
    lows = [1, *(e + 1 for e in edges[:-1])]
    labels = [f"{low}-{high}" for low, high in zip(lows, edges)]
    bands = pd.cut(ranks, [0, *edges], labels=labels)
    return bands.value_counts(normalize=True).reindex(labels, fill_value=0.0).rename("share")


def window_costs(windows: list[dict]):
    """The window records as a table: ``qid``, ``window``, ``start``, ``end``, ``prompt_tokens``,
    ``generated_tokens``, ``seconds``, ``batch``, ``repaired``."""
    import pandas as pd

    cols = ["qid", "window", "start", "end", "prompt_tokens", "generated_tokens", "seconds", "batch"]
    rows = [{**{c: w.get(c) for c in cols}, "repaired": was_repaired(w["repair"])} for w in windows]
    return pd.DataFrame(rows, columns=[*cols, "repaired"])


def query_costs(windows: list[dict]):
    """Per query: ``windows``, total ``prompt_tokens``, ``generated_tokens``, ``seconds``, and
    ``repaired`` (windows whose answer needed repair)."""
    table = window_costs(windows)
    return table.groupby("qid", sort=False).agg(
        windows=("window", "size"), prompt_tokens=("prompt_tokens", "sum"),
        generated_tokens=("generated_tokens", "sum"), seconds=("seconds", "sum"), repaired=("repaired", "sum"),
    )


def prompt_matches(records: list[dict], candidates, template, max_words: int = 300):
    """Each logged window's prompt rendered again from ``candidates`` and compared with the logged one.

    ``records``: a window log (:func:`~rank_distillm.teacher.log.read_log`) whose prompts are
    in a fixed text format (``template``, e.g. RankVicuna's; a chat template is rendered by
    the model's tokenizer, so there is nothing to compare: ``ValueError``); ``candidates``:
    the queries and passages it was built from. One row per record: ``qid``, ``window``,
    ``same`` (the rendered prompt equals the logged one, character for character) and
    ``ascii`` (every passage of the window is ASCII text: where it is not, the stored run saw
    the raw mis-encoded text that ``ir_datasets`` repairs, so the prompts cannot agree).
    Passages are cut to the word budget a record holds (``max_words``), else to ``max_words``
    (300: RankVicuna's budget for windows of 20, which the stored logs do not record).
    """
    import pandas as pd

    from .prompts import get_template, render_fixed

    template = get_template(template)
    if render_fixed(template, template.messages("q", ["p"])) is None:
        raise ValueError(f"prompt {template.name!r} is rendered by the model's chat template: "
                         "there is no fixed text to compare the logged prompts with")
    query_of = {c.qid: c.query for c in candidates}
    text_of = {d: t for c in candidates for d, t in zip(c.docids, c.texts)}
    rows = []
    for r in records:
        passages = [text_of[d] for d in r["docids"]]
        messages = template.messages(query_of[r["qid"]], passages, r.get("max_words") or max_words)
        rows.append({"qid": r["qid"], "window": r["window"], "same": render_fixed(template, messages) == r["prompt"],
                     "ascii": all(p.isascii() for p in passages)})
    return pd.DataFrame(rows, columns=["qid", "window", "same", "ascii"])
