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
